"""Closing the window or switching sources with the real models on the demo video: each source
is closed exactly once, on one thread, after its pipeline's threads have ended.

Regression for a segfault on Ctrl-C: the session's stopper and its watcher thread both closed
the PyAV source the moment the pipeline ended; PyAV's close is not thread-safe (it drops the GIL
before checking whether the demuxer is open), so the demuxer was sometimes freed twice. The
stress test runs open → show frames → close cycles in a subprocess, where a crash is a failure
rather than the end of the test run.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.config import Config

pytestmark = [pytest.mark.gui, pytest.mark.assets]

ROOT = Path(__file__).resolve().parents[2]


def _counting_close(source) -> list[str]:
    """Record the thread of every close() call on this real source (then close it for real)."""
    calls: list[str] = []
    real_close = source.close

    def close():
        calls.append(threading.current_thread().name)
        real_close()

    source.close = close
    return calls


def _config() -> Config:
    return Config.load(overrides={"detector": {"tiling": False}, "pipeline": {"queue_size": 1}})


@pytest.mark.parametrize("ending", ["close window", "open another source"])
def test_each_source_is_closed_once(qapp, wait, tmp_path, demo_video, blazepose_models, ending):
    from app.main_window import MainWindow
    from app.settings import Settings
    from app.sources_dialog import SourceSpec
    from core.io import open_source

    window = MainWindow(_config(), Settings(tmp_path / "app.yaml"))
    window.show()
    try:
        spec = SourceSpec("file", str(demo_video))
        first = open_source(video=str(demo_video))
        calls = _counting_close(first)
        window.open_source(spec, source=first)
        assert wait(lambda: window.frames_shown >= 3, timeout=120), window.message.text()
        if ending == "open another source":
            second = open_source(video=str(demo_video))
            later = _counting_close(second)
            window.open_source(spec, source=second)
            assert wait(lambda: window.session.pipeline is not None and window.session.pipeline.source is second
                        and window.frames_shown >= 2, timeout=120), window.message.text()
        window.close()
        assert len(calls) == 1, calls
        if ending == "open another source":
            assert len(later) == 1, later
    finally:
        window.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("rmpe-")]


CYCLES_SCRIPT = r"""
import sys, time
from PySide6 import QtCore, QtWidgets
from app.main_window import MainWindow
from app.settings import Settings
from app.sources_dialog import SourceSpec
from core.assets import artefact_path
from core.config import Config

budget_s, folder = float(sys.argv[1]), sys.argv[2]
app = QtWidgets.QApplication([])
config = Config.load(overrides={"detector": {"tiling": False}, "pipeline": {"queue_size": 1}})
spec = SourceSpec("file", str(artefact_path("demo_video")))
start, cycles = time.monotonic(), 0
while cycles < 3 or time.monotonic() - start < budget_s:
    window = MainWindow(config, Settings(folder + "/app.yaml"), pause_after=2 + cycles % 3)
    window.show()
    window.open_source(spec)
    deadline = time.monotonic() + 60
    while not window.paused:
        assert time.monotonic() < deadline, window.message.text()
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 10)
    window.close()
    window.deleteLater()
    app.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    cycles += 1
print("cycles", cycles)
"""


def test_open_close_cycles_never_crash(tmp_path, demo_video, blazepose_models):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONFAULTHANDLER="1",
               RMPE_LIVE_CONFIG_DIR=str(tmp_path / "config"))
    proc = subprocess.run([sys.executable, "-c", CYCLES_SCRIPT, "12", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "cycles" in proc.stdout and "Traceback" not in output, output[-4000:]
