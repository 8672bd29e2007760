#!/usr/bin/env python3
"""End-to-end FPS: our pipeline against MediaPipe's legacy ``solutions.pose``, in one run.

Both read the same clip (the demo scaled to 640 px wide, H.264) from disk and include decoding:

- MediaPipe 0.10.14 ``solutions.pose`` (``model_complexity=1``: the same full landmark model we
  embed; video mode, so it detects once and tracks its single person) runs in its own virtual
  environment, ``bench/.mp-venv``, which this script creates on first use, as a subprocess that
  reports its FPS as JSON;
- ours: the threaded ``Pipeline`` in file mode (decode → detect / ROI track → SPPE → decode →
  pose NMS → tracker → smoother), no writers, (a) limited to one person, (b) with everyone.

Goals: (a) ≥ 1.0× MediaPipe, (b) ≥ 0.6× MediaPipe. Also printed: the marginal cost of one more
person, (ms/frame of b − ms/frame of a) / (people/frame of b − people/frame of a). Each side runs
``--repeats`` times and keeps its best (the machine may be shared). Writes
bench/results/bench_pipeline.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"
MP_VENV = HERE / ".mp-venv"
MP_REQUIREMENTS = ["mediapipe==0.10.14", "opencv-python-headless<5"]
WIDTH = 640
GOALS = {"one_person": 1.0, "all_people": 0.6}

# Runs inside the MediaPipe venv: argv = clip path; prints one JSON line.
MP_SCRIPT = r"""
import json, sys, time
import cv2
import mediapipe as mp

path = sys.argv[1]
pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                              min_detection_confidence=0.5, min_tracking_confidence=0.5)
cap = cv2.VideoCapture(path)
frames = found = 0
t0 = time.perf_counter()
while True:
    ok, bgr = cap.read()
    if not ok:
        break
    result = pose.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    frames += 1
    found += result.pose_landmarks is not None
elapsed = time.perf_counter() - t0
print(json.dumps({"frames": frames, "frames_with_person": found, "elapsed_s": elapsed,
                  "fps": frames / elapsed, "mediapipe": mp.__version__}))
"""


def ensure_mp_venv() -> Path:
    """bench/.mp-venv with MediaPipe 0.10.14 (created once with venv + pip)."""
    python = MP_VENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import mediapipe, cv2"],
                                          capture_output=True).returncode == 0:
        return python
    print(f"creating {MP_VENV} with {' '.join(MP_REQUIREMENTS)} (once)", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(MP_VENV)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *MP_REQUIREMENTS], check=True)
    return python


def run_mediapipe(python: Path, clip: Path) -> dict:
    proc = subprocess.run([str(python), "-c", MP_SCRIPT, str(clip)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"MediaPipe run failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_ours(clip: Path, max_persons: int | None) -> dict:
    from core.config import Config
    from core.estimator import PoseEstimator
    from core.io import VideoFileSource
    from core.cli import build_post_steps
    from core.pipeline import Pipeline

    config = Config.load()
    if max_persons is not None:
        config.detector.max_persons = max_persons
    estimator = PoseEstimator(config, config.runtime.device)
    people = []
    with VideoFileSource(clip) as source:
        pipeline = Pipeline(source, config, estimator=estimator, render=False,
                            post_steps=build_post_steps(config, source.fps),
                            on_result=lambda r: people.append(len(r.poses)))
        t0 = time.perf_counter()
        pipeline.start()
        pipeline.wait()
        elapsed = time.perf_counter() - t0
        stats = pipeline.stats()
    n = len(people)
    return {"frames": n, "elapsed_s": elapsed, "fps": n / elapsed, "people_per_frame": sum(people) / max(n, 1),
            "frames_with_person": sum(p > 0 for p in people), "device": stats["device"],
            "backend": stats["backend"], "stages": stats["stages"]}


def best(runs: list[dict]) -> dict:
    out = max(runs, key=lambda r: r["fps"])
    out["fps_runs"] = [round(r["fps"], 2) for r in runs]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=str(RESULTS / "bench_pipeline.json"))
    args = ap.parse_args(argv)

    from core.io.sources import resolve_video
    from soak import make_small_clip

    RESULTS.mkdir(parents=True, exist_ok=True)
    clip = RESULTS / f"demo_{WIDTH}.mp4"
    if not clip.exists():
        clip = make_small_clip(Path(resolve_video("demo")), WIDTH, RESULTS)
    python = ensure_mp_venv()

    mp_runs, one_runs, all_runs = [], [], []
    for _ in range(max(1, args.repeats)):  # interleaved, so load changes hit every side alike
        mp_runs.append(run_mediapipe(python, clip))
        one_runs.append(run_ours(clip, 1))
        all_runs.append(run_ours(clip, None))
    mp_r, one, everyone = best(mp_runs), best(one_runs), best(all_runs)

    ratio_one = one["fps"] / mp_r["fps"]
    ratio_all = everyone["fps"] / mp_r["fps"]
    extra_people = everyone["people_per_frame"] - one["people_per_frame"]
    marginal_ms = ((1000 / everyone["fps"] - 1000 / one["fps"]) / extra_people) if extra_people > 0.05 else None

    print(f"clip: demo at {WIDTH} px wide, {mp_r['frames']} frames; ours on {one['device']} ({one['backend']})")
    print(f"{'run':<28}{'fps':>8}{'ms/frame':>10}{'people/frame':>14}{'ratio':>8}{'goal':>7}")
    print(f"{'MediaPipe solutions.pose':<28}{mp_r['fps']:>8.1f}{1000 / mp_r['fps']:>10.1f}"
          f"{mp_r['frames_with_person'] / mp_r['frames']:>14.2f}{1.0:>8.2f}{'':>7}")
    for name, r, ratio, goal in (("ours, 1 person (a)", one, ratio_one, GOALS["one_person"]),
                                 ("ours, all people (b)", everyone, ratio_all, GOALS["all_people"])):
        flag = "ok" if ratio >= goal else "MISS"
        print(f"{name:<28}{r['fps']:>8.1f}{1000 / r['fps']:>10.1f}{r['people_per_frame']:>14.2f}"
              f"{ratio:>8.2f}{goal:>6.1f}x {flag}")
    if marginal_ms is not None:
        print(f"marginal cost per extra person: {marginal_ms:.1f} ms/frame")

    report = {"clip_width": WIDTH, "mediapipe": mp_r, "ours_one_person": one, "ours_all_people": everyone,
              "ratio_one_person": ratio_one, "ratio_all_people": ratio_all, "goals": GOALS,
              "marginal_ms_per_person": marginal_ms}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
