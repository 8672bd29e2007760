"""Closing the window or switching sources with the real models on the demo video: each source
is closed exactly once, on one thread, after its pipeline's threads have ended.

Regression for a segfault on Ctrl-C: the session's stopper and its watcher thread both closed
the PyAV source the moment the pipeline ended; PyAV's close is not thread-safe (it drops the GIL
before checking whether the demuxer is open), so the demuxer was sometimes freed twice. The
stress test switches sources and closes windows for ~10 s in a subprocess (a crash is then a
failure, not the end of the test run); before the fix it crashed in 8 of 9 runs.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
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
            assert wait(lambda: window.session.pipeline is not None and window.session.source is second
                        and window.frames_shown >= 2, timeout=120), window.message.text()
        window.close()
        assert len(calls) == 1, calls
        if ending == "open another source":
            assert len(later) == 1, later
    finally:
        window.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("rmpe-")]


CYCLES_SCRIPT = r"""
# The real models on a small video written here: switch sources 8 times per window, then close it.
import sys, time
from PySide6 import QtCore, QtWidgets
from app.main_window import MainWindow
from app.settings import Settings
from app.sources_dialog import SourceSpec
from core.config import Config
from core.io import PatternSource, VideoWriter
from core.io.writers import SourceInfo
from core.pipeline import FrameResult
from core.poses import Poses

budget_s, folder = float(sys.argv[1]), sys.argv[2]
video = folder + "/pattern.mp4"
source, writer = PatternSource(160, 120, 30.0, num_frames=30), VideoWriter(video)
writer.open(SourceInfo("pattern", 30.0, 160, 120, 30, False), Config.load())
while (item := source.read()) is not None:
    writer.write(FrameResult(item.index, item.timestamp, item.image, Poses.empty(), item.captured_at))
writer.close()

app = QtWidgets.QApplication([])
spec = SourceSpec("file", video)
start, cycles, windows = time.monotonic(), 0, 0
while windows < 2 or time.monotonic() - start < budget_s:
    window = MainWindow(Config.load(), Settings(folder + "/app.yaml"))
    window.show()
    windows += 1
    for _ in range(8):  # each open stops the running pipeline first (the source-switch path)
        window.open_source(spec)
        deadline = time.monotonic() + 60
        while window.frames_shown < 1 + cycles % 3:
            assert time.monotonic() < deadline, window.message.text()
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 10)
        cycles += 1
    window.close()  # the Ctrl-C path
    window.deleteLater()
    app.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
print("cycles", cycles, "windows", windows)
"""


def test_open_close_cycles_never_crash(tmp_path, blazepose_models):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONFAULTHANDLER="1",
               RMPE_LIVE_CONFIG_DIR=str(tmp_path / "config"))
    proc = subprocess.run([sys.executable, "-c", CYCLES_SCRIPT, "10", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "cycles" in proc.stdout and "Traceback" not in output, output[-4000:]


STUCK_SCRIPT = r"""
# main.py gui with short join timeouts, so a thread stuck in FFmpeg outlives the window's close.
import sys
import app.session
app.session.JOIN_TIMEOUT_S = app.session.OPEN_JOIN_TIMEOUT_S = 1.0
from core.cli import main
sys.exit(main(["gui", "--url", sys.argv[1]]))
"""


def test_ctrl_c_with_a_thread_stuck_in_ffmpeg_exits_at_once(tmp_path, blazepose_models):
    """A thread that outlives the join timeouts must not be under interpreter shutdown: one inside
    torch or ONNX Runtime then aborts the process ("terminate called without an active exception":
    measured 16 of 16 exits with daemon threads in model calls). A stream that accepts the
    connection and never answers is the stuck thread a test can make reliably: it holds the opening
    thread inside FFmpeg for its 5 s timeout. Ctrl-C must still close the window, save the settings
    and exit 0 at once, leaving without interpreter shutdown."""
    server = socket.create_server(("127.0.0.1", 0))
    connected = threading.Event()
    held = []

    def accept():
        conn, _ = server.accept()
        held.append(conn)  # never answer; closed when the test ends
        connected.set()

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/stream.ts"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONFAULTHANDLER="1",
               RMPE_LIVE_CONFIG_DIR=str(tmp_path / "config"))
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", STUCK_SCRIPT, url], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        assert connected.wait(120), log.read_text()
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for conn in held:
            conn.close()
        server.close()
    text = log.read_text()
    assert "SIGINT: closing" in text and "leaving without interpreter shutdown" in text, text
    assert "rmpe-app-open" in text and "Traceback" not in text, text
    assert took < 4.5, took  # did not wait for FFmpeg's 5 s timeout
    assert (tmp_path / "config" / "app.yaml").is_file()
