"""`python main.py --video ...` end to end in a subprocess: bad input, Ctrl-C, the demo video."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

ROOT = Path(__file__).resolve().parents[3]


def _main(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RMPE_DEBUG", None)
    return subprocess.run([sys.executable, "main.py", *args, "--no-progress"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_video(path: Path, frames: int = 10, faststart: bool = False) -> Path:
    from fractions import Fraction

    import numpy as np

    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        s = c.add_stream("libx264", rate=Fraction(30))
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
        for i in range(frames):
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 20) % 256, np.uint8), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def _case(kind: str, tmp: Path) -> tuple[list[str], str]:
    out = ["--out", str(tmp / "o.mp4"), "--json", str(tmp / "o.json")]
    if kind == "missing_file":
        return ["--video", str(tmp / "none.mp4"), *out], "video not found"
    if kind == "text_file":
        (tmp / "readme.mp4").write_text("not a video\n" * 50)
        return ["--video", str(tmp / "readme.mp4"), *out], "not a readable video"
    if kind == "zero_frames":
        return ["--video", str(_small_video(tmp / "z.mp4", 0)), *out], "no video stream"
    if kind == "truncated":
        p = _small_video(tmp / "t.mp4", 40)
        p.write_bytes(p.read_bytes()[:600])
        return ["--video", str(p), *out], "not a readable video"
    if kind == "camera_absent":
        return ["--camera", "93", *out], "camera 93"
    if kind == "url_unreachable":
        return ["--url", f"http://127.0.0.1:{_closed_port()}/cam.mjpg", *out], "cannot open stream"
    if kind == "out_dir_is_a_file":
        (tmp / "blocker").write_text("x")
        return ["--video", str(_small_video(tmp / "v.mp4")), "--out", str(tmp / "blocker" / "o.mp4")], "folder"
    if kind == "out_dir_unwritable":
        return ["--video", str(_small_video(tmp / "v.mp4")), "--json", "/proc/rmpe-out/o.json"], "JSON folder"
    if kind == "bad_config":
        (tmp / "c.yaml").write_text("detector:\n  treshold: 0.3\n")
        return ["--video", str(_small_video(tmp / "v.mp4")), "--config", str(tmp / "c.yaml"), *out], "unknown key"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing_file", "text_file", "zero_frames", "truncated", "camera_absent",
                                  "url_unreachable", "out_dir_is_a_file", "out_dir_unwritable", "bad_config"])
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, kind):
    args, message = _case(kind, tmp_path)
    t0 = time.perf_counter()
    proc = _main(*args, timeout=60)
    assert time.perf_counter() - t0 < 30
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "o.mp4").exists()  # failed before any work


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted: outputs finalised after"),
                                             (signal.SIGTERM, 143, "interrupted by SIGTERM: outputs finalised after"),
                                             (signal.SIGHUP, 129, "interrupted by SIGHUP: outputs finalised after")])
def test_a_signal_finalises_the_video_and_the_json(tmp_path, blazepose_models, demo_video, sig, code, said):
    """Ctrl-C, SIGTERM (docker stop, systemd, timeout) and SIGHUP mid-run: a playable MP4, valid JSON."""
    out, js = tmp_path / "cut.mp4", tmp_path / "cut.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "main.py", "--video", "demo", "--out", str(out), "--json", str(js),
                             "--no-progress"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline and proc.poll() is None:
            try:  # the JSON being written is valid after every frame, so this read never sees half an entry
                part = next(tmp_path.glob(".rmpe-tmp-cut.json.*.part"))
                if len({e["image_id"] for e in json.loads(part.read_text())}) >= 3:
                    break
            except (StopIteration, FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert not js.exists() and not out.exists()  # unfinished outputs live under temporary names
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and said in stderr
    assert not list(tmp_path.glob(".rmpe-tmp-*"))  # renamed into place, nothing left behind
    entries = json.loads(js.read_text())
    frames_in_json = {e["image_id"] for e in entries}
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        decoded = sum(1 for _ in c.decode(s))
        assert (s.width, s.height) == (1768, 994)
    assert 3 <= decoded < 230
    assert max(frames_in_json) < decoded + 5  # the video holds every frame the JSON reports (± in flight)


DEMO_FRAMES = 60  # of the demo's 230: the walker joins the jumper at frames 40-47


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, blazepose_models, demo_video):
    """The `make demo` command on the demo, every output on: frame count, size, rate and codec of
    the video, the JSON, CSV and OpenPose files, the profile JSON.

    The first 60 frames (--max-frames: both people are in view by frame 47), not all 230, which
    took 47 s at full resolution on 2 cores: the outputs are made the same way for every frame,
    the whole clip runs through the estimator in tests/conftest.py (demo_run), and the same
    command run to a video's end is tests/core/batch/test_batch.py::test_same_results_as_run."""
    paths = {k: tmp_path / v for k, v in (("out", "demo.mp4"), ("json", "demo.json"), ("csv", "demo.csv"),
                                          ("openpose", "op"), ("profile", "profile.json"))}
    proc = _main("--video", "demo", "--out", str(paths["out"]), "--json", str(paths["json"]), "--csv",
                 str(paths["csv"]), "--openpose-json", str(paths["openpose"]), "--profile",
                 "--profile-json", str(paths["profile"]), "--max-frames", str(DEMO_FRAMES), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "device cpu" in proc.stderr or "on cpu" in proc.stderr or "cuda" in proc.stderr
    with av.open(str(demo_video)) as src, av.open(str(paths["out"])) as dst:
        a, b = src.streams.video[0], dst.streams.video[0]
        assert (b.width, b.height) == (a.width, a.height) == (1768, 994)
        assert b.average_rate == a.average_rate == 30
        assert b.codec_context.name == "h264"
        assert sum(1 for _ in dst.decode(b)) == DEMO_FRAMES
    entries = json.loads(paths["json"].read_text())
    frames = {e["image_id"] for e in entries}
    assert frames <= set(range(DEMO_FRAMES)) and len(frames) >= 0.95 * DEMO_FRAMES
    assert all(len(e["keypoints"]) == 51 and e["category_id"] == 1 for e in entries)
    assert len(list(paths["openpose"].iterdir())) == DEMO_FRAMES
    assert paths["csv"].read_text().count("\n") == 1 + 17 * len(entries)
    profile = json.loads(paths["profile"].read_text())
    assert profile["frames"] == DEMO_FRAMES and profile["dropped"] == 0
    assert {"decode", "infer", "post", "sinks"} == set(profile["stages"])
    assert "infer.sppe" in profile["substages"] and "end-to-end" in proc.stdout


def test_realtime_flag_selects_realtime_mode():
    import argparse

    from core.errors import UserError
    from core.pipeline.cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args(["--video", "v.mp4", "--realtime"])).pipeline.mode == "realtime"
    assert config_from_args(parser.parse_args(["--video", "v.mp4", "--mode", "realtime"])).pipeline.mode == "realtime"
    assert config_from_args(parser.parse_args(["--video", "v.mp4"])).pipeline.mode == "auto"
    with pytest.raises(UserError, match="--realtime contradicts --mode file"):
        config_from_args(parser.parse_args(["--video", "v.mp4", "--realtime", "--mode", "file"]))
