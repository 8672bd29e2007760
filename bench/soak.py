#!/usr/bin/env python3
"""Soak: run the full pipeline (real models, tracker, smoother, renderer and every writer) over a
looped small copy of the demo for many frames and check that memory stays flat.

RSS is sampled when the warm-up frames are done (models compiled, buffers allocated, encoder
lookahead full) and at the end; the goal is growth < 5 %. Prints a table and writes
bench/results/soak.json.

    python bench/soak.py                 # 10,000 frames at 320 px wide
    python bench/soak.py --frames 300    # the short version the test suite runs
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
GOAL_GROWTH = 0.05


def rss_mib() -> float:
    """Current resident set size (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_small_clip(video: Path, width: int, folder: Path) -> Path:
    """The demo scaled to ``width``, as H.264 (cheap to decode again and again)."""
    from core.config import Config
    from core.io import SourceInfo, VideoFileSource, VideoWriter

    out = folder / f"demo_{width}.mp4"
    with VideoFileSource(video, width=width) as src:
        writer = VideoWriter(out, preset="veryfast", crf=18)
        writer.open(SourceInfo(src.name, src.fps, src.width, src.height, src.num_frames, False), Config.load())
        while (item := src.read()) is not None:
            writer.write(_Raw(item))
        writer.close()
    return out


class _Raw:
    def __init__(self, item):
        self.index, self.timestamp, self.frame, self.rendered = item.index, item.timestamp, item.image, None


def run(frames: int = 10_000, width: int = 320, warmup: int = 100, video: str = "demo",
        workdir: str | None = None) -> dict:
    from core.config import Config
    from core.estimator import PoseEstimator
    from core.io import CocoJsonWriter, CsvWriter, LoopSource, VideoFileSource, VideoWriter
    from core.io.sources import resolve_video
    from core.cli import build_post_steps
    from core.pipeline import Pipeline

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        clip = make_small_clip(Path(resolve_video(video)), width, tmp)
        config = Config.load()
        estimator = PoseEstimator(config, config.runtime.device)
        source = LoopSource(VideoFileSource(clip), frames)
        samples: list[tuple[int, float]] = []
        every = max(frames // 20, 1)
        start: dict = {}

        def on_result(result):
            done = pipeline.frames_done + 1  # this frame included
            if done == min(warmup, frames):
                start.update(rss=rss_mib(), t=time.perf_counter(), frame=done)
            if done % every == 0:
                samples.append((done, rss_mib()))

        sinks = [VideoWriter(tmp / "soak.mp4"), CocoJsonWriter(tmp / "soak.json"), CsvWriter(tmp / "soak.csv")]
        pipeline = Pipeline(source, config, sinks=sinks, on_result=on_result, estimator=estimator,
                            post_steps=build_post_steps(config, source.fps))
        rss_before = rss_mib()
        t0 = time.perf_counter()
        pipeline.start()
        pipeline.wait()
        elapsed = time.perf_counter() - t0
        rss_end = rss_mib()
        source.close()
        stats = pipeline.stats()
    growth = (rss_end - start["rss"]) / start["rss"]
    return {
        "frames": stats["frames"], "width": width, "warmup_frames": start["frame"],
        "rss_before_mib": rss_before, "rss_start_mib": start["rss"], "rss_end_mib": rss_end,
        "growth": growth, "goal_growth": GOAL_GROWTH, "passed": growth < GOAL_GROWTH,
        "elapsed_s": elapsed, "fps": stats["fps"], "rss_samples": samples,
        "device": stats["device"], "backend": stats["backend"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--video", default="demo")
    ap.add_argument("--json", default=str(RESULTS / "soak.json"))
    args = ap.parse_args(argv)
    r = run(args.frames, args.width, args.warmup, args.video)
    print(f"{'frames':<22}{r['frames']:>12}")
    print(f"{'frame width':<22}{r['width']:>12}")
    print(f"{'end-to-end fps':<22}{r['fps']:>12.1f}")
    print(f"{'RSS before run MiB':<22}{r['rss_before_mib']:>12.1f}")
    print(f"{'RSS after warm-up MiB':<22}{r['rss_start_mib']:>12.1f}   (frame {r['warmup_frames']})")
    print(f"{'RSS at end MiB':<22}{r['rss_end_mib']:>12.1f}")
    print(f"{'growth':<22}{100 * r['growth']:>11.2f}%   goal < {100 * GOAL_GROWTH:.0f}%: "
          f"{'PASS' if r['passed'] else 'FAIL'}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
