"""Qt fixtures for the app tests (offscreen platform, isolated settings dir) and a small real clip."""
from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6", reason="the app tests need PySide6 (pip install -e '.[gui]')")


@pytest.fixture(scope="session")
def qapp():
    from PySide6 import QtWidgets

    from app.version_check import check_pyside

    check_pyside()
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """Each test reads and writes its own settings file, never the user's."""
    monkeypatch.setenv("RMPE_LIVE_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config" / "app.yaml"


def wait_until(app, predicate, timeout: float = 30.0, interval_ms: int = 5) -> bool:
    """Run the Qt event loop (as app.exec() would) until ``predicate()`` holds; False on timeout."""
    from PySide6 import QtCore

    if predicate():
        return True
    deadline = time.monotonic() + timeout
    loop = QtCore.QEventLoop()
    timer = QtCore.QTimer()
    timer.setInterval(interval_ms)
    timer.timeout.connect(lambda: (predicate() or time.monotonic() > deadline) and loop.quit())
    timer.start()
    loop.exec()
    timer.stop()
    return bool(predicate())


@pytest.fixture
def wait(qapp):
    """wait(predicate, timeout=30) -> bool, spinning the Qt event loop meanwhile."""
    return lambda predicate, timeout=30.0: wait_until(qapp, predicate, timeout)


@pytest.fixture
def make_window(qapp, tmp_path):
    """``make_window(config=None, estimator_factory=None, **settings)``: a shown 1400×820
    MainWindow with fresh settings (recordings under ``tmp_path/out``); every window made is
    closed afterwards, and no ``rmpe-*`` thread may outlive them."""
    import threading

    from app.main_window import MainWindow
    from app.settings import Settings
    from core.config import Config

    made = []

    def make(config=None, estimator_factory=None, **settings_values):
        settings = Settings(tmp_path / "app.yaml")
        settings["record_dir"] = str(tmp_path / "out")
        for key, value in settings_values.items():
            settings[key] = value
        w = MainWindow(config or Config.load(), settings, estimator_factory=estimator_factory)
        w.resize(1400, 820)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("rmpe-")]


MAN_REGION = (slice(0, 540), slice(280, 1000))  # demo frames (1768×994): the man on the roof, 4:3


def write_man_clip(folder, demo_video, person_frames: int, empty_frames: int, size=(320, 240)):
    """PNG frames for an ImageSource: the demo's jumping man (its first ``person_frames`` frames,
    cropped around him and scaled to ``size``), then ``empty_frames`` frames of nobody
    (core.io PatternSource). Real pictures for the real models, small enough to run fast."""
    import cv2

    from core.io import PatternSource, open_source

    folder.mkdir(parents=True)
    frames = []
    with open_source(video=str(demo_video)) as video:
        for _ in range(person_frames):
            frames.append(cv2.resize(video.read().image[MAN_REGION], size, interpolation=cv2.INTER_AREA))
    pattern = PatternSource(*size, num_frames=empty_frames)
    frames += [pattern.read().image for _ in range(empty_frames)]
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture
def man_clip(tmp_path, demo_video):
    """man_clip(person_frames, empty_frames, size=(320, 240)) -> folder (see write_man_clip)."""
    return lambda person_frames, empty_frames, size=(320, 240): write_man_clip(
        tmp_path / f"clip-{person_frames}-{empty_frames}", demo_video, person_frames, empty_frames, size)
