"""Benchmark: heatmap decoding and pose NMS (numba) against plain NumPy/Python references.

    python bench/bench_decode_nms.py [--quick]

* decode: 20 poses × 17 keypoints of 64×48 heatmaps (σ = 2 Gaussians + noise), each method;
* NMS: 50 candidates (10 people × 5 jittered copies; 25 people × 2), both presets;
* first call in a fresh process with the numba cache warm (import + first decode / NMS);
* accuracy of the decoders (mean error, px) on noise-free and noisy maps;
* NMS behaviour across person sizes (duplicates kept / people lost per scene) for both presets.

Prints a table and writes bench/results/bench_decode_nms.json. Ratios compare medians measured
in the same run, after warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reference_numpy import decode_reference, pose_nms_reference  # noqa: E402
from core.heatmaps import METHODS, decode_heatmaps, encode_heatmaps_batch  # noqa: E402
from core.pose_nms import PRESETS, get_params, pose_nms, pose_nms_arrays  # noqa: E402
from core.poses import Poses  # noqa: E402

H, W, SIGMA = 64, 48, 2.0
TEMPLATE = np.array([(0, .07), (.02, .05), (-.02, .05), (.045, .06), (-.045, .06), (.11, .19), (-.11, .19),
                     (.14, .35), (-.14, .35), (.15, .49), (-.15, .49), (.08, .52), (-.08, .52), (.08, .74),
                     (-.08, .74), (.08, .96), (-.08, .96)])


def timeit(fn, reps: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts = np.array(ts) * 1e3
    return {"median_ms": float(np.median(ts)), "min_ms": float(ts.min()), "reps": reps}


def heatmaps(rng, n=20, k=17, noise=0.02):
    mu = np.stack([rng.uniform(4, W - 5, (n, k)), rng.uniform(4, H - 5, (n, k))], -1)
    maps, _ = encode_heatmaps_batch(mu, np.ones((n, k)), (H, W), SIGMA)
    return (maps + rng.normal(0, noise, maps.shape)).astype(np.float32), mu


def scene(rng, people=10, copies=5, height=(80, 400), jitter=0.015, partial=0.0):
    """Candidates for ``people`` random people, ``copies`` jittered copies each (top-down duplicates)."""
    kps, boxes, truth = [], [], []
    for _ in range(people):
        s = rng.uniform(*height)
        base = (TEMPLATE + rng.normal(0, 0.02, TEMPLATE.shape)) * s + rng.uniform(0, 1500, 2)
        truth.append(base)
        for c in range(copies):
            xy = base + rng.normal(0, jitter * s, base.shape)
            if c and rng.random() < partial:  # a partly failed copy: 6 keypoints far off
                idx = rng.choice(17, 6, replace=False)
                xy[idx] += rng.uniform(0.1, 0.3, (6, 1)) * s * rng.choice([-1, 1], (6, 2))
            conf = rng.uniform(0.5, 1.0, 17)
            kps.append(np.concatenate([xy, conf[:, None]], 1))
            boxes.append([*(xy.min(0) - 0.05 * s), *(xy.max(0) + 0.05 * s)])
    kps = np.array(kps)
    return kps, np.array(boxes), kps[..., 2].mean(1), np.array(truth)


def bench_decode(rng, reps, ref_reps):
    maps, _ = heatmaps(rng)
    rows = []
    for method in METHODS:
        ours = timeit(lambda: decode_heatmaps(maps, method), reps)  # default: serial at this size
        threaded = timeit(lambda: decode_heatmaps(maps, method, parallel=True), reps)
        ref = timeit(lambda: decode_reference(maps, method), ref_reps, warmup=1)
        rows.append({"task": f"decode {method} 20×17 64×48", "ours": ours, "ours_parallel": threaded,
                     "reference": ref, "ratio": ref["median_ms"] / ours["median_ms"],
                     "ratio_of_minima": ref["min_ms"] / ours["min_ms"],
                     "ratio_parallel": ref["median_ms"] / threaded["median_ms"]})
    return rows


def bench_nms(rng, reps, ref_reps):
    rows = []
    for people, copies in ((10, 5), (25, 2)):
        kps, boxes, scores, _ = scene(rng, people, copies)
        poses = Poses(boxes, kps, scores)
        for preset in PRESETS:
            params = get_params(preset)
            ours = timeit(lambda: pose_nms_arrays(kps, boxes, scores, params), reps)
            wrapped = timeit(lambda: pose_nms(poses, preset), reps)
            ref = timeit(lambda: pose_nms_reference(kps, boxes, scores, params), ref_reps, warmup=1)
            rows.append({"task": f"NMS {preset} 50 = {people}×{copies}", "ours": ours, "ours_poses_api": wrapped,
                         "reference": ref, "ratio": ref["median_ms"] / ours["median_ms"],
                         "ratio_of_minima": ref["min_ms"] / ours["min_ms"],
                         "ratio_poses_api": ref["median_ms"] / wrapped["median_ms"]})
    return rows


_FIRST_CALL = r"""
import time, json
t0 = time.perf_counter()
import numpy as np
from core.heatmaps import decode_heatmaps, _order_key
from core.pose_nms import pose_nms_arrays, get_params
t1 = time.perf_counter()
_order_key(np.int32(1))  # numba's one-off runtime start-up, paid by any first jitted call
t2 = time.perf_counter()
maps = np.random.default_rng(0).random((20, 17, 64, 48), dtype=np.float32)
t3 = time.perf_counter(); decode_heatmaps(maps, "dark"); t4 = time.perf_counter()
decode_heatmaps(maps, "dark"); t5 = time.perf_counter()
kp = np.random.default_rng(0).random((50, 17, 3)) * [500, 500, 1]
bx = np.concatenate([kp[:, :, :2].min(1), kp[:, :, :2].max(1)], 1)
p = get_params("paper")
t6 = time.perf_counter(); pose_nms_arrays(kp, bx, kp[..., 2].mean(1), p); t7 = time.perf_counter()
pose_nms_arrays(kp, bx, kp[..., 2].mean(1), p); t8 = time.perf_counter()
ms = lambda a, b: (b - a) * 1e3
print(json.dumps({"import_ms": ms(t0, t1), "numba_startup_ms": ms(t1, t2), "decode_first_ms": ms(t3, t4),
                  "decode_second_ms": ms(t4, t5), "nms_first_ms": ms(t6, t7), "nms_second_ms": ms(t7, t8)}))
