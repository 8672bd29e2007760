#!/usr/bin/env python3
"""GPU check (issue 14, item 6): the CUDA path end to end on the demo, batched SPPE throughput at
batch 64, and the float16 drift against float32. Prints a table; writes JSON to ``--out``.

Rows
  e2e     detect / ROI track → crop (uint8 frame uploaded, cropped on the GPU) → SPPE → decode →
          pose NMS, frame by frame on the demo (full resolution and 640 px wide), float16 and
          float32; FPS from ``torch.cuda.synchronize``-bounded wall time over the frames, and a
          second, profiled pass for per-stage means (the estimator synchronises before each lap).
          Tracking and smoothing are CPU-only post-processing and not part of this check.
  sppe    the landmark model alone on batches of ``--batch`` real person crops from the demo:
          crops/s over ``--iters`` synchronised batches after warm-up. Goal ≥ 2,260 crops/s
          (10× AlphaPose's FastPose on a TITAN XP).
  drift   float16 vs float32 on the same crops: landmark coordinates (crop px of a 256-px crop),
          keypoint scores and pose presence; and end to end, keypoints of the people both runs
          found (matched per frame by nearest box centre), in image px.

Dependencies: only numpy, opencv (frames come from ``cv2.VideoCapture``, not PyAV), torch, pyyaml,
safetensors, numba, and the ``tflite`` flatbuffer reader the model zoo parses the embedded models
with. It does not import av, filterpy, scipy, pycocotools or platformdirs. Models and the demo are
read from the cache (``RMPE_LIVE_CACHE`` may point at a copied one). Exit status 2 when no CUDA
device is present (the JSON then says so).

    python3 bench/gpu_check.py --out gpu_check.json

On a lent device (checked there: Python 3.12, torch 2.11+cu130, numba 0.68, OpenCV 5.0, no tflite):
carry the two BlazePose models, their weight caches, the demo and the pure-Python ``tflite`` and
``flatbuffers`` packages (38 MB) in an ignored folder:

    C=bench/results/gpu_carry; mkdir -p $C/cache/models $C/cache/videos $C/pylib
    cp ~/.cache/rmpe-live/models/pose_{detection,landmark_full}.{tflite,safetensors} $C/cache/models/
    cp ~/.cache/rmpe-live/videos/demo.mp4 $C/cache/videos/
    cp -r .venv/lib/python3.11/site-packages/{tflite,flatbuffers} $C/pylib/
    # device command, carry ["bench/results/gpu_carry"]:
    C=bench/results/gpu_carry; RMPE_LIVE_CACHE=$PWD/$C/cache PYTHONPATH=$PWD:$PWD/$C/pylib python3 bench/gpu_check.py --out $OUT/gpu_check.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SPPE_GOAL_CROPS_PER_S = 2260.0
MISSING_HINT = "missing Python package(s): {}; install them (wheels) and run again"


def _check_imports() -> None:
    import importlib.util

    needed = ("numpy", "cv2", "torch", "yaml", "safetensors", "numba", "tflite")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(MISSING_HINT.format(", ".join(missing)))


def read_frames(path: Path, limit: int | None, width: int | None):
    """RGB uint8 frames of the video (cv2), optionally scaled to ``width`` (INTER_AREA)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open {path} with OpenCV")
    frames = []
    while limit is None or len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        if width and bgr.shape[1] != width:
            h = max(2, int(round(bgr.shape[0] * width / bgr.shape[1] / 2)) * 2)
            bgr = cv2.resize(bgr, (width, h), interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise SystemExit(f"{path}: no frames")
    return frames


DEVICE = "cuda"  # --smoke-cpu: the same code on the CPU (a check of this script, not of a GPU)


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def make_estimator(half: bool, detector: str | None = None):
    from core.config import Config
    from core.estimator import PoseEstimator

    config = Config.load()
    if detector:
        config.detector.name = detector
    config.runtime.device = DEVICE
    config.runtime.half = half
    return PoseEstimator(config, DEVICE)


def run_e2e(estimator, frames, warmup: int = 10) -> dict:
    """Sequential end to end (infer + pose NMS) over ``frames``: FPS pass, then a profiled pass."""
    import numpy as np
    import torch

    estimator.reset()
    for frame in frames[:warmup]:  # cuDNN autotuning, allocator growth, first batch sizes
        estimator.postprocess(estimator.infer(frame))
    sync()

    estimator.reset()
    poses = []
    t0 = time.perf_counter()
    for frame in frames:
        poses.append(estimator.postprocess(estimator.infer(frame)))
    sync()
    wall = time.perf_counter() - t0

    estimator.reset()
    stages: dict[str, list[float]] = {}
    for frame in frames:
        timings: dict = {}
        t = time.perf_counter()
        out = estimator.infer(frame, timings)
        t1 = time.perf_counter()
        estimator.postprocess(out)
        timings["nms"] = (time.perf_counter() - t1) * 1000
        timings["frame"] = (time.perf_counter() - t) * 1000
        for key, value in timings.items():
            stages.setdefault(key, []).append(float(value))
    return {"frames": len(frames), "fps": len(frames) / wall, "ms_per_frame": wall * 1000 / len(frames),
            "people_per_frame": float(np.mean([len(p) for p in poses])),
            "stages_mean_ms": {k: float(np.mean(v)) for k, v in stages.items()},
            "stages_p95_ms": {k: float(np.percentile(v, 95)) for k, v in stages.items()},
            "backend": estimator.backend, "poses": poses}


def person_crops(estimator, frames, batch: int):
    """``batch`` SPPE-sized crops [B, 3, h, w] in [0, 1] on the GPU: the people the estimator
    tracks over the first frames, repeated to fill the batch."""
    import numpy as np
    import torch

    from core.models.sstn import crop, roi_to_affine

    size = tuple(estimator.sppe.input_size)
    estimator.reset()
    thetas, images = [], []
    for i, frame in enumerate(frames[:60]):
        estimator.infer(frame)
        rois = estimator.tracked_rois
        if len(rois) and i + 1 < len(frames):
            thetas.append(roi_to_affine(rois.centres.astype(np.float64), rois.sides.astype(np.float64),
                                        rois.rotations.astype(np.float64), size))
            images.append(i + 1)  # the ROIs are for the next frame
    if not thetas:
        raise SystemExit("no person tracked in the first frames of the demo")
    crops = []
    for theta, index in zip(thetas, images):
        image = torch.from_numpy(frames[index]).to(DEVICE).permute(2, 0, 1)[None].float()
        crops.append(crop(image, torch.from_numpy(theta).float().to(DEVICE), size) / 255.0)
    crops = torch.cat(crops)
    reps = -(-batch // len(crops))
    return crops.repeat(reps, 1, 1, 1)[:batch].contiguous()


def sppe_throughput(sppe, crops, iters: int) -> dict:
    import torch

    for _ in range(5):
        sppe(crops)
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        sppe(crops)
    sync()
    wall = time.perf_counter() - t0
    return {"batch": int(crops.shape[0]), "iters": iters, "ms_per_batch": wall * 1000 / iters,
            "crops_per_s": crops.shape[0] * iters / wall}


def sppe_drift(sppe16, sppe32, crops) -> dict:
    out16, out32 = sppe16(crops), sppe32(crops)
    d = (out16.coords.float() - out32.coords.float()).norm(dim=-1)
    return {"coords_px_mean": float(d.mean()), "coords_px_max": float(d.max()),
            "scores_abs_max": float((out16.scores.float() - out32.scores.float()).abs().max()),
            "presence_abs_max": float((out16.presence.float() - out32.presence.float()).abs().max())}


def e2e_drift(poses16, poses32) -> dict:
    """Keypoint distance (image px) between the fp16 and fp32 runs' people, matched per frame by
    nearest box centre (greedy); people only one run found are counted."""
    import numpy as np

    dists, unmatched = [], 0
    for a, b in zip(poses16, poses32):
        if len(a) == 0 or len(b) == 0:
            unmatched += len(a) + len(b)
            continue
        ca = (a.boxes[:, :2] + a.boxes[:, 2:]) / 2
        cb = (b.boxes[:, :2] + b.boxes[:, 2:]) / 2
        cost = np.linalg.norm(ca[:, None] - cb[None], axis=-1)
        used_a, used_b = set(), set()
        for flat in np.argsort(cost, axis=None):
            i, j = np.unravel_index(flat, cost.shape)
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            dists.append(np.linalg.norm(a.keypoints[i, :, :2] - b.keypoints[j, :, :2], axis=-1))
        unmatched += len(a) - len(used_a) + len(b) - len(used_b)
    flat = np.concatenate(dists) if dists else np.zeros(0)
    return {"matched_people": len(dists), "unmatched_people": unmatched,
            "keypoint_px_mean": float(flat.mean()) if flat.size else None,
            "keypoint_px_median": float(np.median(flat)) if flat.size else None,
            "keypoint_px_p95": float(np.percentile(flat, 95)) if flat.size else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON report path")
    ap.add_argument("--frames", type=int, default=None, help="at most this many demo frames (default all)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--detector", help="person detector for the end-to-end rows (default: the config's)")
    ap.add_argument("--smoke-cpu", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    _check_imports()

    import torch

    global DEVICE
    DEVICE = "cpu" if args.smoke_cpu else "cuda"

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {"torch": torch.__version__, "python": platform.python_version(),
                    "cuda": torch.cuda.is_available()}
    if not torch.cuda.is_available() and not args.smoke_cpu:
        out_path.write_text(json.dumps(report, indent=2) + "\n")
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    report["gpu"] = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "CPU smoke run"
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels

    from core import jit
    from core.assets import artefact_path

    report["numba_warm_up"] = jit.warm_up()
    demo = artefact_path("demo_video")
    full = read_frames(demo, args.frames, None)
    small = read_frames(demo, args.frames, 640)

    est16, est32 = make_estimator(True, args.detector), make_estimator(False, args.detector)
    report["half_in_use"] = bool(getattr(est16.sppe.model, "is_half", False))
    e2e = {}
    for name, est, frames in (("full_fp16", est16, full), ("full_fp32", est32, full), ("640_fp16", est16, small)):
        e2e[name] = run_e2e(est, frames)
    drift_e2e = e2e_drift(e2e["full_fp16"].pop("poses"), e2e["full_fp32"].pop("poses"))
    e2e["640_fp16"].pop("poses")
    report["e2e"] = e2e

    crops = person_crops(est32, full, args.batch)
    report["sppe"] = {"fp16": sppe_throughput(est16.sppe, crops, args.iters),
                      "fp32": sppe_throughput(est32.sppe, crops, args.iters),
                      "goal_crops_per_s": SPPE_GOAL_CROPS_PER_S}
    report["drift"] = {"sppe_on_same_crops": sppe_drift(est16.sppe, est32.sppe, crops), "end_to_end": drift_e2e}
    out_path.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{report['gpu']}, torch {report['torch']}; SPPE float16 in use: {report['half_in_use']} "
          f"({est16.backend})")
    print(f"{'end to end (detect..pose NMS)':<32}{'fps':>8}{'ms/frame':>10}{'people':>8}"
          f"{'detect':>8}{'crop':>7}{'sppe':>7}{'decode':>8}{'nms':>6}")
    for name, r in e2e.items():
        s = r["stages_mean_ms"]
        print(f"{name:<32}{r['fps']:>8.1f}{r['ms_per_frame']:>10.2f}{r['people_per_frame']:>8.2f}"
              + "".join(f"{s.get(k, float('nan')):>{w}.2f}" for k, w in
                        (("detect", 8), ("crop", 7), ("sppe", 7), ("decode", 8), ("nms", 6))))
    for name, r in report["sppe"].items():
        if name == "goal_crops_per_s":
            continue
        flag = "ok" if r["crops_per_s"] >= SPPE_GOAL_CROPS_PER_S else "MISS"
        print(f"SPPE {name} batch {r['batch']}: {r['crops_per_s']:.0f} crops/s ({r['ms_per_batch']:.2f} ms/batch); "
              f"goal {SPPE_GOAL_CROPS_PER_S:.0f} {flag}")
    ds, de = report["drift"]["sppe_on_same_crops"], report["drift"]["end_to_end"]
    print(f"fp16 drift, same crops: landmarks mean {ds['coords_px_mean']:.3f} / max {ds['coords_px_max']:.3f} px "
          f"(256-px crop), scores {ds['scores_abs_max']:.4f}, presence {ds['presence_abs_max']:.4f}")
    if de["keypoint_px_mean"] is not None:
        print(f"fp16 drift, end to end (full res): keypoints mean {de['keypoint_px_mean']:.2f} / median "
              f"{de['keypoint_px_median']:.2f} / p95 {de['keypoint_px_p95']:.2f} px over {de['matched_people']} "
              f"people, {de['unmatched_people']} found by one run only")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
