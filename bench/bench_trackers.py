#!/usr/bin/env python3
"""Tracker + smoother benchmark and quality report.

1. Cost: PoseTracker.update + PoseSmoother per frame for 10 walking people (noisy keypoints),
   after a 30-frame warm-up; goal < 1 ms per frame. The reference measured in the same run is
   the cheapest configuration (IoU distance, smoothing off).
2. Identity keeping: CLEAR-MOT on synthetic crowds (6 people crossing, one 10-30 frame occlusion
   each) at three noise levels, per distance function.
3. Jitter: reduction of the mean absolute frame-to-frame acceleration and lag in frames
   (least-squares time shift, see tests/trackers/synthetic.py) for a keypoint moving at constant
   speed with noise: One-Euro with MediaPipe's exact parameters (strength 1), the default
   configuration, and the Kalman alternative.

Prints tables and writes bench/results/bench_trackers.json.
"""
from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import Config, SmoothingConfig, TrackingConfig  # noqa: E402
from core.skeleton import BLAZEPOSE33, COCO17  # noqa: E402
from trackers import PoseSmoother, PoseTracker  # noqa: E402
from trackers.distances import DISTANCES  # noqa: E402

GOAL_MS = 1.0
WARMUP = 30


def load_synthetic():
    name = "rmpe_bench_trackers_synthetic"
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "trackers" / "synthetic.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def time_per_frame(frames, tracking: TrackingConfig, smoothing: SmoothingConfig, repeats: int = 3) -> dict:
    """Per-frame milliseconds of tracking + smoothing (best of `repeats` passes, frame by frame)."""
    best = None
    for _ in range(repeats):
        tracker, smoother = PoseTracker(tracking, 30.0), PoseSmoother(smoothing)
        ms = []
        for fr in frames:
            t0 = time.perf_counter()
            smoother(tracker.update(fr.poses, fr.timestamp), fr.timestamp)
            ms.append((time.perf_counter() - t0) * 1e3)
        ms = np.array(ms[WARMUP:])
        best = ms if best is None else np.minimum(best, ms)
    return {"mean_ms": float(best.mean()), "p50_ms": float(np.median(best)), "p95_ms": float(np.percentile(best, 95))}


def bench_cost(S) -> list[dict]:
    rows = []
    defaults = Config.load()
    for layout in (COCO17, BLAZEPOSE33):
        people = S.crowd(10, 330, seed=0, occlusions=False)
        frames = S.make_sequence(people, 330, layout=layout, kp_noise=0.01, box_noise=0.01, seed=0)
        n = np.mean([len(f.poses) for f in frames[WARMUP:]])
        ref = time_per_frame(frames, TrackingConfig(distance="iou"), SmoothingConfig(enabled=False))
        configs = [("reference: iou, no smoothing", TrackingConfig(distance="iou"), SmoothingConfig(enabled=False))]
        for d in DISTANCES:
            configs.append((f"{d} + one_euro", TrackingConfig(**{**vars(defaults.tracking), "distance": d}),
                            defaults.smoothing))
        configs.append(("oks_iou + kalman", defaults.tracking, SmoothingConfig(**{**vars(defaults.smoothing),
                                                                               "method": "kalman"})))
        configs.append(("oks_iou, no smoothing", defaults.tracking, SmoothingConfig(enabled=False)))
        for name, tc, sc in configs:
            r = ref if name.startswith("reference") else time_per_frame(frames, tc, sc)
            rows.append({"layout": layout, "config": name, "people_per_frame": float(n), **r,
                         "ratio_to_reference": r["mean_ms"] / ref["mean_ms"], "meets_goal": r["mean_ms"] < GOAL_MS})
    return rows


NOISE = {
    "clean": {},
    "noise": dict(kp_noise=0.02, box_noise=0.02),
    "noise+dropout": dict(kp_noise=0.02, box_noise=0.02, dropout=0.05),
    "noise+dropout+fp": dict(kp_noise=0.03, box_noise=0.03, dropout=0.1, fp_rate=0.1),
}


