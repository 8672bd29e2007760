"""Parametric pose NMS (RMPE §3.2): greedy elimination by pose similarity, merging, score filter.

Two named presets (details and constants in docs/pose_nms.md):

* ``paper`` — the paper's criterion in scale-normalised form, resolution-independent. With S the
  reference pose's box size max(w, h) and Δⁿ = kᵢⁿ − kⱼⁿ:
  K_sim = Σₙ tanh(cᵢⁿ/σ1)·tanh(cⱼⁿ/σ1)·[Δⁿ inside the part box of side ``part``·S],
  H_sim = Σₙ exp(−(‖Δⁿ‖/S)²/σ2), eliminated when K_sim + λ·H_sim > η·K/17. Merging averages
  the keypoints that lie inside the reference keypoint's part box.
* ``alphapose`` — the AlphaPose PyTorch port: raw pixel distances, K_sim mask ‖Δ‖ ≤ 1 px,
  H_sim = Σ exp(−‖Δ‖/δ2), an extra rule "≥ matchThreds keypoints within min(ref, 7) px",
  merging within min(ref, 15) px (ref = 0.1·S), greedy order by mean keypoint score and the
  port's proposal score (mean + box score + 1.25·max of the merged keypoint scores).

Both: greedy in score order (ties by index), each eliminated pose is merged into the pose that
eliminated it (score-weighted average, merged score Σc²/Σc), then poses whose maximum keypoint
score — before or after merging — is below ``score_threshold`` are dropped.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numba
import numpy as np

from core.poses import Poses

__all__ = ["NMSParams", "PRESETS", "get_params", "pose_nms", "pose_nms_arrays"]

_FORMS = {"paper": 0, "alphapose": 1}


@dataclass(frozen=True)
class NMSParams:
    """Constants of one pose-NMS variant (see docs/pose_nms.md for their meaning and origin)."""

    form: str = "paper"  # paper: distances / S, box-shaped parts; alphapose: raw pixels, disks
    order: str = "score"  # greedy order: "score" (Poses.scores) | "mean_keypoint"
    sigma1: float = 1.0  # tanh scale of keypoint confidences (δ1)
    sigma2: float = 0.0702  # spatial kernel width: (Δ/S)² units (paper), pixels (alphapose δ2)
    lam: float = 1.7  # λ (port: mu), weight of H_sim
    eta: float = 22.48  # η (port: gamma), threshold for 17 keypoints; scaled by K/17
    part: float = 0.1  # paper: part-box side / S; alphapose: K_sim radius in px
    alpha: float = 0.1  # alphapose: ref = alpha·S
    match_count: int = 0  # eliminate when ≥ this many keypoints match (0 disables)
    match_cap: float = 7.0  # alphapose: match radius min(ref, cap) px
    merge_cap: float = 15.0  # alphapose: merge radius min(ref, cap) px (paper: the part box)
    score_threshold: float = 0.3  # drop poses whose max keypoint score is below this
    min_area: float = 0.0  # drop merged poses whose keypoint extent area (px²) is below this
    rescore: str = "keep"  # output person score: "keep" | "alphapose" (mean + box + 1.25·max)

    def __post_init__(self):
        if self.form not in _FORMS:
            raise ValueError(f"pose NMS form must be one of {sorted(_FORMS)}, got {self.form!r}")
        if self.order not in ("score", "mean_keypoint"):
            raise ValueError(f"pose NMS order must be 'score' or 'mean_keypoint', got {self.order!r}")
        if self.rescore not in ("keep", "alphapose"):
            raise ValueError(f"pose NMS rescore must be 'keep' or 'alphapose', got {self.rescore!r}")
        if self.sigma1 <= 0 or self.sigma2 <= 0:
            raise ValueError("pose NMS sigma1 and sigma2 must be positive")


PRESETS: dict[str, NMSParams] = {
    "paper": NMSParams(),
    "alphapose": NMSParams(form="alphapose", order="mean_keypoint", sigma1=1.0, sigma2=2.65, lam=1.7, eta=22.48,
                           part=1.0, alpha=0.1, match_count=5, match_cap=7.0, merge_cap=15.0,
                           score_threshold=0.3, rescore="alphapose"),
}


def get_params(preset: str = "paper", **overrides) -> NMSParams:
    """The named preset with field overrides (unknown names raise)."""
    if preset not in PRESETS:
        from core.errors import UserError

        raise UserError(f"unknown pose NMS preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(NMSParams)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown pose NMS parameter(s): {', '.join(bad)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


@numba.njit(cache=True)
def _greedy(xy, conf, order, scale, form, sigma1, sigma2, lam, eta, part, alpha, match_count, match_cap):
    """owner[i] = index of the kept pose that eliminated pose i (kept poses own themselves)."""
    n, k = conf.shape
    owner = np.full(n, -1, np.int64)
    tconf = np.tanh(conf / sigma1)
    for oi in range(n):
        j = order[oi]
        if owner[j] >= 0:
            continue
        owner[j] = j
        s = scale[j]
        half = 0.5 * part * s
        match_r = min(alpha * s, match_cap)
        for oc in range(oi + 1, n):
            i = order[oc]
            if owner[i] >= 0:
                continue
            ksim = 0.0
            hsim = 0.0
            nmatch = 0
            for p in range(k):
                dx = xy[i, p, 0] - xy[j, p, 0]
                dy = xy[i, p, 1] - xy[j, p, 1]
                if form == 0:
                    if abs(dx) <= half and abs(dy) <= half:
                        ksim += tconf[i, p] * tconf[j, p]
                    hsim += np.exp(-((dx * dx + dy * dy) / (s * s)) / sigma2)
                else:
                    d = np.sqrt(dx * dx + dy * dy)
                    if d <= part:
                        ksim += tconf[i, p] * tconf[j, p]
                    hsim += np.exp(-d / sigma2)
                    if d <= match_r:
                        nmatch += 1
            if ksim + lam * hsim > eta or (match_count > 0 and nmatch >= match_count):
                owner[i] = j
    return owner


@numba.njit(cache=True)
def _merge(xy, conf, owner, kept, scale, form, part, alpha, merge_cap):
    """Score-weighted average of each kept pose's cluster within the merge distance of its keypoints."""
    m, k = kept.shape[0], conf.shape[1]
    out_xy = np.empty((m, k, 2))
    out_c = np.empty((m, k))
    n = owner.shape[0]
    for q in range(m):
        j = kept[q]
        s = scale[j]
        r = 0.5 * part * s if form == 0 else min(alpha * s, merge_cap)
        for p in range(k):
            wsum = 0.0
            csum = 0.0
            sx = 0.0
            sy = 0.0
            cnt = 0
            ux = 0.0
            uy = 0.0
            for i in range(n):
                if owner[i] != j:
                    continue
                dx = xy[i, p, 0] - xy[j, p, 0]
                dy = xy[i, p, 1] - xy[j, p, 1]
                inside = (abs(dx) <= r and abs(dy) <= r) if form == 0 else (dx * dx + dy * dy <= r * r)
                if not inside:
                    continue
                c = conf[i, p]
                wsum += c
                csum += c * c
                sx += c * xy[i, p, 0]
                sy += c * xy[i, p, 1]
                cnt += 1
                ux += xy[i, p, 0]
                uy += xy[i, p, 1]
            if wsum > 0:
                out_xy[q, p, 0] = sx / wsum
                out_xy[q, p, 1] = sy / wsum
                out_c[q, p] = csum / wsum
            else:  # all matched scores are zero: plain average, score 0
                out_xy[q, p, 0] = ux / cnt
                out_xy[q, p, 1] = uy / cnt
                out_c[q, p] = 0.0
    return out_xy, out_c


