"""Pluggable similarity / cost matrices between detected poses and predicted tracks.

Every similarity lies in [0, 1] (1 = same place and shape) so one gate threshold serves all of
them; the assignment cost is ``1 - similarity``. Predicted tracks carry the variance of their
predicted position (pixels², from the box Kalman filter): it widens the match tolerance of a
track that has not been seen for a while, so that a person who reappears near the predicted
place is still recognised.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from core.errors import UserError
from core.geometry import box_iou
from core.oks import keypoint_similarity
from core.skeleton import COCO17, get_skeleton

# Keypoints without a COCO sigma borrow the sigma of the COCO part they sit on.
_SIGMA_BY_NAME_PART = (("eye", 0.025), ("mouth", 0.026), ("pinky", 0.062), ("index", 0.062),
                       ("thumb", 0.062), ("heel", 0.089), ("foot", 0.089))
_DEFAULT_SIGMA = 0.07
L2_SCALE = 0.1  # l2: a mean keypoint offset of 0.1·sqrt(area) gives similarity exp(-1/2)


class PoseSet(NamedTuple):
    """N poses as the similarity functions see them (detections or predicted tracks)."""

    boxes: np.ndarray  # [N, 4] x1, y1, x2, y2
    xy: np.ndarray  # [N, K, 2] keypoint positions
    valid: np.ndarray  # [N, K] bool, keypoint usable
    var: np.ndarray  # [N] variance of the position in pixels² (0 for detections)

    @property
    def areas(self) -> np.ndarray:
        wh = np.maximum(self.boxes[:, 2:] - self.boxes[:, :2], 1.0)
        return wh[:, 0] * wh[:, 1]


def layout_sigmas(layout: str) -> np.ndarray:
    """Per-keypoint OKS sigmas of a layout: COCO's where defined, else borrowed by body part."""
    skeleton = get_skeleton(layout)
    if skeleton.sigmas is not None:
        return skeleton.sigmas
    coco = get_skeleton(COCO17)
    by_name = dict(zip(coco.names, coco.sigmas))
    out = np.full(skeleton.num_keypoints, _DEFAULT_SIGMA)
    for i, name in enumerate(skeleton.names):
        if name in by_name:
            out[i] = by_name[name]
            continue
        for part, sigma in _SIGMA_BY_NAME_PART:
            if part in name:
                out[i] = sigma
                break
    return out


def iou_similarity(det: PoseSet, trk: PoseSet) -> np.ndarray:
    """Box IoU [D, T]; track boxes grow by one standard deviation of their predicted position."""
    pad = np.sqrt(trk.var)[:, None]
    tb = np.concatenate([trk.boxes[:, :2] - pad, trk.boxes[:, 2:] + pad], axis=1)
    return box_iou(det.boxes, tb)


def _pairwise(det: PoseSet, trk: PoseSet):
    """Squared keypoint distances [D, T, K] and the mask of keypoints valid in both poses."""
    d2 = ((det.xy[:, None] - trk.xy[None]) ** 2).sum(-1)
    both = det.valid[:, None] & trk.valid[None]
    return d2, both, both.sum(-1)


def _fall_back_to_iou(sim, count, det, trk):
    """Box IoU where two poses share no valid keypoint."""
    none = count == 0
    return np.where(none, iou_similarity(det, trk), sim) if none.any() else sim


def oks_similarity(det: PoseSet, trk: PoseSet, sigmas: np.ndarray) -> np.ndarray:
    """OKS [D, T] over keypoints valid in both poses, with the track's predicted box area.

    Per-keypoint similarity is core.oks.keypoint_similarity (pycocotools' formula); the track's
    position variance is added to each keypoint's Gaussian variance area·(2σ)². Pairs that share
    no valid keypoint fall back to box IoU.
    """
    d2, both, count = _pairwise(det, trk)
    area = trk.areas
    kp_var = area[:, None] * (2 * sigmas[None]) ** 2  # [T, K]
    shrink = kp_var / (kp_var + trk.var[:, None])  # d² / (var + extra) == (d²·shrink) / var
    ks = keypoint_similarity(d2 * shrink[None], area[None], sigmas)
    oks = np.where(both, ks, 0.0).sum(-1) / np.maximum(count, 1)
    return _fall_back_to_iou(oks, count, det, trk)


def l2_similarity(det: PoseSet, trk: PoseSet) -> np.ndarray:
    """exp(-m² / 2s²) [D, T] of the mean keypoint distance m, s² = (L2_SCALE² · area + variance)."""
    d2, both, count = _pairwise(det, trk)
    mean_d = np.where(both, np.sqrt(d2), 0.0).sum(-1) / np.maximum(count, 1)
    scale2 = L2_SCALE ** 2 * trk.areas + trk.var
    sim = np.exp(-mean_d ** 2 / (2 * scale2[None]))
    return _fall_back_to_iou(sim, count, det, trk)


def oks_iou_similarity(det: PoseSet, trk: PoseSet, sigmas: np.ndarray, oks_weight: float) -> np.ndarray:
    """Weighted mix of OKS (pose shape and place) and box IoU (extent)."""
    return oks_weight * oks_similarity(det, trk, sigmas) + (1 - oks_weight) * iou_similarity(det, trk)


DISTANCES = ("oks_iou", "oks", "iou", "l2")


def make_similarity(name: str, layout: str, oks_weight: float = 0.5) -> Callable[[PoseSet, PoseSet], np.ndarray]:
    """The similarity function chosen by ``TrackingConfig.distance``."""
    sigmas = layout_sigmas(layout)
    if name == "oks_iou":
        if not 0.0 <= oks_weight <= 1.0:
            raise UserError(f"tracking.oks_weight must lie in [0, 1], got {oks_weight}")
        return lambda det, trk: oks_iou_similarity(det, trk, sigmas, oks_weight)
    if name == "oks":
        return lambda det, trk: oks_similarity(det, trk, sigmas)
    if name == "iou":
        return iou_similarity
    if name == "l2":
        return l2_similarity
    raise UserError(f"tracking.distance must be one of {', '.join(DISTANCES)}, got {name!r}")


def cost_matrix(similarity: np.ndarray) -> np.ndarray:
    """Assignment cost of a similarity matrix."""
    return 1.0 - similarity
