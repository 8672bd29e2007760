"""Batched box Kalman filter: agrees with filterpy's KalmanFilter, learns velocity, keeps sizes."""
from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter

from trackers import kalman_box as kb

DT = 1 / 30


def test_conversions_round_trip(rng):
    boxes = np.concatenate([rng.uniform(0, 100, (5, 2)), rng.uniform(150, 300, (5, 2))], 1)
    np.testing.assert_allclose(kb.cxcywh_to_xyxy(kb.xyxy_to_cxcywh(boxes)), boxes)


def test_matches_filterpy_step_by_step(rng):
    """Three tracks, irregular steps, updates on some frames only: same x and P as one filterpy
    KalmanFilter per track given the same F, Q, H, R."""
    n, q_std, r_std = 3, 2.0, 0.05
    boxes = np.concatenate([rng.uniform(100, 500, (n, 2)), rng.uniform(600, 900, (n, 2))], 1)
    x, p = kb.initiate(boxes, r_std)
    refs = []
    for i in range(n):
        kf = KalmanFilter(dim_x=8, dim_z=4)
        kf.x, kf.P, kf.H = x[i].copy()[:, None], p[i].copy(), np.eye(4, 8)
        refs.append(kf)
    for step in range(25):
        dt = DT * (1 + step % 3)
        f, _ = kb.transition(round(dt, 6))
        q = kb.process_noise_matrix(x, dt, q_std)
        for i, kf in enumerate(refs):
            kf.predict(F=f, Q=q[i])
        x, p = kb.predict(x, p, dt, q_std)
        if step % 4 != 3:
            z = boxes + step * 5 + rng.normal(0, 3, boxes.shape)
            r = kb.measurement_noise_matrix(z, r_std)
            for i, kf in enumerate(refs):
                kf.update(kb.xyxy_to_cxcywh(z[i]), R=r[i])
            x, p = kb.update(x, p, z, r_std)
        for i, kf in enumerate(refs):
            np.testing.assert_allclose(x[i], kf.x[:, 0], rtol=1e-9, atol=1e-6)
            np.testing.assert_allclose(p[i], kf.P, rtol=1e-9, atol=1e-6)


def test_learns_velocity_and_predicts_across_a_gap(rng):
    v = np.array([240.0, -60.0])  # pixels per second
    box0 = np.array([[100.0, 300.0, 200.0, 600.0]])
    x, p = kb.initiate(box0, 0.05)
    for i in range(1, 41):
        x, p = kb.predict(x, p, DT, 2.0)
        x, p = kb.update(x, p, box0 + np.tile(v * i * DT, 2) + rng.normal(0, 2, 4), 0.05)
    np.testing.assert_allclose(x[0, 4:6], v, rtol=0.15)
    var_before = kb.position_variance(p)[0]
    for _ in range(20):  # 20 frames unseen
        x, p = kb.predict(x, p, DT, 2.0)
    assert np.abs(kb.boxes_of(x)[0] - (box0[0] + np.tile(v * 60 * DT, 2))).max() < 25
    assert kb.position_variance(p)[0] > 4 * var_before


def test_size_never_collapses():
    x, p = kb.initiate(np.array([[0.0, 0.0, 50.0, 100.0]]), 0.05)
    x, p = kb.predict(x, p, DT, 2.0)
    x, p = kb.update(x, p, np.array([[0.0, 0.0, 10.0, 20.0]]), 0.05)  # sudden shrink: large negative size speed
    for _ in range(100):
        x, p = kb.predict(x, p, DT, 2.0)
    assert np.all(x[:, 2:4] >= kb.MIN_SIZE)


def test_hold_size_stops_size_drift():
    x, p = kb.initiate(np.array([[0.0, 0.0, 50.0, 100.0], [0.0, 0.0, 50.0, 100.0]]), 0.05)
    x, p = kb.predict(x, p, DT, 2.0)
    x, p = kb.update(x, p, np.array([[0.0, 0.0, 60.0, 120.0]] * 2), 0.05)
    kb.hold_size(x, np.array([True, False]))
    wh = x[:, 2:4].copy()
    for _ in range(30):
        x, p = kb.predict(x, p, DT, 2.0)
    np.testing.assert_allclose(x[0, 2:4], wh[0])
    assert np.all(x[1, 2:4] > wh[1] + 5)  # the other keeps growing
