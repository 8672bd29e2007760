"""Constant-velocity Kalman filter on a person box: centre and size (filterpy).

State [cx, cy, w, h, vcx, vcy, vw, vh] in pixels and pixels per second. Noise scales with the
box height, so the same settings serve near and far people: process noise is a piecewise white
acceleration of ``process_noise`` box heights/s², measurement noise ``measurement_noise`` box
heights. Time steps are real seconds, so dropped or irregular frames predict correctly.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter

_H = np.eye(4, 8)
_MIN_SIZE = 1.0
_INITIAL_VELOCITY_STD = 1.0  # box heights per second: a walking person before any evidence


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64)
    wh = np.maximum(box[..., 2:] - box[..., :2], _MIN_SIZE)
    return np.concatenate([(box[..., :2] + box[..., 2:]) / 2, wh], axis=-1)


def cxcywh_to_xyxy(state: np.ndarray) -> np.ndarray:
    state = np.asarray(state, dtype=np.float64)
    half = state[..., 2:4] / 2
    return np.concatenate([state[..., :2] - half, state[..., :2] + half], axis=-1)


@lru_cache(maxsize=64)
def _transition(dt: float) -> tuple[np.ndarray, np.ndarray]:
    """F and the unit-variance process noise Q for a step of dt seconds."""
    f = np.eye(8)
    f[:4, 4:] = np.eye(4) * dt
    q = Q_discrete_white_noise(dim=2, dt=dt, var=1.0, block_size=4, order_by_dim=False)
    f.flags.writeable = False
    q.flags.writeable = False
    return f, q


class BoxKalman:
    """One person's box filter."""

    def __init__(self, box: np.ndarray, process_noise: float, measurement_noise: float):
        self.process_noise = float(process_noise)
        self.measurement_noise = float(measurement_noise)
        z = xyxy_to_cxcywh(box)
        kf = KalmanFilter(dim_x=8, dim_z=4)
        kf.H = _H
        kf.x = np.concatenate([z, np.zeros(4)])[:, None]
        h = z[3]
        pos_std = 2 * self.measurement_noise * h
        vel_std = _INITIAL_VELOCITY_STD * h
        kf.P = np.diag([pos_std ** 2] * 4 + [vel_std ** 2] * 4)
        self._kf = kf

    @property
    def _height(self) -> float:
        return max(float(self._kf.x[3, 0]), _MIN_SIZE)

    def predict(self, dt: float) -> None:
        f, q = _transition(round(float(dt), 6))
        self._kf.predict(F=f, Q=q * (self.process_noise * self._height) ** 2)
        x = self._kf.x
        for i in (2, 3):  # a shrinking box must not pass through zero size
            if x[i, 0] < _MIN_SIZE:
                x[i, 0] = _MIN_SIZE
                x[i + 4, 0] = 0.0

    def hold_size(self) -> None:
        """Stop the size from drifting (a person's size does not keep changing while unseen)."""
        self._kf.x[6:8, 0] = 0.0

    def update(self, box: np.ndarray) -> None:
        z = xyxy_to_cxcywh(box)
        r = (self.measurement_noise * max(z[3], _MIN_SIZE)) ** 2
        self._kf.update(z, R=np.eye(4) * r)

    @property
    def state(self) -> np.ndarray:
        """[cx, cy, w, h, vcx, vcy, vw, vh]."""
        return self._kf.x[:, 0]

    @property
    def box(self) -> np.ndarray:
        """Current (predicted or corrected) box, x1, y1, x2, y2."""
        return cxcywh_to_xyxy(self._kf.x[:4, 0])

    @property
    def position_variance(self) -> float:
        """Mean variance of the centre position along x and y, pixels²."""
        p = self._kf.P
        return float(p[0, 0] + p[1, 1]) / 2
