"""The detector and SPPE ladder on the demo: people found, false positives, ms per call.

    python bench/bench_ladder.py [--step N] [--detectors NAME ...] [--sppes NAME ...]
                                 [--pipeline NAME ...] [--phases P,P,...]
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

SPPE quality (``--quality NAME ...``, use ``--step 1``): the estimator with each SPPE, agreement
with blazepose-heavy (median keypoint distance / person height, people matched by mid-hip) and
the limb-length coefficient of variation of the jumping-jacks man over the frames.

Pipeline (``--pipeline NAME ...``, use ``--step 1``): the estimator with default settings but the
detector, on the demo: share of frames with >= 1 / 2 / 3 people after pose NMS, background
person found, frames with more than 3 poses (more people than visible), ms per frame. With
``--phases 0,1,...`` each configuration runs from each of those start frames and the shares are
averaged (a detector schedule's phase against the clip swings a small person's recall).

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
    "nanodet-416-tiles": {"name": "nanodet", "tiling": True, "tiles_per_run": 0},
    "nanodet-416-tiles-4": {"name": "nanodet", "tiling": True, "tiles_per_run": 4},
    "nanodet-416-tiles-2": {"name": "nanodet", "tiling": True, "tiles_per_run": 2},
    "nanodet-416-tiles-1": {"name": "nanodet", "tiling": True, "tiles_per_run": 1},
    "tiles-2-interval-8": {"tiles_per_run": 2, "interval": 8},  # the default until Dec 2026
    "tiles-1-interval-6": {"tiles_per_run": 1, "interval": 6},
    "tiles-1-interval-8": {"tiles_per_run": 1, "interval": 8},
    "nanodet-576x1024": {"name": "nanodet", "tiling": False, "nanodet_height": 576,
                         "nanodet_width": 1024},
    "nanodet-416-tiles+blazepose": {"name": "nanodet+blazepose", "tiling": True,
                                    "tiles_per_run": 0},
}


def bench_pipeline(names, frames, device="cpu", phases=(0,)) -> dict:
    """The estimator (default settings but the detector) on consecutive demo frames: people in
    the output after pose NMS, per frame; more than 3 poses = more people than visible.

    With several ``phases`` each configuration runs once per start frame (the demo from frame p
    on) and the shares are averaged: which frames a detector schedule lands on decides much of
    what a small person's recall comes out at on one clip (the background person: 0.47-0.65
    over 8 start frames for one configuration)."""
    results = {}
    for name in names:
        runs = [_pipeline_run(name, {i: f for i, f in frames.items() if i >= p}, device) for p in phases]
        r = {k: float(np.mean([run[k] for run in runs])) if runs[0][k] is not None else None
             for k in runs[0]}
        r["phases"] = list(phases)
        r["background_found_per_phase"] = [run["background_found"] for run in runs]
        results[name] = r
        spread = (" (" + " ".join(f"{v:.2f}" for v in r["background_found_per_phase"]) + ")"
                  if len(runs) > 1 else "")
        print(f"pipeline {name:28s} >=1 {r['ge1']:.2f}  >=2 {r['ge2']:.2f}  >=3 {r['ge3']:.2f}  "
              f"bg {r['background_found']:.2f}{spread}  jumper {r['jumper_found'] or 0:.2f}  "
              f"walker {r['walker_found'] or 0:.2f}  >3 poses {r['more_than_3']:.2f}  "
              f"{r['ms_mean']:7.1f} ms/frame", flush=True)
    return results


def _pipeline_run(name, frames, device) -> dict:
    from core.config import Config
    from core.estimator import PoseEstimator

    cfg = Config.load(overrides={"detector": PIPELINE_DETECTORS[name]})
    est = PoseEstimator(cfg, device)
    counts, bg, over, ms = [], 0, 0, []
    jumper, walker = [], []
    for i, frame in frames.items():
        t0 = time.perf_counter()
        poses = est.postprocess(est.infer(frame))
        ms.append((time.perf_counter() - t0) * 1e3)
        hips = poses.keypoints[:, [11, 12], :2].mean(1)
        tall = (poses.boxes[:, 3] - poses.boxes[:, 1]) >= LARGE_HEIGHT
        if i in JUMPER_FRAMES:
            (x0, x1), (y0, y1) = JUMPER_HIPS
            jumper.append(bool(((hips[:, 0] >= x0) & (hips[:, 0] <= x1) & (hips[:, 1] >= y0)
                                & (hips[:, 1] <= y1)).any()))
        if i in WALKER_FRAMES:
            walker.append(bool((tall & (hips[:, 1] >= 600) & (hips[:, 1] <= 900)).any()))
        c = classify(poses.boxes)
        counts.append(c["large"] + int(c["background"]))
        bg += c["background"]
        over += len(poses) > 3
    counts, n = np.asarray(counts), len(frames)
    return {"frames": n, "ge1": float((counts >= 1).mean()),
            "ge2": float((counts >= 2).mean()), "ge3": float((counts >= 3).mean()),
            "background_found": bg / n, "more_than_3": over / n,
            "jumper_found": float(np.mean(jumper)) if jumper else None,
            "walker_found": float(np.mean(walker)) if walker else None,
            "ms_median": statistics.median(ms), "ms_mean": float(np.mean(ms))}


LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16))  # COCO-17
JUMPER_HIPS = ((600, 800), (200, 330))  # the jumping-jacks man's mid-hip region, frames 0-160
JUMPER_FRAMES = range(0, 161)  # on the roof box (tests/core/test_estimator.py)
WALKER_FRAMES = range(45, 181)  # the walker in view at ground level


def run_sppe(name: str, frames) -> list:
    """Poses (after pose NMS) of the estimator with default settings but ``sppe.model``."""
    from core.config import Config
    from core.estimator import PoseEstimator

    est = PoseEstimator(Config.load(overrides={"sppe": {"model": name}}), "cpu")
    return [est.postprocess(est.infer(f)) for f in frames.values()]


def limb_cv(runs: list) -> float:
    """Median over the 8 arm/leg segments of the jumping-jacks man of std/mean of its length over
    the frames (both ends scored >= 0.3): how steady the model keeps a rigid bone."""
    lengths = {limb: [] for limb in LIMBS}
    (x0, x1), (y0, y1) = JUMPER_HIPS
    for poses in runs:
        hips = poses.keypoints[:, [11, 12], :2].mean(1)
        i = np.flatnonzero((hips[:, 0] >= x0) & (hips[:, 0] <= x1) & (hips[:, 1] >= y0)
                           & (hips[:, 1] <= y1))
        if not len(i):
            continue
        kp = poses.keypoints[i[0]]
        for a, b in LIMBS:
            if kp[a, 2] >= 0.3 and kp[b, 2] >= 0.3:
                lengths[(a, b)].append(float(np.linalg.norm(kp[a, :2] - kp[b, :2])))
    cvs = [np.std(v) / np.mean(v) for v in lengths.values() if len(v) >= 5]
    return float(np.median(cvs)) if cvs else float("nan")


def agreement(runs: list, reference: list) -> float:
    """Median over matched people of the median keypoint distance to the reference SPPE's pose
    divided by that person's height (reference box); people matched by nearest mid-hip point
    within half a height."""
    ratios = []
    for got, ref in zip(runs, reference):
        if not len(got) or not len(ref):
            continue
        gh = got.keypoints[:, [11, 12], :2].mean(1)
        for k in range(len(ref)):
            h = float(ref.boxes[k, 3] - ref.boxes[k, 1])
            rh = ref.keypoints[k, [11, 12], :2].mean(0)
            d = np.linalg.norm(gh - rh, axis=1)
            j = int(d.argmin())
            if d[j] > h / 2:
                continue
            dist = np.linalg.norm(got.keypoints[j, :, :2] - ref.keypoints[k, :, :2], axis=1)
            ratios.append(float(np.median(dist)) / max(h, 1.0))
    return float(np.median(ratios)) if ratios else float("nan")


def bench_sppe_quality(names, frames, reference="blazepose-heavy") -> dict:
    """Per SPPE on consecutive demo frames: agreement with ``reference`` (median keypoint
    distance / person height) and the jumping-jacks man's limb-length coefficient of variation."""
    ref = run_sppe(reference, frames)
    results = {reference: {"agreement_vs_heavy": 0.0, "limb_cv": limb_cv(ref)}}
    for name in names:
        if name == reference:
            continue
        runs = run_sppe(name, frames)
        results[name] = {"agreement_vs_heavy": agreement(runs, ref), "limb_cv": limb_cv(runs)}
    for name, r in results.items():
        print(f"sppe {name:20s} distance/height vs {reference} {r['agreement_vs_heavy']:.3f}  "
              f"limb-length CV {r['limb_cv']:.3f}", flush=True)
    return results


