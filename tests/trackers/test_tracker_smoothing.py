"""PoseSmoother: jitter reduction and lag on a noisy moving keypoint, state handling per track."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import SmoothingConfig
from core.errors import UserError
from core.poses import Poses
from core.skeleton import BLAZEPOSE33, COCO17, get_skeleton
from trackers import PoseSmoother


class Delay:
    """Returns the previous frame's poses: a known one-frame lag for checking the lag measure."""

    def __init__(self):
        self.prev = None

    def __call__(self, poses, timestamp):
        out, self.prev = (self.prev if self.prev is not None else poses), poses
        return out


def test_lag_measure_reads_a_one_frame_delay(synthetic):
    r = synthetic.jitter_trial(Delay(), speed=0.5, noise=0.0)
    assert r["lag"] == pytest.approx(1.0, abs=1e-6)


# (speed in person heights per second, direction, noise std in person heights)
WALKS = [(0.25, (1, 0), 0.005), (0.5, (1, 0), 0.005), (1.0, (1, 0), 0.005), (0.25, (1, 0), 0.01),
         (0.5, (1, 0), 0.01), (0.25, (1, 1), 0.005)]


@pytest.mark.parametrize("speed,direction,noise", WALKS)
def test_one_euro_default_reduces_jitter_with_at_most_one_frame_lag(synthetic, speed, direction, noise):
    r = synthetic.jitter_trial(PoseSmoother(SmoothingConfig()), speed, direction, noise)
    assert r["reduction"] >= 0.5, r
    assert 0 <= r["lag"] <= 1.0, r


@pytest.mark.parametrize("speed,direction,noise", WALKS + [(1.0, (1, 1), 0.01), (0.1, (1, 0), 0.005)])
def test_kalman_reduces_jitter_without_lag_at_constant_speed(synthetic, speed, direction, noise):
    r = synthetic.jitter_trial(PoseSmoother(SmoothingConfig(method="kalman")), speed, direction, noise)
    assert r["reduction"] >= 0.5, r
    assert abs(r["lag"]) <= 0.25, r


def test_strength_trades_jitter_for_lag(synthetic):
    weak, strong = (synthetic.jitter_trial(PoseSmoother(SmoothingConfig(strength=s)), 0.5) for s in (1, 8))
    assert strong["reduction"] > weak["reduction"] + 0.15
    assert strong["lag"] > weak["lag"]


def pose(xy, score=0.9, track_id=0, layout=COCO17):
    k = get_skeleton(layout).num_keypoints
    xy = np.broadcast_to(np.asarray(xy, dtype=np.float64), (k, 2))
    kp = np.concatenate([xy, np.full((k, 1), score)], 1)[None]
    return Poses(np.array([[0, 0, 200, 400]]), kp, [0.9], track_ids=[track_id], layout=layout)


def spread(layout=COCO17):
    """A pose with a 200 × 400 keypoint extent (person size 300)."""
    k = get_skeleton(layout).num_keypoints
    return np.stack([np.linspace(0, 200, k), np.linspace(0, 400, k)], 1)


@pytest.mark.parametrize("method", ["one_euro", "kalman"])
@pytest.mark.parametrize("layout", [COCO17, BLAZEPOSE33])
def test_still_pose_converges_and_keeps_layout(method, layout):
    sm = PoseSmoother(SmoothingConfig(method=method))
    base = spread(layout)
    rng = np.random.default_rng(1)
    raw_err, out_err = [], []
    for i in range(90):
        noisy = pose(base + rng.normal(0, 3, base.shape), layout=layout)
        out = sm(noisy, i / 30)
        if i >= 30:
            raw_err.append(np.abs(noisy.keypoints[0, :, :2] - base).mean())
            out_err.append(np.abs(out.keypoints[0, :, :2] - base).mean())
    assert out.layout == layout and out.keypoints.shape == (1, len(base), 3)
    assert np.mean(out_err) < 0.8 * np.mean(raw_err)


