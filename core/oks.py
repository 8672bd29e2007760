"""Object keypoint similarity, numerically identical to pycocotools' ``COCOeval.computeOks``."""
from __future__ import annotations

import numpy as np

from core.skeleton import coco_sigmas


def keypoint_similarity(d2: np.ndarray, area, sigmas: np.ndarray | None = None) -> np.ndarray:
    """Per-keypoint similarity KS = exp(-d² / (2·area·(2σ)²)) for squared distances ``d2[..., K]``."""
    sigmas = coco_sigmas() if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    var = (sigmas * 2) ** 2
    area = np.asarray(area, dtype=np.float64)[..., None]
    return np.exp(-(d2 / var / (area + np.spacing(1)) / 2))


def compute_oks(dt_keypoints: np.ndarray, gt_keypoints: np.ndarray, gt_areas: np.ndarray,
                gt_boxes: np.ndarray | None = None, sigmas: np.ndarray | None = None) -> np.ndarray:
    """OKS matrix [D, G] between detections and ground truths, as pycocotools computes it.

    dt_keypoints [D, K, 2|3]; gt_keypoints [G, K, 3] (v in the third column, v=0 ignored);
    gt_areas [G]; gt_boxes [G, 4] as x, y, w, h (only needed for GT with no visible keypoint,
    where distance is measured to a box 3× the GT box, as in pycocotools).
    """
    sigmas = coco_sigmas() if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    dt = np.asarray(dt_keypoints, dtype=np.float64)
    gt = np.asarray(gt_keypoints, dtype=np.float64)
    D, G = len(dt), len(gt)
    out = np.zeros((D, G), dtype=np.float64)
    if D == 0 or G == 0:
        return out
    var = (sigmas * 2) ** 2
    xd, yd = dt[:, None, :, 0], dt[:, None, :, 1]  # [D, 1, K]
    xg, yg, vg = gt[None, :, :, 0], gt[None, :, :, 1], gt[None, :, :, 2]  # [1, G, K]
    visible = vg > 0
    k1 = visible.sum(-1)  # [1, G]
    dx = xd - xg
    dy = yd - yg
    if (k1 == 0).any():
        if gt_boxes is None:
            raise ValueError("gt_boxes are required when a ground truth has no visible keypoint")
        bb = np.asarray(gt_boxes, dtype=np.float64)[None, :, :, None]  # [1, G, 4, 1]
        x0, x1 = bb[:, :, 0] - bb[:, :, 2], bb[:, :, 0] + bb[:, :, 2] * 2
        y0, y1 = bb[:, :, 1] - bb[:, :, 3], bb[:, :, 1] + bb[:, :, 3] * 2
        bdx = np.maximum(0, x0 - xd) + np.maximum(0, xd - x1)
        bdy = np.maximum(0, y0 - yd) + np.maximum(0, yd - y1)
        none = (k1 == 0)[..., None]
        dx = np.where(none, bdx, dx)
        dy = np.where(none, bdy, dy)
        visible = np.where(none, True, visible)
    area = np.asarray(gt_areas, dtype=np.float64)[None, :, None]
    e = (dx ** 2 + dy ** 2) / var / (area + np.spacing(1)) / 2
    ks = np.where(visible, np.exp(-e), 0.0)
    return ks.sum(-1) / np.maximum(visible.sum(-1), 1)