"""


def first_call(runs: int = 3) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", _FIRST_CALL], cwd=ROOT, env=env, check=True, capture_output=True)  # warm cache
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _FIRST_CALL], cwd=ROOT, env=env, check=True, capture_output=True,
                             text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {k: float(np.median([r[k] for r in results])) for k in results[0]} | {"runs": runs}


def accuracy(rng, n=2000):
    mu = np.stack([rng.uniform(6, W - 7, n), rng.uniform(6, H - 7, n)], -1)
    maps, _ = encode_heatmaps_batch(mu[:, None], np.ones((n, 1)), (H, W), SIGMA)
    out = {}
    for noise in (0.0, 0.02, 0.05, 0.1):
        noisy = (maps + rng.normal(0, noise, maps.shape)).astype(np.float32) if noise else maps
        out[str(noise)] = {m: float(np.linalg.norm(decode_heatmaps(noisy, m)[0][:, 0] - mu, axis=-1).mean())
                           for m in METHODS}
    return out


def nms_scale_sweep(rng, scenes=60):
    """Per scene of 3 people (two 0.35·height apart, 1–5 copies each, 1.5 % jitter, 30 % of copies
    partly failed): outputs beyond one per person (duplicates) and people without an output."""
    res = {}
    for preset in PRESETS:
        params = get_params(preset)
        for height in (40, 80, 160, 320, 640, 1280):
            dup = lost = 0
            for _ in range(scenes):
                kps, boxes, truth = [], [], []
                for p, x0 in enumerate((0.0, 0.35 * height, 1.85 * height)):
                    base = (TEMPLATE + rng.normal(0, 0.02, TEMPLATE.shape)) * height + [x0 + height, height]
                    truth.append(base)
                    for c in range(1 + int(rng.integers(0, 5))):
                        xy = base + rng.normal(0, 0.015 * height, base.shape)
                        if c and rng.random() < 0.3:
                            idx = rng.choice(17, 6, replace=False)
                            xy[idx] += rng.uniform(0.1, 0.3, (6, 1)) * height * rng.choice([-1, 1], (6, 2))
                        conf = rng.uniform(0.6, 1.0, 17)
                        kps.append(np.concatenate([xy, conf[:, None]], 1))
                        boxes.append([*(xy.min(0) - 0.05 * height), *(xy.max(0) + 0.05 * height)])
                kps = np.array(kps)
                _, merged, _ = pose_nms_arrays(kps, np.array(boxes), kps[..., 2].mean(1), params)
                d = np.linalg.norm(merged[:, None, :, :2] - np.array(truth)[None], axis=-1).mean(-1)
                counts = np.bincount(d.argmin(1), minlength=3)
                dup += int(np.clip(counts - 1, 0, None).sum())
                lost += int((counts == 0).sum())
            res[f"{preset}@{height}px"] = {"duplicates_per_scene": dup / scenes, "lost_per_scene": lost / scenes}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    reps, ref_reps = (30, 3) if args.quick else (200, 15)
    rng = np.random.default_rng(0)
    rows = bench_decode(rng, reps, ref_reps) + bench_nms(rng, reps, ref_reps)
    fc = first_call(2 if args.quick else 3)
    acc = accuracy(rng, 500 if args.quick else 2000)
    sweep = nms_scale_sweep(rng, 20 if args.quick else 60)

    print(f"numba {numba.__version__}, threads {numba.config.NUMBA_NUM_THREADS} "
          f"({numba.threading_layer()}), {platform.processor() or platform.machine()}, cpus {os.cpu_count()}")
    print(f"{'task (median ms)':32s} {'ours':>8s} {'variant':>8s} {'ref':>8s} {'ratio':>7s} {'min/min':>8s} "
          f"{'variant':>8s}")
    for r in rows:
        var = "ours_parallel" if "ours_parallel" in r else "ours_poses_api"
        vr = "ratio_parallel" if "ratio_parallel" in r else "ratio_poses_api"
        print(f"{r['task']:32s} {r['ours']['median_ms']:8.3f} {r[var]['median_ms']:8.3f} "
              f"{r['reference']['median_ms']:8.2f} {r['ratio']:6.0f}× {r['ratio_of_minima']:7.0f}× {r[vr]:7.0f}×")
    print("ratio = reference / ours (medians); min/min = ratio of the fastest runs; variant: decode rows = "
          "forced numba-parallel, NMS rows = Poses-level pose_nms()")
    print(f"fresh process, numba cache warm: import {fc['import_ms']:.0f} ms, numba start-up {fc['numba_startup_ms']:.0f} ms, "
          f"first decode {fc['decode_first_ms']:.1f} ms (then {fc['decode_second_ms']:.2f}), "
          f"first NMS {fc['nms_first_ms']:.1f} ms (then {fc['nms_second_ms']:.2f})")
    print("decode mean error (px):")
    for noise, errs in acc.items():
        print(f"  noise {noise:>4s}: " + ", ".join(f"{m} {e:.4f}" for m, e in errs.items()))
    print("pose NMS per 3-person scene (duplicates kept / people lost):")
    for preset in PRESETS:
        print(f"  {preset:9s} " + "  ".join(f"{k.split('@')[1]}: {v['duplicates_per_scene']:.2f}/{v['lost_per_scene']:.2f}"
                                            for k, v in sweep.items() if k.startswith(preset + "@")))

    out = ROOT / "bench" / "results" / "bench_decode_nms.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "environment": {"numba": numba.__version__, "numpy": np.__version__, "threads": numba.config.NUMBA_NUM_THREADS,
                        "threading_layer": numba.threading_layer(), "cpus": os.cpu_count(),
                        "python": platform.python_version()},
        "timings": rows, "first_call": fc, "decode_mean_error_px": acc, "nms_scale_sweep": sweep,
        "goal_ratio": 50,
    }, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
