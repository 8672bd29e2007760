"""Causal per-keypoint temporal smoothing of tracked poses: One-Euro (default) or Kalman.

State lives per track id; poses without an id (-1) pass through untouched. A new id, an id
unseen for more than ``max_gap_s``, or a single keypoint unseen that long starts fresh.
Keypoints scoring at or below ``min_keypoint_score`` are returned as they came and leave the
filter state alone, so a missed joint (score 0, position meaningless) never drags the filter.
Scores of the other keypoints go through a first-order low-pass (factor ``score_alpha``).

One-Euro follows MediaPipe's landmark smoother: x and y are filtered separately, the speed is
taken against the previous *raw* value and measured in person sizes per second (size = mean of
the width and height of the visible keypoints' extent), so ``min_cutoff`` 0.05 Hz, ``beta`` 80
and ``d_cutoff`` 1 Hz behave the same for near and far people. ``strength`` divides min_cutoff
and beta: 1 is MediaPipe's filter exactly; the default 4 is what reduces the frame-to-frame
acceleration of a keypoint moving at walking speed by half with under a frame of lag (MediaPipe's
own values remove only 30-40% of it there; see bench/bench_trackers.py). The Kalman alternative
is a constant-velocity filter per coordinate (piecewise white acceleration, std
``process_noise / strength`` person sizes/s², measurement std ``measurement_noise`` sizes): no
lag at constant speed, more lag than One-Euro on sudden moves.

All tracks are filtered at once: their states are stacked into one [M, K, C] array per call.
"""
from __future__ import annotations

import numpy as np

from core.config import SmoothingConfig
from core.errors import UserError
from core.poses import Poses

METHODS = ("one_euro", "kalman")

# Column layout of the per-track state arrays [K, C].
_EURO_COLS = 8  # x_hat(2) x_raw(2) dx_hat(2) t(1) score(1)
_KALMAN_COLS = 12  # p(2) v(2) P00(2) P01(2) P11(2) t(1) score(1)
_T, _S = -2, -1  # time of the last update, smoothed score
_INITIAL_VELOCITY_STD = 1.0  # person sizes per second (kalman)


def _alpha(cutoff, dt):
    """One-Euro smoothing factor 1 / (1 + τ/Te) with τ = 1/(2π·cutoff)."""
    return 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt))


