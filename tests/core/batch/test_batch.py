"""`main.py batch`: inputs, thread budget, manifest proof, local workers (isolation, outputs), resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from core.batch import Manifest, expand_inputs, thread_budget, verify
from core.batch.manifest import fingerprint
from core.cli import main as cli_main
from core.errors import UserError

ROOT = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- inputs, budget, manifest (no models)

def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_expand_inputs_folders_globs_lists_and_names(tmp_path, monkeypatch):
    a = _touch(tmp_path / "s1" / "trial.mp4")
    b = _touch(tmp_path / "s2" / "trial.mp4")
    c = _touch(tmp_path / "s1" / "deep" / "x.MOV")
    _touch(tmp_path / "s1" / "notes.md")  # not a video extension: ignored in folders
    d = _touch(tmp_path / "loose" / "one.avi")
    lst = tmp_path / "loose" / "list.txt"
    lst.write_text("# my clips\n\none.avi\n../s1/trial.mp4\n")  # relative to the list; a repeat
    monkeypatch.chdir(tmp_path)
    tasks = expand_inputs(["s1", str(tmp_path / "s2" / "*.mp4"), str(lst)])
    assert [t.video for t in tasks] == [str(p.resolve()) for p in (c, a, b, d)]
    assert [t.index for t in tasks] == [0, 1, 2, 3]
    names = [t.name for t in tasks]
    assert names[0] == "deep__x" and names[3] == "one"
    # "trial" from s1 (folder) and from s2 (glob) collide: both get a path hash, stable across calls
    assert names[1].startswith("trial-") and names[2].startswith("trial-") and names[1] != names[2]
    assert [t.name for t in expand_inputs(["s1", str(tmp_path / "s2" / "*.mp4"), str(lst)])] == names


@pytest.mark.parametrize("spec, message", [
    ("missing.mp4", "input not found"),
    ("empty", "no input files"),
    ("*.nothing", "no files match"),
    ("blank.txt", "names no inputs"),
])
def test_expand_inputs_errors(tmp_path, monkeypatch, spec, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank.txt").write_text("# nothing\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        expand_inputs([spec])


@pytest.mark.parametrize("workers, threads, cores, expected", [
    (None, None, 2, (2, 1)),   # default: one single-threaded worker per core
    (None, None, 16, (16, 1)),
    (None, 4, 16, (4, 4)),     # threads given: workers fill the cores
    (2, None, 16, (2, 8)),     # workers given: threads share the cores
    (2, 8, 4, (2, 2)),         # too many threads: capped so workers × threads ≤ cores
    (4, None, 2, (4, 1)),      # more workers than cores: at least one thread each
])
def test_thread_budget(workers, threads, cores, expected):
    assert thread_budget(workers, threads, cores) == expected


def test_manifest_torn_line_and_verification(tmp_path):
    out = tmp_path
    (out / "v").mkdir()
    (out / "v" / "v.json").write_text("[]\n")
    rec = {"input": "/x/v.mp4", "name": "v", "status": "ok", "files": fingerprint(out / "v", out)}
    m = Manifest(out)
    m.append(rec)
    with open(m.path, "a") as f:
        f.write('{"input": "/x/w.mp4", "sta')  # a hard kill mid-write
    m.open_for_append()
    m.append({**rec, "input": "/x/u.mp4"})
    assert [r["input"] for r in m.records()] == ["/x/v.mp4", "/x/u.mp4"]
    assert verify(rec, out)
    (out / "v" / "v.json").write_text("[]\n ")  # changed after it was recorded
    assert not verify(rec, out)
    (out / "v" / "v.json").unlink()
    assert not verify(rec, out)
    assert not verify({**rec, "status": "failed"}, out)


# ---------------------------------------------------------------- local workers on real clips

def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_local_workers_five_complete_one_failed(local_run, clips, spec, read_manifest):
    CLIPS, FRAMES, CORRUPT = spec["clips"], spec["frames"], spec["corrupt"]
    rc, out = local_run
    assert rc == 1  # one video failed
    records = read_manifest(out)
    assert sorted(r["name"] for r in records) == [f"clip_{i}" for i in range(CLIPS)]
    by_name = {r["name"]: r for r in records}
    bad = by_name.pop(f"clip_{CORRUPT}")
    assert bad["status"] == "failed" and "not a readable video" in bad["error"]
    assert not (out / f"clip_{CORRUPT}").exists()
    workers = set()
    for name, r in by_name.items():
        assert r["status"] == "ok" and r["error"] is None and r["frames"] == FRAMES, r
        assert r["video_fps"] == pytest.approx(30) and r["seconds"] > 0 and r["fps"] > 0
        assert set(r["outputs"]) == {"json", "mp4"}
        results = json.loads((out / r["outputs"]["json"]).read_text())
        assert results and {e["image_id"] for e in results} <= set(range(FRAMES))
        assert all(len(e["keypoints"]) == 51 for e in results)
        assert _decoded_frames(out / r["outputs"]["mp4"]) == FRAMES
        assert verify(r, out)
        workers.add(r["worker"])
    assert len(workers) == 2  # both processes did work
    assert not (out / ".partial").exists()


def test_resume_skips_verified_redoes_changed_and_failed(local_run, tmp_path, spec, read_manifest):
    CORRUPT = spec["corrupt"]
    _, first = local_run
    out = tmp_path / "out"
    shutil.copytree(first, out)
    before = read_manifest(out)
    (out / "clip_0" / "clip_0.json").write_text("[\n")  # a truncated output
    kept = {n: (out / n / f"{n}.mp4").stat().st_mtime_ns for n in ("clip_1", "clip_2", "clip_4", "clip_5")}
    clips = Path(before[0]["input"]).parent
    rc = cli_main(["batch", str(clips), "--out", str(out), "--workers", "1", "--threads", "1", "--json", "--mp4",
                   "--no-progress"])
    assert rc == 1
    new = read_manifest(out)[len(before):]
    assert sorted(r["name"] for r in new) == ["clip_0", f"clip_{CORRUPT}"]
    assert {r["name"]: r["status"] for r in new} == {"clip_0": "ok", f"clip_{CORRUPT}": "failed"}
    assert verify(new[[r["name"] for r in new].index("clip_0")], out)
    assert {n: (out / n / f"{n}.mp4").stat().st_mtime_ns for n in kept} == kept


def test_sigterm_keeps_finished_outputs_and_resume_redoes_only_the_rest(clips, tmp_path, blazepose_models, spec,
                                                                        read_manifest):
    CLIPS = spec["clips"]
    out = tmp_path / "out"
    cmd = [sys.executable, "main.py", "batch", str(clips), "--out", str(out), "--workers", "1", "--threads", "1",
           "--json", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 240
    while not (manifest.exists() and manifest.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no video finished in time"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    first = read_manifest(out)
    assert 1 <= len(first) < CLIPS
    for r in first:
        assert r["status"] == "failed" or verify(r, out)
    assert not (out / ".partial").exists()
    on_disk = {p.name for p in out.iterdir() if p.is_dir()}
    assert on_disk == {r["name"] for r in first if r["status"] == "ok"}  # no output without its record

    rc = cli_main(["batch", str(clips), "--out", str(out), "--workers", "2", "--threads", "1", "--json",
                   "--no-progress"])
    assert rc == 1
    second = read_manifest(out)[len(first):]
    done_first = {r["name"] for r in first if r["status"] == "ok"}
    assert {r["name"] for r in second} == {f"clip_{i}" for i in range(CLIPS)} - done_first
    latest = Manifest(out).latest()
    assert sum(r["status"] == "ok" for r in latest.values()) == CLIPS - 1


def test_ray_flag_without_ray_says_how_to_install(clips, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    rc = cli_main(["batch", str(clips), "--out", str(tmp_path / "out"), "--ray", "auto"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "pip install" in err[0] and "ray" in err[0]
    assert not (tmp_path / "out").exists()  # nothing started


def test_same_results_as_run(local_run, clips, tmp_path):
    """A batch video's COCO JSON equals `main.py run` on that clip with the same settings."""
    _, out = local_run
    ref = tmp_path / "ref.json"
    rc = cli_main(["run", "--video", str(clips / "clip_4.mp4"), "--json", str(ref), "--threads", "1",
                   "--no-progress"])
    assert rc == 0
    a = json.loads(ref.read_text())
    b = json.loads((out / "clip_4" / "clip_4.json").read_text())
    assert [e["image_id"] for e in a] == [e["image_id"] for e in b]
    np.testing.assert_allclose([e["keypoints"] for e in a], [e["keypoints"] for e in b], atol=1e-3)


