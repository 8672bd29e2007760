"""Benchmark: the PoseFix refine step's cost per frame and per person (CPU; CUDA when present).

    python bench/bench_refine.py [--quick] [--device cpu|cuda] [--weights CKPT ...]

For each network (the CI size, the full ResNet-50 at 256×192, the BlazePose-feature variant, and
any given checkpoints), a 1080p frame with 1, 3 and 8 people (COCO-17 poses), flip test on and
off: median ms of ``PoseFixRefiner.refine`` (crops, network, mapping back) after warm-up, and ms
per person. Untrained weights cost the same as trained ones. Prints a table and writes
bench/results/bench_refine.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.models.posefix import KIND, PoseFixSpec, build_posefix  # noqa: E402
from core.poses import Poses  # noqa: E402
from core.refine import PoseFixRefiner  # noqa: E402
from training.checkpoint import save_checkpoint  # noqa: E402

SPECS = {
    "ci R18w16 64x64": dict(input_size=(64, 64), resnet_depth=18, width=16, deconv_channels=32),
    "R18w32 128x96": dict(input_size=(128, 96), resnet_depth=18, width=32, deconv_channels=64),
    "full R50 256x192": dict(input_size=(256, 192), resnet_depth=50, width=64, deconv_channels=256),
    "blazepose 256x256": dict(backbone="blazepose", input_size=(256, 256), width=32, deconv_channels=64),
}


def people(n: int, rng) -> Poses:
    xy = rng.uniform([200, 100], [1700, 900], (n, 1, 2)) + rng.normal(0, 60, (n, 17, 2))
    kp = np.concatenate([xy, np.full((n, 17, 1), 0.9)], 2)
    return Poses(np.zeros((n, 4)), kp, np.full(n, 0.9))


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", nargs="*", default=[])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    repeats = 3 if args.quick else 9
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        nets = []
        for name, kw in SPECS.items():
            if args.quick and name.startswith("full"):
                continue
            try:
                spec = PoseFixSpec(**kw).validate()
                path = save_checkpoint(Path(tmp) / f"{len(nets)}.pt", kind=KIND, spec=spec, config={},
                                       model=build_posefix(spec))
            except Exception as exc:  # noqa: BLE001 - e.g. BlazePose not installed: report and go on
                print(f"{name}: skipped ({exc})")
                continue
            nets.append((name, path))
        nets += [(Path(w).name, w) for w in args.weights]
        for name, path in nets:
            for flip in (True, False):
                refiner = PoseFixRefiner(path, args.device, flip_test=flip)
                for n in (1, 3, 8):
                    poses = people(n, rng)
                    ms = median_ms(lambda: refiner.refine(frame, poses), repeats)
                    rows.append({"net": name, "flip_test": flip, "people": n, "ms": ms, "ms_per_person": ms / n})
                    print(f"{name:<20} flip {'on ' if flip else 'off'} {n} people {ms:8.1f} ms  "
                          f"{ms / n:7.1f} ms/person")
    out = ROOT / "bench" / "results" / "bench_refine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": args.device, "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(), "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
