"""Detect every N frames and track ROIs in between, against detecting on every frame.

    python bench/bench_roi_tracking.py [--intervals 1 2 4 8 16] [--frames N] [--threads T]

One run of the demo video per interval with the default configuration otherwise (default detector,
BlazePose landmark SPPE, regression decode). The reference is interval 1: plain
top-down, ROIs from the detector on every frame. For each N it reports throughput (frames / time
inside ``PoseEstimator.infer``; decoding the video is excluded), process CPU ms per frame (the
steadier figure on a shared machine), mean per-stage ms, how often the detector ran, people per
frame, and agreement with the reference: reference people matched (Hungarian on OKS, COCO-17,
area = reference box area) at OKS ≥ 0.5, mean OKS of the matched, and the mean pixel distance of
their keypoints. It also counts detections over the whole clip with the full view only and with
tiling, and compares the regression and DARK keypoint decoders on the same crops at the default
interval. Prints tables; writes bench/results/bench_roi_tracking.json (summary: docs/roi_tracking.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from core.assets import artefact_path  # noqa: E402
from core.config import Config  # noqa: E402
from core.detection import make_detector  # noqa: E402
from core.estimator import PoseEstimator  # noqa: E402
from core.oks import compute_oks  # noqa: E402

STAGES = ("detect", "crop", "sppe", "decode")


def frames(path: Path, limit: int | None):
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if limit is not None and i >= limit:
                return
            yield frame.to_ndarray(format="rgb24")


class CountingDetector:
    """Passes detections through and records how many each call returned."""

    def __init__(self, detector):
        self.detector, self.name, self.counts = detector, detector.name, []

    def __call__(self, frame):
        det = self.detector(frame)
        self.counts.append(len(det))
        return det


def run(estimator: PoseEstimator, video: Path, limit: int | None):
    estimator.reset()
    poses, timings, elapsed, cpu = [], [], 0.0, 0.0
    for frame in frames(video, limit):
        t = {}
        start, start_cpu = time.perf_counter(), time.process_time()
        poses.append(estimator.infer(frame, t))
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        timings.append(t)
    return poses, timings, elapsed, cpu


def agreement(ref_poses, poses) -> dict:
    """Reference people matched at OKS ≥ 0.5, mean OKS and mean keypoint px error of the matched."""
    n_ref = matched = 0
    oks_sum, px = 0.0, []
    for ref, got in zip(ref_poses, poses):
        n_ref += len(ref)
        if not len(ref) or not len(got):
            continue
        b = ref.boxes
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        gt = ref.keypoints.copy()
        gt[..., 2] = 1.0  # every reference keypoint counts
        oks = compute_oks(got.keypoints, gt, areas)  # [got, ref]
        rows, cols = linear_sum_assignment(-oks)
        for r, c in zip(rows, cols):
            if oks[r, c] >= 0.5:
                matched += 1
                oks_sum += oks[r, c]
                px.append(np.linalg.norm(got.keypoints[r, :, :2] - ref.keypoints[c, :, :2], axis=-1).mean())
    return {"recall_oks50": matched / max(n_ref, 1), "mean_oks": oks_sum / max(matched, 1),
            "mean_px": float(np.mean(px)) if px else float("nan")}


BONES = {"upper arm": ((5, 7), (6, 8)), "forearm": ((7, 9), (8, 10)), "thigh": ((11, 13), (12, 14)),
         "shin": ((13, 15), (14, 16))}  # COCO-17 left and right pairs


def decode_comparison(base: PoseEstimator, video: Path, limit: int | None, interval: int) -> dict:
    """Regression vs DARK on the same crops: per-keypoint px difference and bone-length steadiness.

    Both runs see identical ROIs (tracking follows the auxiliary points, which do not depend on
    the decoder). People are chained frame to frame by mid-hip distance (< 0.25 box height);
    for chains of ≥ 30 frames the coefficient of variation of each limb's length over time is
    averaged: a decoder that jumps between a limb and a nearby edge makes limbs stretch and shrink.
    """
    runs = {}
    for method in ("regression", "dark"):
        cfg = Config.load(overrides={"detector": {"interval": interval}, "sppe": {"decode": method}})
        est = PoseEstimator(cfg, str(base.device), detector=base.detector, sppe=base.sppe)
        runs[method] = run(est, video, limit)[0]
    names = Config.load().sppe.keypoint_layout
    dist, pairs = [], []  # pairs: per frame [(reg keypoints, dark keypoints)]
    for reg, dark in zip(runs["regression"], runs["dark"]):
        frame_pairs = []
        if len(reg) and len(dark):
            cost = np.linalg.norm(reg.keypoints[:, None, :, :2] - dark.keypoints[None, :, :, :2], axis=-1).mean(-1)
            for r, d in zip(*linear_sum_assignment(cost)):
                dist.append(np.linalg.norm(reg.keypoints[r, :, :2] - dark.keypoints[d, :, :2], axis=-1))
                frame_pairs.append((reg.keypoints[r], dark.keypoints[d]))
        pairs.append(frame_pairs)
    dist = np.asarray(dist)

    chains, open_chains = [], []
    for frame_pairs in pairs:
        next_open = []
        for reg_kp, dark_kp in frame_pairs:
            hip = reg_kp[[11, 12], :2].mean(0)
            height = np.ptp(reg_kp[:, 1])
            best = min(open_chains, key=lambda c: np.linalg.norm(c[-1][0][[11, 12], :2].mean(0) - hip), default=None)
            if best is not None and np.linalg.norm(best[-1][0][[11, 12], :2].mean(0) - hip) < 0.25 * height:
                open_chains.remove(best)
                best.append((reg_kp, dark_kp))
                next_open.append(best)
            else:
                chain = [(reg_kp, dark_kp)]
                chains.append(chain)
                next_open.append(chain)
        open_chains = next_open
    steadiness = {}
    for m, method in enumerate(("regression", "dark")):
        per_bone = {b: [] for b in BONES}
        for chain in (c for c in chains if len(c) >= 30):
            kp = np.stack([p[m] for p in chain])
            for bone, sides in BONES.items():
                for a, b in sides:
                    length = np.linalg.norm(kp[:, a, :2] - kp[:, b, :2], axis=-1)
                    per_bone[bone].append(length.std() / length.mean())
        steadiness[method] = {b: float(np.mean(v)) for b, v in per_bone.items()}
        steadiness[method]["mean"] = float(np.mean(list(steadiness[method].values())))
    from core.skeleton import get_skeleton

    return {"interval": interval, "people_compared": int(len(dist)),
            "mean_px": float(dist.mean()), "median_px": float(np.median(dist)),
            "per_keypoint_px": dict(zip(get_skeleton(names).names, map(float, dist.mean(0)))),
            "chains_used": sum(len(c) >= 30 for c in chains), "bone_length_cv": steadiness}


def percent_at_least(counts, k) -> float:
    return 100.0 * float(np.mean(np.asarray(counts) >= k)) if len(counts) else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_roi_tracking.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit's notices
    torch.set_num_threads(args.threads)
    video = artefact_path("demo_video")
    intervals = sorted(set(args.intervals) | {1})
    load_before = os.getloadavg()

    base = PoseEstimator(Config.load(), "cpu" if not torch.cuda.is_available() else "auto")
    print(f"device {base.device}: {base.backend}")
    results, reference = {}, None
    for n in intervals:
        cfg = Config.load(overrides={"detector": {"interval": n}})
        detector = CountingDetector(base.detector)
        est = PoseEstimator(cfg, str(base.device), detector=detector, sppe=base.sppe)
        poses, timings, elapsed, cpu = run(est, video, args.frames)
        if n == 1:
            reference, tiled_counts = poses, detector.counts
        results[n] = {
            "frames": len(poses),
            "fps": len(poses) / elapsed,
            "cpu_ms_per_frame": 1000 * cpu / len(poses),  # process CPU time: less sensitive to other load
            "ms_per_frame": 1000 * elapsed / len(poses),
            "stage_ms": {s: float(np.mean([t[s] for t in timings])) for s in STAGES},
            "detector_runs": est.detector_runs,
            "people_per_frame": float(np.mean([len(p) for p in poses])),
            "agreement": agreement(reference, poses),
        }
        r = results[n]
        print(f"interval {n:2d}: {r['fps']:5.2f} fps, detector on {r['detector_runs']} of {r['frames']} frames, "
              f"agreement {r['agreement']}", flush=True)

    untiled = Config.load(overrides={"detector": {"tiling": False}})
    full = make_detector(untiled.detector, base.device, untiled.runtime)  # the default detector, full view only
    full_counts = [len(full(f)) for f in frames(video, args.frames)]
    detector_table = {name: {f">={k}": percent_at_least(c, k) for k in (1, 2, 3)}
                      for name, c in (("full view", full_counts), ("full + tiles", tiled_counts))}

    default_interval = Config.load().detector.interval
    decode = decode_comparison(base, video, args.frames, default_interval)

    ref_fps = results[1]["fps"]
    print("\nROI tracking vs detect-every-frame (reference = interval 1)")
    print(f"{'interval':>8} {'fps':>6} {'x ref':>6} {'ms/frame':>9} {'cpu ms':>7} {'x ref':>6} "
          + " ".join(f"{s:>7}" for s in STAGES)
          + f" {'det runs':>8} {'people':>6} {'recall':>7} {'OKS':>5} {'px':>6}")
    for n, r in results.items():
        a = r["agreement"]
        print(f"{n:>8} {r['fps']:6.2f} {r['fps'] / ref_fps:6.2f} {r['ms_per_frame']:9.1f} {r['cpu_ms_per_frame']:7.1f} "
              f"{results[1]['cpu_ms_per_frame'] / r['cpu_ms_per_frame']:6.2f} "
              + " ".join(f"{r['stage_ms'][s]:7.1f}" for s in STAGES)
              + f" {r['detector_runs']:>8} {r['people_per_frame']:6.2f} {a['recall_oks50']:7.3f} {a['mean_oks']:5.3f}"
              f" {a['mean_px']:6.2f}")
    print("\nDetections per frame over the clip (% of frames with at least k people)")
    for name, row in detector_table.items():
        print(f"  {name:13s} " + "  ".join(f"{k} {v:5.1f}%" for k, v in row.items()))

    print(f"\nDecode: regression vs DARK on the same crops (interval {decode['interval']}, "
          f"{decode['people_compared']} people): mean {decode['mean_px']:.2f} px, median {decode['median_px']:.2f} px")
    print("  " + ", ".join(f"{k} {v:.1f}" for k, v in decode["per_keypoint_px"].items()))
    print(f"  limb-length CV over time ({decode['chains_used']} people followed ≥ 30 frames; lower = steadier):")
    for method, row in decode["bone_length_cv"].items():
        print(f"    {method:10s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "device": str(base.device), "backend": base.backend,
                    "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "video": str(video), "intervals": {str(n): r for n, r in results.items()},
        "detector_percent_frames": detector_table, "decode_regression_vs_dark": decode,
    }, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
