"""Single-person pose estimators (SPPE): one protocol for the embedded BlazePose landmark model and
the trainable ones.

``SPPE(crops [N, 3, h, w] float RGB in [0, 1]) -> SPPEOutput`` on the SPPE's device, with
``.input_size`` (h, w) and ``.layout``. Coordinates are crop pixels with pixel centres at
integers (the convention of ``core.models.sstn``). Heatmaps are non-negative confidence maps
(a trained SPPE's Gaussian maps; BlazePose's logits pass through a sigmoid, as MediaPipe's
heatmap refinement does), so every heatmap decoder treats them alike.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import torch

from core.errors import UserError
from core.skeleton import BLAZEPOSE33

log = logging.getLogger("rmpe.sppe")

@dataclass
class SPPEOutput:
    """Batched SPPE result (torch tensors on the SPPE's device).

    heatmaps    [N, K, Hh, Wh] confidence maps
    coords      [N, K, 2] regressed crop px (x, y), or None for heatmap-only SPPEs
    scores      [N, K] keypoint confidence in [0, 1], or None (then the heatmap maxima serve)
    presence    [N] probability that the crop holds a person, or None
    aux_coords  [N, A, 2] crop px of auxiliary points that locate the next frame's ROI, or None
    """

    heatmaps: torch.Tensor
    coords: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    presence: torch.Tensor | None = None
    aux_coords: torch.Tensor | None = None


class SPPE(Protocol):
    input_size: tuple[int, int]
    layout: str

    def __call__(self, crops: torch.Tensor) -> SPPEOutput: ...

    # Optional: ``heatmap_to_crop(points [N, K, 2] heatmap px) -> crop px``. SPPEs without it use
    # core.heatmaps.heatmap_to_crop (a uniform half-pixel-centre grid over the crop).


class BlazePoseSPPE:
    """BlazePose-33 landmark model (``pose_landmark_full``) as an SPPE on 256×256 crops.

    Model facts (MediaPipe pose_landmark graph, checked on the demo): input RGB in [0, 1];
    ``Identity`` [N, 195] = 39 points × (x, y, z, visibility logit, presence logit), x, y in
    crop pixels with 0 at the crop's left/top *edge* (the crop centre is 128); ``Identity_1``
    the pose presence, already a probability (not a logit: measured 1.0 on the demo's people,
    0.0 on background crops, in between on partial views); ``Identity_3`` [N, 64, 64, 39]
    heatmap logits. Points 0–32 are the
    BlazePose-33 keypoints, 33 the mid-hip centre and 34 the full-body size/rotation point (the
    same two alignment points as the detector's), 35–38 further auxiliary points.

    Keypoint score = sigmoid(visibility logit): the model's estimate that the point is visible.
    """

    input_size = (256, 256)
    heatmap_size = (64, 64)
    layout = BLAZEPOSE33
    num_keypoints = 33
    num_points = 39

    def __init__(self, device="cpu", model: torch.nn.Module | None = None, runtime=None):
        self.device = torch.device(device)
        if model is None:
            from core.models.zoo import load_landmark_model

            model = load_landmark_model(self.device, runtime)
        self.model = model

    @staticmethod
    def heatmap_to_crop(points):
        """Heatmap px → crop px. The model's heatmap cell i sits at crop position 4·i measured
        from the crop edge (MediaPipe's refinement maps column c to c / 64 of the crop), i.e. at
        pixel-centre coordinate 4·i − 0.5; measured on the demo, DARK peaks mapped this way land
        0.3 px (median) from the regressed points, while the half-pixel-centre mapping
        (4·i + 1.5) would put them 2 px off."""
        return points * 4.0 - 0.5

    def __call__(self, crops: torch.Tensor) -> SPPEOutput:
        n = crops.shape[0]
        k = self.num_keypoints
        with torch.inference_mode():
            out = self.model(crops.permute(0, 2, 3, 1))
        points = out["Identity"].float().reshape(n, self.num_points, 5)
        xy = points[..., :2] - 0.5  # edge-based → pixel-centre crop coordinates
        heatmaps = torch.sigmoid(out["Identity_3"].float()[..., :k].permute(0, 3, 1, 2))
        return SPPEOutput(
            heatmaps=heatmaps,
            coords=xy[:, :k],
            scores=torch.sigmoid(points[:, :k, 3]),
            presence=out["Identity_1"].float().reshape(n),
            aux_coords=xy[:, k:],
        )


SPPE_MODELS = ("blazepose", "hourglass", "resnet")


def make_sppe(cfg, device="cpu", runtime=None) -> SPPE:
    """The SPPE ``cfg.model`` names (``SPPEConfig``) on ``device`` (``runtime``: the
    ``RuntimeConfig`` choosing the embedded model's backend and precision; defaults if None).

    ``blazepose`` is the embedded landmark model; ``hourglass`` and ``resnet`` load a trained
    checkpoint (``cfg.weights``) through ``core.models.trained_sppe`` (imported only then).
    """
    if cfg.model == "blazepose":
        if cfg.weights:
            log.warning("sppe.weights %s is not used: sppe.model is blazepose (the checkpoint's own "
                        "architecture runs when sppe.model names it, or with --weights alone)", cfg.weights)
        return BlazePoseSPPE(device, runtime=runtime)
    if cfg.model in ("hourglass", "resnet"):
        if not cfg.weights:
            raise UserError(f"sppe.model {cfg.model!r} needs a checkpoint: set sppe.weights (--weights PATH)")
        from core.models.trained_sppe import load_trained_sppe

        return load_trained_sppe(cfg.weights, device, arch=cfg.model)  # a contradiction is a UserError
    raise UserError(f"unknown SPPE model {cfg.model!r}; choose one of: {', '.join(SPPE_MODELS)}")
