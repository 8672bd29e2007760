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
  port's proposal score (mean + box score + 1.25·max of the merged keypoint scores), divided by
  its largest value 3.25 so person scores stay in [0, 1] like every other stage's (the order, and
  so COCO AP, is unchanged; unscaled, a person read 0.97 alone and ~3 beside someone else).

Both: greedy in score order (ties by index), each eliminated pose is merged into the pose that
eliminated it (score-weighted average, merged score Σc²/Σc), then poses whose maximum keypoint
score — before or after merging — is below ``score_threshold`` are dropped.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from core.jit import kernel
from core.poses import Poses

__all__ = ["NMSParams", "PRESETS", "get_params", "pose_nms", "pose_nms_arrays"]

_FORMS = {"paper": 0, "alphapose": 1}
ALPHAPOSE_SCORE_MAX = 3.25  # mean + box + 1.25·max with every score at 1: the rescore's range


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
    alpha: float = 0.1  # ref = alpha·S: match radius (alphapose: min(ref, match_cap) px), merge radius (alphapose)
    match_count: int = 0  # eliminate when ≥ this many keypoints lie within the match radius (0 disables)
    match_cap: float = 7.0  # alphapose: match radius min(ref, cap) px
    merge_cap: float = 15.0  # alphapose: merge radius min(ref, cap) px (paper: the part box)
    score_threshold: float = 0.3  # drop poses whose max keypoint score is below this
    min_area: float = 0.0  # drop merged poses whose keypoint extent area (px²) is below this
    rescore: str = "keep"  # output person score: "keep" | "alphapose" ((mean + box + 1.25·max) / 3.25)

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
    if not overrides:
        return PRESETS[preset]
    names = {f.name for f in dataclasses.fields(NMSParams)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown pose NMS parameter(s): {', '.join(bad)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


@kernel(inline="always")
def _hterm(q, scale_inv, form):
    """One H_sim term for squared distance q: exp(−q/(S²σ2)) (paper) or exp(−√q/δ2) (port);
    ``scale_inv`` is 1/(S²σ2) or 1/δ2 (a multiply instead of divisions in the inner loop)."""
    return np.exp(-q * scale_inv) if form == 0 else np.exp(-np.sqrt(q) * scale_inv)


@kernel()
def _similar(xy, tconf, i, j, s, form, sigma2, lam, eta, part, match_r, match_count, d2):
    """Whether pose i is redundant to reference pose j (K_sim + λ·H_sim > η, or the match rule)."""
    k = tconf.shape[1]
    half = 0.5 * part * s
    ksim = 0.0
    nmatch = 0
    dmin2 = np.inf
    for p in range(k):
        dx = xy[i, p, 0] - xy[j, p, 0]
        dy = xy[i, p, 1] - xy[j, p, 1]
        q = dx * dx + dy * dy
        d2[p] = q
        dmin2 = min(dmin2, q)
        inside = (abs(dx) <= half and abs(dy) <= half) if form == 0 else q <= part * part
        if inside:
            ksim += tconf[i, p] * tconf[j, p]
        if q <= match_r * match_r:
            nmatch += 1
    if match_count > 0 and nmatch >= match_count:
        return True
    # Every H_sim term is at most the closest keypoint's: one exp rejects most non-duplicates.
    scale_inv = 1.0 / (s * s * sigma2) if form == 0 else 1.0 / sigma2
    if ksim + lam * k * _hterm(dmin2, scale_inv, form) <= eta:
        return False
    hsim = 0.0
    for p in range(k):
        hsim += _hterm(d2[p], scale_inv, form)
        if ksim + lam * hsim > eta:  # the remaining terms are ≥ 0: decided
            return True
    return False


@kernel()
def _greedy(xy, tconf, order, scale, form, sigma2, lam, eta, part, alpha, match_count, match_cap):
    """owner[i] = index of the kept pose that eliminated pose i (kept poses own themselves)."""
    n, k = tconf.shape
    owner = np.full(n, -1, np.int64)
    d2 = np.empty(k)
    # Keypoint extents: the gap g between two extents bounds every same-keypoint distance from
    # below, so H_sim ≤ k·h(g); pairs with λ·k·h(g) ≤ η and no possible part or match hit are
    # rejected without per-keypoint work. h(g) ≤ η/(λk) ⟺ g ≥ g*, precomputed per reference.
    ext = np.empty((n, 4))
    for i in range(n):
        x0 = x1 = xy[i, 0, 0]
        y0 = y1 = xy[i, 0, 1]
        for p in range(1, k):
            x0 = min(x0, xy[i, p, 0])
            x1 = max(x1, xy[i, p, 0])
            y0 = min(y0, xy[i, p, 1])
            y1 = max(y1, xy[i, p, 1])
        ext[i, 0] = x0
        ext[i, 1] = y0
        ext[i, 2] = x1
        ext[i, 3] = y1
    log_ratio = np.log(lam * k / eta) if lam * k > eta else 0.0
    for oi in range(n):
        j = order[oi]
        if owner[j] >= 0:
            continue
        owner[j] = j
        s = scale[j]
        match_r = min(alpha * s, match_cap) if form == 1 else alpha * s
        half = 0.5 * part * s
        # g*² (slightly enlarged so rounding never rejects a pair the full test would keep)
        gq = s * s * sigma2 * log_ratio if form == 0 else (sigma2 * log_ratio) ** 2
        gq = gq * (1 + 1e-9) + 1e-300
        for oc in range(oi + 1, n):
            i = order[oc]
            if owner[i] >= 0:
                continue
            gx = max(0.0, ext[i, 0] - ext[j, 2], ext[j, 0] - ext[i, 2])
            gy = max(0.0, ext[i, 1] - ext[j, 3], ext[j, 1] - ext[i, 3])
            g2 = gx * gx + gy * gy
            if g2 >= gq:
                no_part = (gx > half or gy > half) if form == 0 else g2 > part * part
                if no_part and not (match_count > 0 and g2 <= match_r * match_r):
                    continue
            if _similar(xy, tconf, i, j, s, form, sigma2, lam, eta, part, match_r, match_count, d2):
                owner[i] = j
    return owner


@kernel()
def _merge(xy, conf, owner, order, scale, form, part, alpha, merge_cap):
    """Per kept pose (greedy order): score-weighted average of its cluster's keypoints that lie
    within the merge distance of its own → (kept [M], xy [M, K, 2], scores Σc²/Σc [M, K])."""
    n, k = conf.shape
    slot = np.full(n, -1, np.int64)
    kept = np.empty(n, np.int64)
    m = 0
    for oi in range(n):
        j = order[oi]
        if owner[j] == j:
            slot[j] = m
            kept[m] = j
            m += 1
    acc = np.zeros((m, k, 7))  # Σc, Σc², Σc·x, Σc·y, count, Σx, Σy
    for i in range(n):  # one pass: each pose adds to its owner's sums
        j = owner[i]
        q = slot[j]
        r = 0.5 * part * scale[j] if form == 0 else min(alpha * scale[j], merge_cap)
        for p in range(k):
            dx = xy[i, p, 0] - xy[j, p, 0]
            dy = xy[i, p, 1] - xy[j, p, 1]
            inside = (abs(dx) <= r and abs(dy) <= r) if form == 0 else (dx * dx + dy * dy <= r * r)
            if inside:
                c = conf[i, p]
                acc[q, p, 0] += c
                acc[q, p, 1] += c * c
                acc[q, p, 2] += c * xy[i, p, 0]
                acc[q, p, 3] += c * xy[i, p, 1]
                acc[q, p, 4] += 1.0
                acc[q, p, 5] += xy[i, p, 0]
                acc[q, p, 6] += xy[i, p, 1]
    out_xy = np.empty((m, k, 2))
    out_c = np.empty((m, k))
    for q in range(m):
        for p in range(k):
            a = acc[q, p]
            if a[0] > 0:
                out_xy[q, p, 0] = a[2] / a[0]
                out_xy[q, p, 1] = a[3] / a[0]
                out_c[q, p] = a[1] / a[0]
            else:  # every matched score is zero: plain average, score 0
                out_xy[q, p, 0] = a[5] / a[4]
                out_xy[q, p, 1] = a[6] / a[4]
                out_c[q, p] = 0.0
    return kept[:m], out_xy, out_c


@kernel("(float64[:, :, ::1], float64[:, ::1], float64[:, ::1], float64[::1], float64[::1])")
def _pose_nms(kp, tconf, boxes, scores, prm):
    """The whole NMS in one call (one dispatch): order, scales, greedy elimination, merge, filter."""
    n, k = kp.shape[0], kp.shape[1]
    form, by_mean, sigma2, lam, eta = int(prm[0]), prm[1] > 0, prm[3], prm[4], prm[5]
    part, alpha, match_count, match_cap, merge_cap = prm[6], prm[7], int(prm[8]), prm[9], prm[10]
    score_thr, min_area, rescore = prm[11], prm[12], prm[13] > 0
    xy = kp[:, :, :2]
    conf = kp[:, :, 2]
    key = np.empty(n)
    scale = np.empty(n)
    for i in range(n):
        if by_mean:
            total = 0.0
            for p in range(k):
                total += conf[i, p]
            key[i] = -(total / k)
        else:
            key[i] = -scores[i]
        s = max(boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1])
        if not s > 0:  # degenerate box: keypoint extent, then 1
            s = max(xy[i, :, 0].max() - xy[i, :, 0].min(), xy[i, :, 1].max() - xy[i, :, 1].min())
            if not s > 0:
                s = 1.0
        scale[i] = s
    order = np.argsort(key, kind="mergesort")  # stable: ties keep input order
    owner = _greedy(xy, tconf, order, scale, form, sigma2, lam, eta, part, alpha, match_count, match_cap)
    kept, mxy, mc = _merge(xy, conf, owner, order, scale, form, part, alpha, merge_cap)
    m = kept.shape[0]
    keep = np.zeros(m, np.bool_)
    out_sc = np.empty(m)
    for q in range(m):
        j = kept[q]
        cmax = conf[j, 0]
        mmax = mc[q, 0]
        msum = 0.0
        for p in range(k):
            cmax = max(cmax, conf[j, p])
            mmax = max(mmax, mc[q, p])
            msum += mc[q, p]
        ok = cmax >= score_thr and mmax >= score_thr
        if ok and min_area > 0:
            w = mxy[q, :, 0].max() - mxy[q, :, 0].min()
            h = mxy[q, :, 1].max() - mxy[q, :, 1].min()
            ok = w * h >= min_area
        keep[q] = ok
        out_sc[q] = (msum / k + scores[j] + 1.25 * mmax) / ALPHAPOSE_SCORE_MAX if rescore else scores[j]
    out_kp = np.empty((m, k, 3))
    out_kp[:, :, :2] = mxy
    out_kp[:, :, 2] = mc
    return kept[keep], out_kp[keep], out_sc[keep]


@lru_cache(maxsize=64)
def _pack(params: NMSParams, k: int) -> np.ndarray:
    return np.array([_FORMS[params.form], params.order == "mean_keypoint", params.sigma1, params.sigma2, params.lam,
                     params.eta * k / 17.0, params.part, params.alpha, params.match_count, params.match_cap,
                     params.merge_cap, params.score_threshold, params.min_area, params.rescore == "alphapose"],
                    dtype=np.float64)


def pose_nms_arrays(keypoints: np.ndarray, boxes: np.ndarray, scores: np.ndarray, params: NMSParams):
    """Array-level pose NMS.

    keypoints [N, K, 3] (x, y, score) px, boxes [N, 4] xyxy, scores [N] person scores →
    (kept indices [M] in greedy order, merged keypoints [M, K, 3] float64, person scores [M] float64).
    """
    kp = np.ascontiguousarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must be [N, K, 3], got shape {kp.shape}")
    n, k = kp.shape[:2]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, k, 3)), np.zeros(0)
    boxes = np.ascontiguousarray(boxes, dtype=np.float64).reshape(n, 4)
    scores = np.ascontiguousarray(scores, dtype=np.float64).reshape(n)
    # tanh once, vectorised, here: per keypoint pair inside the loop it would dominate the cost
    tconf = np.tanh(kp[..., 2] if params.sigma1 == 1.0 else kp[..., 2] / params.sigma1)
    return _pose_nms(kp, tconf, boxes, scores, _pack(params, k))


def pose_nms(poses: Poses, preset: str = "paper", **overrides) -> Poses:
    """Parametric pose NMS over ``poses`` with a named preset ("paper" | "alphapose") and overrides."""
    params = get_params(preset, **overrides)
    if len(poses) == 0:
        return poses.copy()
    kept, kp, scores = pose_nms_arrays(poses.keypoints, poses.boxes, poses.scores, params)
    return Poses(poses.boxes[kept].copy(), kp, scores, poses.track_ids[kept].copy(), poses.layout)
