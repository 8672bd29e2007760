"""Single-person pose estimators (SPPE): the protocol shared by the embedded BlazePose landmark
model (``core.models.blazepose_sppe``) and the trained ones (``core.models.trained_sppe``);
``core.models.build.make_sppe`` builds the one a config names.

``SPPE(crops [N, 3, h, w] float RGB in [0, 1]) -> SPPEOutput`` on the SPPE's device, with
``.input_size`` (h, w), ``.layout`` and ``.codec`` (``core.heatmaps.HeatmapCodec``: how its heatmaps
map to crop pixels and are decoded and encoded). Coordinates are crop pixels with pixel centres at
integers (the convention of ``core.models.sstn``). Heatmaps are non-negative confidence maps
(a trained SPPE's Gaussian maps; BlazePose's logits pass through a sigmoid, as MediaPipe's
heatmap refinement does), so every heatmap decoder treats them alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from core.heatmaps import HeatmapCodec


@dataclass
class SPPEOutput:
    """Batched SPPE result (torch tensors on the SPPE's device).

    heatmaps    [N, K, Hh, Wh] confidence maps; None when an SPPE with ``skips_heatmaps`` was
                called with ``heatmaps=False`` (the regressed coords then carry the result)
    coords      [N, K, 2] regressed crop px (x, y), or None for heatmap-only SPPEs
    scores      [N, K] keypoint confidence in [0, 1], or None (then the heatmap maxima serve)
    presence    [N] probability that the crop holds a person, or None
    aux_coords  [N, A, 2] crop px of auxiliary points that locate the next frame's ROI, or None
    """

    heatmaps: torch.Tensor | None
    coords: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    presence: torch.Tensor | None = None
    aux_coords: torch.Tensor | None = None


class SPPE(Protocol):
    input_size: tuple[int, int]
    layout: str

    codec: HeatmapCodec  # its heatmaps' sizes, σ and heatmap ↔ crop pixel mapping

    def __call__(self, crops: torch.Tensor) -> SPPEOutput: ...


def run_sppe(sppe, crops: torch.Tensor, decode: str) -> SPPEOutput:
    """``sppe(crops)``, without computing heatmaps when ``decode`` is ``regression`` and the SPPE
    can skip them (``skips_heatmaps``: BlazePose's regressed points need no heatmap head)."""
    if decode == "regression" and getattr(sppe, "skips_heatmaps", False):
        return sppe(crops, heatmaps=False)
    return sppe(crops)
