#!/usr/bin/env python3
"""Crop cost per person at the demo's full resolution (1768×994): the CPU inference crop
(``crop_frame``: one cv2 warp per ROI from the uint8 frame) against the torch path the estimator
used before (uint8 → float32 frame, one batched ``grid_sample``), in one run.

Rows: 1, 3 and 6 people (256×256 crops of ROIs measured on the demo's first frame, side ~500 px,
plus rotated copies). Each cell: median of ``--repeats`` calls, ms per person, including the
[0, 1] scaling the SPPE input needs. Goal (issue 14): ≤ 1 ms per person. Writes
bench/results/bench_crop.json.
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

RESULTS = HERE / "results"
GOAL_MS_PER_PERSON = 1.0
# (centre x, centre y, side, rotation): people in the demo's first frame and rotated variants.
ROIS = [(654.0, 265.0, 500.0, 0.0), (1180.0, 520.0, 420.0, 0.2), (300.0, 600.0, 380.0, -0.3),
        (900.0, 400.0, 600.0, 1.2), (1500.0, 700.0, 350.0, -2.0), (60.0, 900.0, 300.0, 0.5)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--json", default=str(RESULTS / "bench_crop.json"))
    args = ap.parse_args(argv)

    import av
    import numpy as np
    import torch

    from core.io.sources import resolve_video
    from core.models.sstn import crop, crop_frame, roi_to_affine

    with av.open(resolve_video("demo")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    size = (256, 256)

    def torch_path(theta):
        image = torch.from_numpy(frame.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
        return crop(image, torch.from_numpy(theta).float(), size).mul_(1.0 / 255.0)

    def fast_path(theta):
        return crop_frame(frame, theta, size, scale=1.0 / 255.0)

    def median_ms(fn, theta) -> float:
        fn(theta)  # first call: allocations, thread pools
        times = []
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            fn(theta)
            times.append(time.perf_counter() - t0)
        return float(np.median(times) * 1000)

    rows = []
    for n in (1, 3, 6):
        r = np.array(ROIS[:n])
        theta = roi_to_affine(r[:, :2], r[:, 2], r[:, 3], size)
        diff = float((fast_path(theta) - torch_path(theta)).abs().max() * 255)
        fast, slow = median_ms(fast_path, theta), median_ms(torch_path, theta)
        rows.append({"people": n, "crop_frame_ms_per_person": fast / n, "torch_ms_per_person": slow / n,
                     "speedup": slow / fast, "max_diff_grey_levels": diff})

    print(f"frame {frame.shape[1]}x{frame.shape[0]}, crops {size[0]}x{size[1]}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {platform.processor() or platform.machine()}")
    print(f"{'people':>6}{'cv2 ms/person':>15}{'torch ms/person':>17}{'speed-up':>10}{'max diff':>10}{'goal':>9}")
    for row in rows:
        flag = "ok" if row["crop_frame_ms_per_person"] <= GOAL_MS_PER_PERSON else "MISS"
        print(f"{row['people']:>6}{row['crop_frame_ms_per_person']:>15.2f}{row['torch_ms_per_person']:>17.2f}"
              f"{row['speedup']:>9.1f}x{row['max_diff_grey_levels']:>10.1f}{GOAL_MS_PER_PERSON:>6.1f} ms {flag}")
    report = {"frame_size": [int(frame.shape[1]), int(frame.shape[0])], "crop_size": list(size),
              "goal_ms_per_person": GOAL_MS_PER_PERSON, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
