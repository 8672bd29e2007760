"""Constant-velocity Kalman filter on person boxes (centre and size), for many tracks at once.

State per track [cx, cy, w, h, vcx, vcy, vw, vh] in pixels and pixels per second; the measurement
is the box centre and size. Noise scales with the box height so the same settings serve near and
far people: process noise is filterpy's piecewise white acceleration model with std
``process_noise`` box heights/s², measurement noise ``measurement_noise`` box heights. Time steps
are real seconds, so dropped or irregular frames predict correctly.

The equations are filterpy's ``KalmanFilter.predict`` / ``update`` (Joseph-form covariance
update); they are evaluated batched over all tracks because one filterpy object per person costs
more than the whole per-frame budget of the tracker (tests check both agree step by step).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from filterpy.common import Q_discrete_white_noise

MIN_SIZE = 1.0
INITIAL_VELOCITY_STD = 1.0  # box heights per second: a walking person before any evidence
_I8 = np.eye(8)


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64)
    wh = np.maximum(box[..., 2:] - box[..., :2], MIN_SIZE)
    return np.concatenate([(box[..., :2] + box[..., 2:]) / 2, wh], axis=-1)


def cxcywh_to_xyxy(state: np.ndarray) -> np.ndarray:
    state = np.asarray(state, dtype=np.float64)
    half = state[..., 2:4] / 2
    return np.concatenate([state[..., :2] - half, state[..., :2] + half], axis=-1)


@lru_cache(maxsize=64)
def transition(dt: float) -> tuple[np.ndarray, np.ndarray]:
    """F and the unit-variance process noise Q (filterpy's model) for a step of dt seconds."""
    f = np.eye(8)
    f[:4, 4:] = np.eye(4) * dt
    q = Q_discrete_white_noise(dim=2, dt=dt, var=1.0, block_size=4, order_by_dim=False)
    f.flags.writeable = False
    q.flags.writeable = False
    return f, q


def _heights(x: np.ndarray) -> np.ndarray:
    return np.maximum(x[:, 3], MIN_SIZE)


def initiate(boxes: np.ndarray, measurement_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """States [N, 8] (zero velocity) and covariances [N, 8, 8] for new tracks."""
    z = xyxy_to_cxcywh(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    x = np.concatenate([z, np.zeros_like(z)], axis=1)
    h = _heights(x)
    var = np.concatenate([np.repeat(((2 * measurement_noise * h) ** 2)[:, None], 4, 1),
                          np.repeat(((INITIAL_VELOCITY_STD * h) ** 2)[:, None], 4, 1)], axis=1)
    p = np.zeros((len(x), 8, 8))
    p[:, np.arange(8), np.arange(8)] = var
    return x, p


def process_noise_matrix(x: np.ndarray, dt: float, process_noise: float) -> np.ndarray:
    """Q [N, 8, 8] for each track's current height."""
    _, q = transition(round(float(dt), 6))
    return q[None] * ((process_noise * _heights(x)) ** 2)[:, None, None]


def predict(x: np.ndarray, p: np.ndarray, dt: float, process_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Advance all tracks by dt seconds; sizes are kept at or above MIN_SIZE."""
    if len(x) == 0:
        return x, p
    f, _ = transition(round(float(dt), 6))
    q = process_noise_matrix(x, dt, process_noise)
    x = x @ f.T
    p = f @ p @ f.T + q
    small = x[:, 2:4] < MIN_SIZE  # a shrinking box must not pass through zero size
    if small.any():
        x[:, 2:4] = np.where(small, MIN_SIZE, x[:, 2:4])
        x[:, 6:8] = np.where(small, 0.0, x[:, 6:8])
    return x, p


def measurement_noise_matrix(boxes: np.ndarray, measurement_noise: float) -> np.ndarray:
    """R [N, 4, 4] from each measured box's height."""
    z = xyxy_to_cxcywh(boxes)
    r = (measurement_noise * np.maximum(z[:, 3], MIN_SIZE)) ** 2
    return np.eye(4)[None] * r[:, None, None]


def update(x: np.ndarray, p: np.ndarray, boxes: np.ndarray, measurement_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Correct N tracks with N measured boxes (rows aligned)."""
    if len(x) == 0:
        return x, p
    z = xyxy_to_cxcywh(boxes)
    r = measurement_noise_matrix(boxes, measurement_noise)
    s = p[:, :4, :4] + r  # H P Hᵀ + R with H = [I 0]
    k = p[:, :, :4] @ np.linalg.inv(s)  # P Hᵀ S⁻¹
    x = x + (k @ (z - x[:, :4])[:, :, None])[:, :, 0]
    i_kh = _I8 - np.concatenate([k, np.zeros_like(k)], axis=2)
    p = i_kh @ p @ i_kh.transpose(0, 2, 1) + k @ r @ k.transpose(0, 2, 1)
    return x, p


def hold_size(x: np.ndarray, rows) -> None:
    """Stop sizes from drifting (a person's size does not keep changing while unseen); in place."""
    x[rows, 6:8] = 0.0


def boxes_of(x: np.ndarray) -> np.ndarray:
    """Boxes [N, 4] x1, y1, x2, y2 of states [N, 8]."""
    return cxcywh_to_xyxy(x[:, :4])


def position_variance(p: np.ndarray) -> np.ndarray:
    """Mean variance of the centre position along x and y, pixels² [N]."""
    return (p[:, 0, 0] + p[:, 1, 1]) / 2
