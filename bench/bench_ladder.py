"""The detector and SPPE ladder on the demo: people found, false positives, ms per call.

    python bench/bench_ladder.py [--step N] [--detectors NAME ...] [--sppes NAME ...]
                                 [--threads T] [--out bench/results/bench_ladder.json]

Detectors (every ``--step``-th frame of the demo, each detector on the same frames): share of
frames with >= 1 / >= 2 / >= 3 people found, frames where the ~25x45-px background person
(standing still at the shop door, frame pixels ``BACKGROUND_BOX``) is found, detections that
match no person ("false positives": boxes that are neither one of the two large people nor the
background person; the sign pole at ``POLE_BOX`` is reported separately since it recurs), and
median ms per call. A detection is "large" when its box is >= ``LARGE_HEIGHT`` px tall; the
two large people are the two best large boxes that overlap each other by IoU < 0.5. Crops of
every unmatched detection on a sample of frames are written to bench/results/ladder_fp/ for
checking by eye.

SPPEs (``--sppes``; each model that is installed): ms per crop at batch 1 / 3 / 8.

Pipeline (``--pipeline NAME ...``, use ``--step 1``): the estimator with default settings but the
detector, on the demo: share of frames with >= 1 / 2 / 3 people after pose NMS, background
person found, frames with more than 3 poses (more people than visible), ms per frame.

Prints a table and writes the JSON. Timing numbers mean something only on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.assets import artefact_path  # noqa: E402
from core.config import DetectorConfig, RuntimeConfig  # noqa: E402
from core.geometry import box_iou  # noqa: E402

BACKGROUND_BOX = (1455, 580, 1505, 645)  # the background person (x1, y1, x2, y2), demo frame px
POLE_BOX = (1320, 580, 1365, 680)  # the sign post NanoDet takes for a person at low scores
LARGE_HEIGHT = 150


def demo_frames(step: int, first: int = 0, last: int | None = None) -> dict[int, np.ndarray]:
    frames = {}
    with av.open(str(artefact_path("demo_video"))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if last is not None and i >= last:
                break
            if i >= first and i % step == 0:
                frames[i] = frame.to_ndarray(format="rgb24")
    return frames


def make(name: str, runtime: RuntimeConfig):
    """Detector variants by name: blazepose, hog, nanodet-416, nanodet-576x1024, nanodet-416-tiles,
    nanodet-576x1024+blazepose."""
    from core.detection.blazepose import BlazePoseDetector
    from core.detection.combined import CombinedDetector
    from core.detection.hog import HOGDetector
    from core.detection.nanodet import NanoDetDetector

    if name == "blazepose":
        return BlazePoseDetector(DetectorConfig(), "cpu", runtime=runtime)
    if name == "hog":
        return HOGDetector(DetectorConfig(name="hog"))
    if name.startswith("nanodet"):
        body, _, face = name.partition("+")
        parts = body.split("-")
        h, _, w = parts[1].partition("x")
        size = (int(h), int(w or h))
        tiles = "tiles" in parts
        cfg = SimpleNamespace(tiling=tiles, tile_size=640, tile_overlap=0.25, max_persons=10)
        det = NanoDetDetector(cfg, "cpu", runtime=runtime, input_size=size)
        if face:
            return CombinedDetector(det, make(face, runtime))
        return det
    raise SystemExit(f"unknown detector {name}")


def classify(boxes: np.ndarray) -> dict:
    """Which detections are the two large people, the background person, the pole, or other."""
    h = boxes[:, 3] - boxes[:, 1]
    large = [i for i in np.flatnonzero(h >= LARGE_HEIGHT)]
    people = []
    for i in large:  # boxes come best first
        if all(box_iou(boxes[i:i + 1], boxes[j:j + 1])[0, 0] < 0.5 for j in people):
            people.append(i)
    people = people[:2]
    bg = np.asarray(BACKGROUND_BOX, np.float32)[None]
    pole = np.asarray(POLE_BOX, np.float32)[None]
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)

    def inside(region):
        r = region[0]
        return (centres[:, 0] >= r[0]) & (centres[:, 0] <= r[2]) & (centres[:, 1] >= r[1]) \
            & (centres[:, 1] <= r[3]) & (h < LARGE_HEIGHT)

    is_bg, is_pole = inside(bg), inside(pole)
    background = bool(is_bg.any())
    used = set(people) | set(np.flatnonzero(is_bg)[:1])
    others = [i for i in range(len(boxes)) if i not in used and not is_pole[i]]
    return {"large": len(people), "background": background, "pole": bool(is_pole.any()),
            "others": others}


def bench_detectors(names, frames, runtime, fp_dir: Path) -> dict:
    results = {}
    for name in names:
        det = make(name, runtime)
        first = next(iter(frames.values()))
        det(first)  # warm-up (export, session, first-call allocations)
        ms, counts, bg, pole, fp = [], [], 0, 0, 0
        for k, (i, frame) in enumerate(frames.items()):
            t0 = time.perf_counter()
            d = det(frame)
            ms.append((time.perf_counter() - t0) * 1e3)
            c = classify(d.boxes)
            counts.append(c["large"] + int(c["background"]))
            bg += c["background"]
            pole += c["pole"]
            fp += len(c["others"])
            if c["others"] and k % 4 == 0:
                fp_dir.mkdir(parents=True, exist_ok=True)
                for j in c["others"]:
                    x0, y0, x1, y1 = [int(v) for v in d.boxes[j]]
                    crop = frame[max(0, y0 - 20):y1 + 20, max(0, x0 - 20):x1 + 20]
                    if crop.size:
                        cv2.imwrite(str(fp_dir / f"{name}_f{i}_{j}.png"), crop[..., ::-1])
        n = len(frames)
        counts = np.asarray(counts)
        results[name] = {
            "frames": n, "ge1": float((counts >= 1).mean()), "ge2": float((counts >= 2).mean()),
            "ge3": float((counts >= 3).mean()), "background_found": bg / n,
            "pole_frames": pole / n, "other_unmatched_per_frame": fp / n,
            "ms_median": statistics.median(ms), "ms_min": min(ms)}
        print(f"{name:28s} >=1 {results[name]['ge1']:.2f}  >=2 {results[name]['ge2']:.2f}  "
              f">=3 {results[name]['ge3']:.2f}  bg {bg / n:.2f}  pole {pole / n:.2f}  "
              f"other/frame {fp / n:.2f}  {statistics.median(ms):7.1f} ms", flush=True)
    return results


PIPELINE_DETECTORS = {  # name: detector config overrides for the estimator run
    "default": {},
    "blazepose": {"name": "blazepose"},
    "nanodet-416": {"name": "nanodet", "tiling": False},
    "nanodet-416-tiles": {"name": "nanodet", "tiling": True, "tile_alternate": False},
    "nanodet-416-tiles-alt": {"name": "nanodet", "tiling": True, "tile_alternate": True},
    "nanodet-576x1024": {"name": "nanodet", "tiling": False, "nanodet_height": 576,
                         "nanodet_width": 1024},
    "nanodet-416-tiles+blazepose": {"name": "nanodet+blazepose", "tiling": True,
                                    "tile_alternate": False},
}


def bench_pipeline(names, frames, device="cpu") -> dict:
    """The estimator (default settings but the detector) on consecutive demo frames: people in
    the output after pose NMS, per frame; more than 3 poses = more people than visible."""
    from core.config import Config
    from core.estimator import PoseEstimator

    results = {}
    for name in names:
        cfg = Config.load(overrides={"detector": PIPELINE_DETECTORS[name]})
        est = PoseEstimator(cfg, device)
        counts, bg, over, ms = [], 0, 0, []
        for frame in frames.values():
            t0 = time.perf_counter()
            poses = est.infer(frame)
            ms.append((time.perf_counter() - t0) * 1e3)
            c = classify(poses.boxes)
            counts.append(c["large"] + int(c["background"]))
            bg += c["background"]
            over += len(poses) > 3
        counts, n = np.asarray(counts), len(frames)
        results[name] = {"frames": n, "ge1": float((counts >= 1).mean()),
                         "ge2": float((counts >= 2).mean()), "ge3": float((counts >= 3).mean()),
                         "background_found": bg / n, "more_than_3": over / n,
                         "ms_median": statistics.median(ms), "ms_mean": float(np.mean(ms))}
        r = results[name]
        print(f"pipeline {name:28s} >=1 {r['ge1']:.2f}  >=2 {r['ge2']:.2f}  >=3 {r['ge3']:.2f}  "
              f"bg {r['background_found']:.2f}  >3 poses {r['more_than_3']:.2f}  "
              f"{r['ms_mean']:7.1f} ms/frame", flush=True)
    return results


def bench_sppes(names, runtime) -> dict:
    results = {}
    for name in names:
        try:
            from core.models.movenet import load_movenet
        except ImportError:
            print(f"{name}: no SPPE module in this tree")
            continue
        model = load_movenet(name, "cpu", runtime)
        size = model.input_size
        row = {}
        for batch in (1, 3, 8):
            x = torch.randint(0, 255, (batch, size, size, 3)).float()
            model(x)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1e3 / batch)
            row[f"ms_per_crop_b{batch}"] = statistics.median(times)
        results[name] = row
        print(f"{name:20s} " + "  ".join(f"{k} {v:.1f}" for k, v in row.items()))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--detectors", nargs="*", default=[
        "blazepose", "nanodet-416", "nanodet-576x1024", "nanodet-416-tiles",
        "nanodet-576x1024+blazepose"])
    parser.add_argument("--sppes", nargs="*", default=[])
    parser.add_argument("--pipeline", nargs="*", default=[],
                        help=f"estimator runs on consecutive frames: {', '.join(PIPELINE_DETECTORS)}")
    parser.add_argument("--frames", default="0:", help="frame range FIRST:LAST (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_ladder.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runtime = RuntimeConfig(threads=args.threads)
    first, _, last = args.frames.partition(":")
    # the pipeline runs want --step 1 (tracking between frames)
    frames = demo_frames(args.step, int(first or 0), int(last) if last else None)
    out = Path(args.out)
    report = {"step": args.step, "threads": args.threads,
              "detectors": bench_detectors(args.detectors, frames, runtime,
                                           out.parent / "ladder_fp"),
              "sppes": bench_sppes(args.sppes, runtime),
              "pipeline": bench_pipeline(args.pipeline, frames)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
