"""`python main.py gui` end to end in a subprocess: real models, offscreen Qt, Ctrl-C closes it
cleanly (exit 0, settings saved)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.assets]

ROOT = Path(__file__).resolve().parents[2]


def test_main_gui_runs_and_closes_on_ctrl_c(tmp_path, demo_video, blazepose_models):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RMPE_LIVE_CONFIG_DIR=str(tmp_path / "config"))
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "main.py", "gui", "--video", "demo", "--pause-after", "3"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "paused after 3 frames" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "opened demo.mp4" in text and "SIGINT: closing" in text and "Traceback" not in text
    assert (tmp_path / "config" / "app.yaml").is_file()
