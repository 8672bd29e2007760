"""Straightforward NumPy/Python references for bench_decode_nms.py (and the tests' oracles).

Written the way per-person decoders and pose NMS are usually written: vectorised argmax, then
Python loops over people and keypoints (OpenCV for the DARK blur, as DarkPose does), and a
Python greedy NMS loop with NumPy per reference pose. Same maths as core.heatmaps / core.pose_nms.
"""
from __future__ import annotations

import cv2
import numpy as np


# ----------------------------------------------------------------------------- heatmap decoding
def decode_reference(heatmaps: np.ndarray, method: str = "dark", kernel: int = 11):
    """(coords [N, K, 2], scores [N, K]) with the rules documented in core.heatmaps."""
    hm = np.asarray(heatmaps, dtype=np.float32)
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, -1)
    idx = flat.argmax(-1)
    scores = flat.max(-1)
    coords = np.stack([idx % w, idx // w], -1).astype(np.float64)
    if method == "argmax":
        return coords, scores
    if method == "quarter":
        for i in range(n):
            for j in range(k):
                m = hm[i, j]
                px, py = int(coords[i, j, 0]), int(coords[i, j, 1])
                if 0 < px < w - 1 and 0 < py < h - 1:
                    diff = np.array([m[py, px + 1] - m[py, px - 1], m[py + 1, px] - m[py - 1, px]])
                    coords[i, j] += np.sign(diff) * 0.25
        return coords, scores
    if method != "dark":
        raise ValueError(method)
    border = (kernel - 1) // 2
    blurred = np.zeros((n, k, h, w), dtype=np.float64)
    for i in range(n):
        for j in range(k):
            origin_max = hm[i, j].max()
            if not origin_max > 0:  # not refined (see core.heatmaps); avoids 0/0 in the rescale
                continue
            padded = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float64)
            padded[border:border + h, border:border + w] = hm[i, j]
            padded = cv2.GaussianBlur(padded, (kernel, kernel), 0)
            b = padded[border:border + h, border:border + w]
            blurred[i, j] = b * (origin_max / b.max())
    logs = np.log(np.maximum(blurred, 1e-10))
    for i in range(n):
        for j in range(k):
            if not scores[i, j] > 0:
                continue
            coords[i, j] = _taylor(logs[i, j], coords[i, j])
    return coords, scores


def _taylor(hm: np.ndarray, coord: np.ndarray) -> np.ndarray:
    h, w = hm.shape
    px, py = int(coord[0]), int(coord[1])
    if 1 < px < w - 2 and 1 < py < h - 2:
        dx = 0.5 * (hm[py][px + 1] - hm[py][px - 1])
        dy = 0.5 * (hm[py + 1][px] - hm[py - 1][px])
        dxx = 0.25 * (hm[py][px + 2] - 2 * hm[py][px] + hm[py][px - 2])
        dxy = 0.25 * (hm[py + 1][px + 1] - hm[py - 1][px + 1] - hm[py + 1][px - 1] + hm[py - 1][px - 1])
        dyy = 0.25 * (hm[py + 2][px] - 2 * hm[py][px] + hm[py - 2][px])
        if dxx * dyy - dxy ** 2 != 0:
            hessian = np.array([[dxx, dxy], [dxy, dyy]])
            derivative = np.array([dx, dy])
            return coord - np.linalg.inv(hessian) @ derivative
    return coord


# ----------------------------------------------------------------------------- pose NMS
def pose_nms_reference(keypoints: np.ndarray, boxes: np.ndarray, scores: np.ndarray, params):
    """Greedy pose NMS with a Python loop over reference poses (NumPy per reference), as
    core.pose_nms.pose_nms_arrays: returns (kept indices, merged keypoints [M, K, 3], scores [M])."""
    kp = np.asarray(keypoints, dtype=np.float64)
    n, k = kp.shape[:2]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, k, 3)), np.zeros(0)
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    xy, conf = kp[..., :2], kp[..., 2]
    scale = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    for i in np.flatnonzero(~(scale > 0)):
        ext = max(np.ptp(xy[i, :, 0]), np.ptp(xy[i, :, 1]))
        scale[i] = ext if ext > 0 else 1.0
    key = scores if params.order == "score" else conf.mean(1)
    remaining = np.argsort(-key, kind="stable")
    eta = params.eta * k / 17.0
    paper = params.form == "paper"
    picks, clusters = [], []
    while len(remaining):
        j = remaining[0]
        delta = xy[remaining] - xy[j]
        dist = np.sqrt((delta ** 2).sum(-1))
        both = np.tanh(conf[remaining] / params.sigma1) * np.tanh(conf[j] / params.sigma1)
        s = scale[j]
        if paper:
            inside = (np.abs(delta) <= 0.5 * params.part * s).all(-1)
            simi = (both * inside).sum(1) + params.lam * np.exp(-(dist ** 2 / s ** 2) / params.sigma2).sum(1)
            nmatch = (dist <= params.alpha * s).sum(1)
        else:
            simi = (both * (dist <= params.part)).sum(1) + params.lam * np.exp(-dist / params.sigma2).sum(1)
            nmatch = (dist <= min(params.alpha * s, params.match_cap)).sum(1)
        drop = (simi > eta) | ((params.match_count > 0) & (nmatch >= params.match_count))
        drop[0] = True
        picks.append(j)
        clusters.append(remaining[drop])
        remaining = remaining[~drop]
    out_kp, out_sc, kept = [], [], []
    for j, members in zip(picks, clusters):
        s = scale[j]
        delta = xy[members] - xy[j]
        if paper:
            mask = (np.abs(delta) <= 0.5 * params.part * s).all(-1)
        else:
            r = min(params.alpha * s, params.merge_cap)
            mask = (delta ** 2).sum(-1) <= r * r
        w = conf[members] * mask  # [C, K]
        wsum = w.sum(0)
        safe = np.where(wsum > 0, wsum, 1.0)
        uniform = mask / mask.sum(0)
        weights = np.where(wsum > 0, w / safe, uniform)
        merged_xy = (weights[..., None] * xy[members]).sum(0)
        merged_c = np.where(wsum > 0, (w * conf[members]).sum(0) / safe, 0.0)
        if conf[j].max() < params.score_threshold or merged_c.max() < params.score_threshold:
            continue
        if params.min_area > 0 and np.ptp(merged_xy[:, 0]) * np.ptp(merged_xy[:, 1]) < params.min_area:
            continue
        kept.append(j)
        out_kp.append(np.concatenate([merged_xy, merged_c[:, None]], 1))
        out_sc.append((merged_c.mean() + scores[j] + 1.25 * merged_c.max()) / 3.25 if params.rescore == "alphapose"
                      else scores[j])
    if not kept:
        return np.zeros(0, np.int64), np.zeros((0, k, 3)), np.zeros(0)
    return np.array(kept, np.int64), np.stack(out_kp), np.array(out_sc)