def _box_scale(boxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """S = max(box w, h); falls back to the keypoint extent, then 1, for degenerate boxes."""
    s = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).astype(np.float64)
    bad = ~(s > 0)
    if bad.any():
        xy = keypoints[bad, :, :2]
        ext = np.maximum(np.ptp(xy[..., 0], axis=1), np.ptp(xy[..., 1], axis=1)) if xy.size else np.zeros(0)
        s[bad] = np.where(ext > 0, ext, 1.0)
    return s


def pose_nms_arrays(keypoints: np.ndarray, boxes: np.ndarray, scores: np.ndarray, params: NMSParams):
    """Array-level pose NMS.

    keypoints [N, K, 3] (x, y, score) px, boxes [N, 4] xyxy, scores [N] person scores →
    (kept indices [M] in greedy order, merged keypoints [M, K, 3] float64, person scores [M] float64).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    n = kp.shape[0]
    if n == 0:
        k = kp.shape[1] if kp.ndim == 3 else 0
        return np.zeros(0, np.int64), np.zeros((0, k, 3)), np.zeros(0)
    k = kp.shape[1]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(n, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(n)
    xy = np.ascontiguousarray(kp[..., :2])
    conf = np.ascontiguousarray(kp[..., 2])
    key = scores if params.order == "score" else conf.mean(1)
    order = np.argsort(-key, kind="stable").astype(np.int64)
    scale = _box_scale(boxes, kp)
    form = _FORMS[params.form]
    eta = params.eta * k / 17.0
    owner = _greedy(xy, conf, order, scale, form, float(params.sigma1), float(params.sigma2), float(params.lam),
                    float(eta), float(params.part), float(params.alpha), int(params.match_count),
                    float(params.match_cap))
    kept = order[owner[order] == order]
    mxy, mc = _merge(xy, conf, owner, kept, scale, form, float(params.part), float(params.alpha),
                     float(params.merge_cap))
    ok = (conf[kept].max(1) >= params.score_threshold) & (mc.max(1) >= params.score_threshold)
    if params.min_area > 0:
        ext = np.ptp(mxy, axis=1)
        ok &= ext[:, 0] * ext[:, 1] >= params.min_area
    kept, mxy, mc = kept[ok], mxy[ok], mc[ok]
    if params.rescore == "alphapose":
        out_scores = mc.mean(1) + scores[kept] + 1.25 * mc.max(1)
    else:
        out_scores = scores[kept]
    return kept, np.concatenate([mxy, mc[..., None]], -1), out_scores


def pose_nms(poses: Poses, preset: str = "paper", **overrides) -> Poses:
    """Parametric pose NMS over ``poses`` with a named preset ("paper" | "alphapose") and overrides."""
    params = get_params(preset, **overrides)
    if len(poses) == 0:
        return poses.copy()
    kept, kp, scores = pose_nms_arrays(poses.keypoints, poses.boxes, poses.scores, params)
    return Poses(poses.boxes[kept].copy(), kp, scores, poses.track_ids[kept].copy(), poses.layout)