@dataclass
class DieOn:
    """Wraps a job: the worker process SIGKILLs itself when it reaches ``victim`` (a segfault or an
    OOM kill looks the same to the driver)."""

    inner: object
    victim: str
    kind: str = "pose"

    def load(self, threads):
        return self.inner.load(threads)

    def run(self, state, video, dest, name, progress=None):
        if name == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.run(state, video, dest, name, progress)


def test_dead_worker_fails_its_video_alone_and_is_replaced(clips, tmp_path, blazepose_models, read_manifest):
    from core.batch import run_collection
    from core.batch.cli import pose_job
    from core.config import Config

    tasks = expand_inputs([str(clips / f"clip_{i}.mp4") for i in (0, 1, 2)])
    summary = run_collection(tasks, tmp_path / "out", DieOn(pose_job(Config.load()), "clip_1"), workers=1,
                             threads=1, progress=False)
    assert (summary.ok, summary.failed, summary.exit_code) == (2, 1, 1)
    records = {r["name"]: r for r in read_manifest(tmp_path / "out")}
    assert records["clip_1"]["status"] == "failed"
    assert records["clip_1"]["error"] == "worker process died (killed by signal 9)"
    assert records["clip_0"]["worker"] != records["clip_2"]["worker"]  # a new worker took over
    assert verify(records["clip_0"], tmp_path / "out") and verify(records["clip_2"], tmp_path / "out")