def bench_sppes(names, runtime) -> dict:
    """ms per crop at batch 1 / 3 / 8, each SPPE as the estimator calls it (``run_sppe`` with the
    default regression decode: BlazePose without its heatmap head; MoveNet decodes heatmaps)."""
    from core.config import SPPEConfig
    from core.models.build import make_sppe
    from core.models.sppe import run_sppe

    results = {}
    for name in names:
        sppe = make_sppe(SPPEConfig(model=name), "cpu", runtime)
        h, w = sppe.input_size
        row = {}
        for batch in (1, 3, 8):
            x = torch.rand(batch, 3, h, w)
            run_sppe(sppe, x, "regression")
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                run_sppe(sppe, x, "regression")
                times.append((time.perf_counter() - t0) * 1e3 / batch)
            row[f"ms_per_crop_b{batch}"] = statistics.median(times)
        results[name] = row
        print(f"{name:20s} " + "  ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
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
    parser.add_argument("--quality", nargs="*", default=[],
                        help="SPPEs compared with blazepose-heavy on consecutive frames "
                             "(agreement, limb-length CV; use --step 1)")
    parser.add_argument("--frames", default="0:", help="frame range FIRST:LAST (default: all)")
    parser.add_argument("--phases", default="0", help="pipeline: start frames to average over, "
                        "comma-separated (e.g. 0,1,2,3,4,5,6,7)")
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
              "pipeline": bench_pipeline(args.pipeline, frames,
                                         phases=[int(p) for p in args.phases.split(",")]),
              "sppe_quality": bench_sppe_quality(args.quality, frames) if args.quality else {}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