def person_scale(keypoints: np.ndarray, boxes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(width + height) / 2 of the valid keypoints' extent per pose [M], else of the box."""
    big = np.float64(np.inf)
    x, y = keypoints[..., 0], keypoints[..., 1]
    w = np.where(valid, x, -big).max(-1) - np.where(valid, x, big).min(-1)
    h = np.where(valid, y, -big).max(-1) - np.where(valid, y, big).min(-1)
    scale = (w + h) / 2
    box_scale = ((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) / 2
    ok = (valid.sum(-1) >= 2) & np.isfinite(scale) & (scale > 1.0)
    return np.maximum(np.where(ok, scale, box_scale), 1.0)


def _one_euro_step(st, z, dt, fresh, scale, cfg):
    """Filter the measurements z [M, K, 2]; returns (output xy, new state), st updated in place."""
    x_hat, x_raw, dx_hat = st[..., 0:2], st[..., 2:4], st[..., 4:6]
    dt2 = dt[..., None]
    speed = (z - x_raw) / scale[:, None, None] / dt2
    dx_new = dx_hat + _alpha(cfg.d_cutoff, dt2) * (speed - dx_hat)
    cutoff = (cfg.min_cutoff + cfg.beta * np.abs(dx_new)) / cfg.strength
    xh_new = x_hat + _alpha(cutoff, dt2) * (z - x_hat)
    f = fresh[..., None]
    xh_new = np.where(f, z, xh_new)
    dx_new = np.where(f, 0.0, dx_new)
    return xh_new, np.concatenate([xh_new, z, dx_new], axis=-1)


def _kalman_step(st, z, dt, fresh, scale, cfg):
    """Constant-velocity Kalman per coordinate (piecewise white acceleration noise)."""
    p, v, p00, p01, p11 = st[..., 0:2], st[..., 2:4], st[..., 4:6], st[..., 6:8], st[..., 8:10]
    dt2 = dt[..., None]
    s2 = (scale ** 2)[:, None, None]
    q = (cfg.process_noise / cfg.strength) ** 2 * s2
    r = cfg.measurement_noise ** 2 * s2
    # predict
    p = p + v * dt2
    p00 = p00 + 2 * dt2 * p01 + dt2 ** 2 * p11 + q * dt2 ** 4 / 4
    p01 = p01 + dt2 * p11 + q * dt2 ** 3 / 2
    p11 = p11 + q * dt2 ** 2
    # correct
    s = p00 + r
    k0, k1 = p00 / s, p01 / s
    innov = z - p
    p = p + k0 * innov
    v = v + k1 * innov
    p00, p01, p11 = (1 - k0) * p00, (1 - k0) * p01, p11 - k1 * p01
    f = fresh[..., None]
    zeros = np.zeros_like(z)
    p = np.where(f, z, p)
    v = np.where(f, zeros, v)
    p00 = np.where(f, r + zeros, p00)
    p01 = np.where(f, zeros, p01)
    p11 = np.where(f, _INITIAL_VELOCITY_STD ** 2 * s2 + zeros, p11)
    return p, np.concatenate([p, v, p00, p01, p11], axis=-1)


_STEPS = {"one_euro": (_one_euro_step, _EURO_COLS), "kalman": (_kalman_step, _KALMAN_COLS)}


class PoseSmoother:
    """``smoother(poses, timestamp)`` returns a smoothed copy of ``poses`` (boxes untouched)."""

    def __init__(self, cfg: SmoothingConfig):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        """Forget every track's filter state."""
        self._states: dict[int, np.ndarray] = {}
        self._last_seen: dict[int, float] = {}
        self._signature: tuple | None = None

    def _check(self) -> None:
        cfg = self.cfg
        if cfg.method not in _STEPS:
            raise UserError(f"smoothing.method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
        if cfg.strength <= 0:
            raise UserError(f"smoothing.strength must be > 0, got {cfg.strength}")
        if not 0 < cfg.score_alpha <= 1:
            raise UserError(f"smoothing.score_alpha must lie in (0, 1], got {cfg.score_alpha}")
        if cfg.method == "kalman" and not (cfg.measurement_noise > 0 and cfg.process_noise > 0):
            raise UserError("smoothing.process_noise and smoothing.measurement_noise must be > 0")

    def _purge(self, timestamp: float) -> None:
        """Drop states of ids unseen for longer than max_gap_s (or seen 'after' now: a seek)."""
        gap = self.cfg.max_gap_s
        stale = [i for i, t in self._last_seen.items() if timestamp - t > gap or t > timestamp]
        for i in stale:
            del self._states[i], self._last_seen[i]

    def __call__(self, poses: Poses, timestamp: float) -> Poses:
        cfg = self.cfg
        out = poses.copy()
        if not cfg.enabled:
            return out
        self._check()
        signature = (cfg.method, poses.layout)
        if signature != self._signature:
            self.reset()
            self._signature = signature
        timestamp = float(timestamp)
        self._purge(timestamp)

        first: dict[int, int] = {}
        for r, i in enumerate(poses.track_ids.tolist()):
            if i >= 0 and i not in first:  # duplicate ids in a frame: only the first is filtered
                first[i] = r
        if not first:
            return out
        rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        step, cols = _STEPS[cfg.method]
        k = poses.num_keypoints
        blank = np.full((k, cols), 0.0)
        blank[:, _T] = -np.inf
        row_ids = list(first)
        st = np.stack([self._states.get(i, blank) for i in row_ids])  # [M, K, C]

        kp = poses.keypoints[rows].astype(np.float64)
        z, score = kp[..., :2], kp[..., 2]
        valid = score > cfg.min_keypoint_score
        dt = timestamp - st[..., _T]
        fresh = ~(dt <= cfg.max_gap_s) | (dt < 0)  # never seen, too long ago, or time went back
        hold = (dt == 0) & ~fresh  # same timestamp twice: keep the previous output
        dt_safe = np.where(fresh | hold, 1.0, dt)
        scale = person_scale(kp, poses.boxes[rows].astype(np.float64), valid)

        xy, new_core = step(st, z, dt_safe, fresh, scale, cfg)
        s_new = np.where(fresh, score, st[..., _S] + cfg.score_alpha * (score - st[..., _S]))
        update = valid & ~hold
        new_st = np.concatenate([new_core, np.full(score.shape + (1,), timestamp), s_new[..., None]], axis=-1)
        new_st = np.where(update[..., None], new_st, st)

        xy = np.where(hold[..., None], st[..., 0:2], xy)
        s_out = np.where(hold, st[..., _S], s_new)
        smoothed = np.concatenate([xy, s_out[..., None]], axis=-1)
        kp_out = np.where(valid[..., None], smoothed, kp)
        out.keypoints[rows] = kp_out.astype(np.float32)

        for j, i in enumerate(row_ids):
            self._states[i] = new_st[j]
            self._last_seen[i] = timestamp
        return out