@pytest.mark.parametrize("method", ["one_euro", "kalman"])
def test_zero_score_keypoint_does_not_drag_the_filter(method):
    sm = PoseSmoother(SmoothingConfig(method=method))
    base = spread()
    for i in range(20):
        sm(pose(base), i / 30)
    missing = pose(base)
    missing.keypoints[0, 3] = (0.0, 0.0, 0.0)  # a missed joint, as decoders emit it
    out = sm(missing, 20 / 30)
    np.testing.assert_array_equal(out.keypoints[0, 3], [0, 0, 0])  # passed through as it came
    out = sm(pose(base), 21 / 30)
    np.testing.assert_allclose(out.keypoints[0, 3, :2], base[3], atol=1e-6)  # not pulled towards 0, 0
    assert out.keypoints[0, 3, 2] == pytest.approx(0.9, abs=1e-6)


def test_scores_are_low_passed():
    sm = PoseSmoother(SmoothingConfig(score_alpha=0.1))
    sm(pose(spread(), score=1.0), 0.0)
    out = sm(pose(spread(), score=0.0001), 1 / 30)
    assert out.keypoints[0, 0, 2] == pytest.approx(0.9 + 0.1 * 0.0001, abs=1e-6)


def test_untracked_poses_pass_through_and_tracks_are_independent():
    sm = PoseSmoother(SmoothingConfig())
    a, b = spread(), spread() + 1000
    sm(Poses.concat([pose(a, track_id=1), pose(b, track_id=2)]), 0.0)
    frame = Poses.concat([pose(a + 5, track_id=1), pose(b + 5, track_id=-1), pose(b + 5, track_id=2)])
    out = sm(frame, 1 / 30)
    np.testing.assert_array_equal(out.keypoints[1], frame.keypoints[1])  # untracked: untouched
    assert np.abs(out.keypoints[0, :, :2] - (a + 5)).mean() > 1  # smoothed towards its own past
    assert np.abs(out.keypoints[2, :, :2] - (b + 5)).mean() > 1
    assert np.abs(out.keypoints[2, :, :2] - b).max() < 5  # ... and not towards track 1's
    np.testing.assert_array_equal(out.boxes, frame.boxes)


def test_new_id_and_long_gap_restart_the_filter():
    cfg = SmoothingConfig(max_gap_s=0.25)
    sm = PoseSmoother(cfg)
    sm(pose(spread(), track_id=4), 0.0)
    far = spread() + 300
    out = sm(pose(far, track_id=5), 1 / 30)  # new id: no state, output = input
    np.testing.assert_allclose(out.keypoints[0, :, :2], far, atol=1e-4)
    out = sm(pose(far, track_id=4), 0.5)  # id 4 unseen for 0.5 s > max_gap_s: dropped, restarts
    np.testing.assert_allclose(out.keypoints[0, :, :2], far, atol=1e-4)
    assert sorted(sm._states) == [4]  # id 5 unseen for longer than max_gap_s: state dropped


def test_reset_and_disabled():
    sm = PoseSmoother(SmoothingConfig())
    sm(pose(spread()), 0.0)
    sm.reset()
    out = sm(pose(spread() + 50), 1 / 30)
    np.testing.assert_allclose(out.keypoints[0, :, :2], spread() + 50, atol=1e-4)
    off = PoseSmoother(SmoothingConfig(enabled=False))
    p = pose(spread())
    off(p, 0.0)
    np.testing.assert_array_equal(off(pose(spread() + 50), 1 / 30).keypoints, pose(spread() + 50).keypoints)


def test_repeated_timestamp_holds_the_output():
    sm = PoseSmoother(SmoothingConfig())
    first = sm(pose(spread()), 0.0)
    again = sm(pose(spread() + 40), 0.0)
    np.testing.assert_allclose(again.keypoints, first.keypoints, atol=1e-4)


@pytest.mark.parametrize("field,value", [("method", "median"), ("strength", 0.0), ("score_alpha", 0.0)])
def test_bad_settings_are_user_errors(field, value):
    cfg = SmoothingConfig(**{field: value})
    with pytest.raises(UserError, match=f"smoothing.{field}"):
        PoseSmoother(cfg)(pose(spread()), 0.0)