def bench_mot(S, seeds: int = 5) -> list[dict]:
    rows = []
    for level, kw in NOISE.items():
        sequences = [S.make_sequence(S.crowd(6, 300, seed), 300, seed=seed, **kw) for seed in range(seeds)]
        variants = [(d, TrackingConfig(distance=d)) for d in DISTANCES]
        variants.append(("oks_iou, recovery off", TrackingConfig(recovery_speed=0.0)))
        for d, cfg in variants:
            total = {"gt": 0, "fn": 0, "fp": 0, "idsw": 0}
            ids = []
            for frames in sequences:
                mot = S.run_tracker(PoseTracker(cfg, 30.0), frames)
                for k in total:
                    total[k] += getattr(mot, k)
                ids += [len(v) for v in mot.ids_per_gt.values()]
            mota = 1 - (total["fn"] + total["fp"] + total["idsw"]) / total["gt"]
            ceiling = 1 - (total["fn"] + total["fp"]) / total["gt"]
            rows.append({"level": level, "distance": d, **total, "mota": mota, "mota_ceiling": ceiling,
                         "ids_per_person": float(np.mean(ids))})
    return rows


def bench_jitter(S) -> list[dict]:
    rows = []
    variants = [("one_euro MediaPipe (strength 1)", SmoothingConfig(strength=1.0)),
                ("one_euro default", Config.load().smoothing),
                ("kalman default", SmoothingConfig(**{**vars(Config.load().smoothing), "method": "kalman"}))]
    for name, cfg in variants:
        for dname, direction in (("horizontal", (1, 0)), ("diagonal", (1, 1))):
            for speed in (0.1, 0.25, 0.5, 1.0):
                for noise in (0.005, 0.01):
                    trials = [S.jitter_trial(PoseSmoother(cfg), speed, direction, noise, seed=s) for s in range(3)]
                    red = float(np.mean([t["reduction"] for t in trials]))
                    lag = float(np.mean([t["lag"] for t in trials]))
                    rows.append({"filter": name, "direction": dname, "speed_h_per_s": speed, "noise_h": noise,
                                 "reduction": red, "lag_frames": lag, "meets_spec": red >= 0.5 and lag <= 1.0})
    return rows


def main() -> int:
    S = load_synthetic()
    print("== cost per frame (tracking + smoothing), 10 people, after warm-up; goal < 1 ms")
    cost = bench_cost(S)
    print(f"{'layout':12s} {'config':32s} {'mean ms':>8s} {'p50':>7s} {'p95':>7s} {'ratio':>6s}")
    for r in cost:
        print(f"{r['layout']:12s} {r['config']:32s} {r['mean_ms']:8.3f} {r['p50_ms']:7.3f} {r['p95_ms']:7.3f} "
              f"{r['ratio_to_reference']:6.2f}{'' if r['meets_goal'] else '  > goal'}")
    print("\n== CLEAR-MOT on synthetic crowds (6 people, 300 frames, 5 seeds)")
    mot = bench_mot(S)
    print(f"{'level':18s} {'distance':22s} {'GT':>6s} {'FN':>5s} {'FP':>5s} {'IDSW':>5s} {'MOTA':>7s} "
          f"{'ceiling':>8s} {'ids/person':>10s}")
    for r in mot:
        print(f"{r['level']:18s} {r['distance']:22s} {r['gt']:6d} {r['fn']:5d} {r['fp']:5d} {r['idsw']:5d} "
              f"{r['mota']:7.4f} {r['mota_ceiling']:8.4f} {r['ids_per_person']:10.3f}")
    print("\n== jitter: acceleration reduction / lag (frames) on a noisy keypoint at constant speed")
    jit = bench_jitter(S)
    print(f"{'filter':32s} {'direction':10s} {'speed H/s':>9s} {'noise H':>8s} {'reduction':>9s} {'lag':>6s}")
    for r in jit:
        print(f"{r['filter']:32s} {r['direction']:10s} {r['speed_h_per_s']:9.2f} {r['noise_h']:8.3f} "
              f"{r['reduction']:9.2f} {r['lag_frames']:6.2f}{'' if r['meets_spec'] else '  (spec: >=0.50, <=1)'}")
    out = ROOT / "bench" / "results" / "bench_trackers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "goal_ms": GOAL_MS,
                               "cost": cost, "mot": mot, "jitter": jit}, indent=1))
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
