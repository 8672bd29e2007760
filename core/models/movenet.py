"""MoveNet single-pose (thunder 256², lightning 192²; COCO-17 native) as a heatmap SPPE.

The TFJS graph is run pruned to four internal tensors, before its in-graph argmax decode, so
that the codec (DARK by default) decodes a real COCO-trained model's heatmaps:

- ``Sigmoid`` [N, H/4, W/4, 17]: keypoint heatmaps (probabilities);
- ``kpt_offset_0/conv2d_7/BiasAdd`` [N, H/4, W/4, 34]: per-cell offsets, channel 2k = dy, 2k+1 = dx,
  in cells;
- ``kpt_regress_0/conv2d_6/BiasAdd``: centre → keypoint displacements (unused top-down);
- ``Sigmoid_1`` [N, H/4, W/4, 1]: person-centre heatmap (its maximum serves as presence).

Input: RGB 0..255 (the graph casts its int32 input and scales to [−1, 1); a float crop in
0..255 gives the same values without the rounding).

Pixel convention (MODELS.md, measured): the offsets absorb half a cell, so heatmap cell i sits
at input position 4·(i + 0.5) from the crop edge, i.e. pixel-centre coordinate 4·i + 1.5: the
uniform half-pixel-centre mapping ``core.heatmaps.heatmap_to_crop`` already uses. The model's
own decode ("regression" here) is argmax cell + offset, at 4·(i + δ) from the edge; top-down on
a crop centred on one person, the argmax needs none of the graph's centre weighting.
"""
from __future__ import annotations

import torch

from core.heatmaps import HeatmapCodec
from core.models.sppe import SPPEOutput
from core.skeleton import COCO17

PREFIX = "StatefulPartitionedCall/"
HEATMAPS = PREFIX + "Sigmoid"
OFFSETS = PREFIX + "kpt_offset_0/conv2d_7/BiasAdd"
REGRESS = PREFIX + "kpt_regress_0/conv2d_6/BiasAdd"
CENTRE = PREFIX + "Sigmoid_1"
TAPS = [HEATMAPS, OFFSETS, CENTRE]
INPUT_SIZES = {"movenet-thunder": 256, "movenet-lightning": 192}
STRIDE = 4


class MoveNetSPPE:
    """``sppe(crops [N, 3, s, s] float RGB in [0, 1]) -> SPPEOutput`` (COCO-17).

    ``regress=False`` (the default) returns no regressed points, so the codec (DARK unless the
    config asks otherwise) decodes the heatmaps on the hot path; ``regress=True`` also returns the
    model's own offset decode as ``coords`` (for comparisons). The next frame's ROI comes from the
    keypoints (``core.roi.Rois.from_keypoints``): MoveNet has no alignment points.
    """

    layout = COCO17
    num_keypoints = 17

    def __init__(self, name: str = "movenet-thunder", device="cpu", runtime=None, model=None,
                 regress: bool = False):
        if name not in INPUT_SIZES:
            from core.errors import UserError

            raise UserError(f"unknown MoveNet model {name!r}; choose one of: "
                            f"{', '.join(INPUT_SIZES)}")
        self.name = name
        size = INPUT_SIZES[name]
        self.input_size = (size, size)
        self.heatmap_size = (size // STRIDE, size // STRIDE)
        self.regress = regress
        # half-cell convention: cell i at pixel-centre 4·i + 1.5, the codec's uniform mapping
        self.codec = HeatmapCodec(self.input_size, self.heatmap_size, method="dark")
        if model is None:
            from core.models.npm_fetch import model_paths
            from core.models.tfjs_graph import load_tfjs_model

            model = load_tfjs_model(model_paths(name)[0], TAPS, (1, size, size, 3), device,
                                    runtime)
        self.model = model
        self.device = getattr(model, "device", torch.device(device if device != "auto"
                                                             else "cpu"))

    def __call__(self, crops: torch.Tensor) -> SPPEOutput:
        out = self.model(crops.permute(0, 2, 3, 1) * 255.0)
        heat = out[HEATMAPS].permute(0, 3, 1, 2).contiguous()  # [N, 17, h, w]
        n, k, h, w = heat.shape
        flat = heat.reshape(n, k, h * w)
        scores, idx = flat.max(-1)
        cy, cx = (idx // w).float(), (idx % w).float()
        off = out[OFFSETS].reshape(n, h * w, k, 2)
        picked = off[torch.arange(n)[:, None], idx, torch.arange(k)[None]]  # [N, K, (dy, dx)]
        # the model's own decode: 4·(cell + offset) from the crop edge -> pixel centres
        coords = torch.stack([(cx + picked[..., 1]) * STRIDE - 0.5,
                              (cy + picked[..., 0]) * STRIDE - 0.5], -1)
        presence = out[CENTRE].reshape(n, -1).max(-1).values
        return SPPEOutput(heatmaps=heat, coords=coords if self.regress else None, scores=scores,
                          presence=presence)


def load_movenet(name: str, device="cpu", runtime=None) -> MoveNetSPPE:
    return MoveNetSPPE(name, device, runtime)
