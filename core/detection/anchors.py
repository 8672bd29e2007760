"""SSD anchor centres for BlazePose's person detector (MediaPipe ``SsdAnchorsCalculator`` scheme).

The detector regresses every box and keypoint relative to an anchor centre; with
``fixed_anchor_size`` every anchor is 1×1 in normalised units, so only the centres matter.
Consecutive layers that share a stride share one feature map and stack their anchors on it; each
layer contributes one anchor per aspect ratio plus one interpolated-scale anchor.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class AnchorSpec:
    input_size: int = 224
    strides: tuple[int, ...] = (8, 16, 32, 32, 32)
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0  # > 0 adds one extra anchor per layer
    offset: float = 0.5  # anchor centre within its feature-map cell


BLAZEPOSE_DETECTOR = AnchorSpec()  # 28²·2 + 14²·2 + 7²·6 = 2254 anchors


@lru_cache(maxsize=8)
def ssd_anchor_centres(spec: AnchorSpec = BLAZEPOSE_DETECTOR) -> np.ndarray:
    """Anchor centres [A, 2] (x, y) normalised to [0, 1], in the model's output order."""
    per_layer = len(spec.aspect_ratios) + (1 if spec.interpolated_scale_aspect_ratio > 0 else 0)
    out = []
    layer = 0
    while layer < len(spec.strides):
        stride = spec.strides[layer]
        repeats = 0
        while layer < len(spec.strides) and spec.strides[layer] == stride:
            repeats += per_layer
            layer += 1
        cells = int(np.ceil(spec.input_size / stride))
        grid = (np.arange(cells, dtype=np.float64) + spec.offset) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")  # row-major: y outer, x inner
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, repeats, axis=0))  # anchors of one cell are consecutive
    anchors = np.concatenate(out).astype(np.float32)
    anchors.setflags(write=False)
    return anchors
