"""Qt fixtures for the app tests (offscreen platform, isolated settings dir)."""
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


class ScriptedEstimator:
    """Stands in for the pose models where a test measures the GUI, not the models (long runs).

    It has the estimator interface the Pipeline takes (``infer``, ``postprocess``, ``reset``,
    ``device``, ``backend``) and returns two walking stick people whose positions follow the
    frame index that ``core.io.PatternSource`` stores in pixel (0, 0), so every frame has poses
    for the renderer, tracker, recorder and view to handle.
    """

    device = "cpu"
    backend = "scripted"

    def __init__(self, config=None):
        self.config = config

    def infer(self, frame, timings=None):
        import numpy as np

        from core.io import pattern_index
        from core.poses import Poses

        i = pattern_index(frame)
        h, w = frame.shape[:2]
        people = []
        for p in range(2):
            x0 = (i * 2 + p * w // 2) % max(w - 60, 1) + 10
            ys = np.linspace(0.1 * h, 0.9 * h, 17)
            xs = x0 + 20 + 12 * np.sin(np.arange(17) + i * 0.1)
            people.append(np.stack([xs, ys, np.full(17, 0.9)], -1))
        kp = np.asarray(people, np.float32)
        boxes = np.concatenate([kp[..., :2].min(1) - 5, kp[..., :2].max(1) + 5], 1)
        if timings is not None:
            timings["detect"] = 0.0
        return Poses(boxes, kp, np.full(2, 0.9))

    def postprocess(self, poses):
        return poses

    def reset(self):
        pass


@pytest.fixture
def scripted_estimator():
    return ScriptedEstimator
