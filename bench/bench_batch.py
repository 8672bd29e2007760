#!/usr/bin/env python3
"""Collection throughput: ``main.py batch`` against ``main.py run`` once per clip, in one run.

The collection: ``--clips`` clips of ``--frames`` frames cut from the demo video at ``--width`` px
(H.264, made once per run with PyAV). Both sides write the same output (COCO JSON) and are timed
as wall time from the first command's start to the last one's end, processes and model loading
included, because that is what a user waits for:

- reference: ``python main.py run --video CLIP --json OUT`` once per clip, one after another
  (models load once per clip; torch / ONNX Runtime threads at their defaults);
- batch: ``python main.py batch FOLDER --out DIR --workers W`` (default W: one per core).

Throughput = total frames / wall seconds. Goal: batch ≥ 1.2× the reference on 2 cores (from loading
the models once per worker and keeping every core busy). Each side runs ``--repeats`` times and
keeps its best (the machine may be shared). Writes bench/results/bench_batch.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
GOAL = 1.2


def make_clips(source: str | os.PathLike, folder: str | os.PathLike, count: int, frames: int, width: int,
               corrupt: int | None = None) -> list[Path]:
    """Cut ``count`` consecutive ``frames``-frame clips from ``source``, scaled to ``width`` px (even
    height), as H.264 MP4 ``clip_<i>.mp4``; clip ``corrupt`` (an index) is replaced by the first 2 KB
    of a real clip followed by garbage, so it is unreadable."""
    import av

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"clip_{i}.mp4" for i in range(count)]
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        rate = Fraction(stream.average_rate or 30).limit_denominator(1001)
        height = int(round(stream.height * width / stream.width / 2)) * 2
        decoded = src.decode(stream)
        for path in paths:
            with av.open(str(path), "w", format="mp4") as out:
                enc = out.add_stream("libx264", rate=rate)
                enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
                enc.options = {"preset": "ultrafast", "crf": "23"}
                enc.codec_context.time_base = 1 / rate
                for i in range(frames):
                    frame = next(decoded).reformat(width=width, height=height, format="yuv420p")
                    frame.pts, frame.time_base = i, 1 / rate
                    out.mux(enc.encode(frame))
                out.mux(enc.encode(None))
    if corrupt is not None:
        head = paths[corrupt].read_bytes()[:2048]
        paths[corrupt].write_bytes(head + os.urandom(8192))
    return paths


def _timed(cmd_lists: list[list[str]]) -> float:
    t0 = time.perf_counter()
    for cmd in cmd_lists:
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=38, help="frames per clip (clips × frames ≤ the demo's 230)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--workers", type=int, help="batch workers (default: batch's own default)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from core.assets import artefact_path

    if args.clips * args.frames > 230:
        raise SystemExit(f"--clips {args.clips} × --frames {args.frames} needs more than the demo's 230 frames")
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="rmpe-bench-batch-") as tmp:
        tmp = Path(tmp)
        clips = make_clips(artefact_path("demo_video"), tmp / "clips", args.clips, args.frames, args.width)
        total_frames = args.clips * args.frames
        ref_s, batch_s = [], []
        for r in range(args.repeats):
            shutil.rmtree(tmp / "ref", ignore_errors=True)
            ref_s.append(_timed([[py, "main.py", "run", "--video", str(c), "--json", str(tmp / "ref" / f"{c.stem}.json"),
                                  "--no-progress"] for c in clips]))
            shutil.rmtree(tmp / "batch", ignore_errors=True)
            cmd = [py, "main.py", "batch", str(tmp / "clips"), "--out", str(tmp / "batch"), "--no-progress"]
            if args.workers:
                cmd += ["--workers", str(args.workers)]
            batch_s.append(_timed([cmd]))
    ref_fps, batch_fps = total_frames / min(ref_s), total_frames / min(batch_s)
    ratio = batch_fps / ref_fps
    cores = len(os.sched_getaffinity(0))
    rows = [("run once per clip", min(ref_s), ref_fps), ("batch", min(batch_s), batch_fps)]
    print(f"{args.clips} clips × {args.frames} frames at {args.width} px, {cores} cores, best of {args.repeats}")
    print(f"{'':20s} {'wall s':>8s} {'frames/s':>9s}")
    for name, s, fps in rows:
        print(f"{name:20s} {s:8.2f} {fps:9.2f}")
    print(f"batch / run-per-clip: {ratio:.2f}× (goal ≥ {GOAL}× on 2 cores) {'PASS' if ratio >= GOAL else 'MISS'}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_batch.json").write_text(json.dumps({
        "clips": args.clips, "frames_per_clip": args.frames, "width": args.width, "cores": cores,
        "workers": args.workers, "repeats": args.repeats, "run_per_clip_s": ref_s, "batch_s": batch_s,
        "run_per_clip_fps": ref_fps, "batch_fps": batch_fps, "ratio": ratio, "goal": GOAL}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
