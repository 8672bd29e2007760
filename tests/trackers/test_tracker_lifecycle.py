"""PoseTracker life cycle: ids on every pose, confirmation, loss, removal, reset, config errors."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import TrackingConfig
from core.errors import UserError
from core.poses import Poses
from core.skeleton import BLAZEPOSE33, COCO17
from trackers import PoseTracker


def one(synthetic, x, layout=COCO17):
    """A single standing person at x as Poses."""
    walker = synthetic.Walker(x, 500.0, 0.0, 0.0, 300.0)
    return synthetic.make_sequence([walker], 1, layout=layout)[0].poses


def group(*poses):
    return Poses.concat(list(poses))


def states(tracker):
    return tracker.track_states()


TENTATIVE, CONFIRMED, LOST = "tentative", "confirmed", "lost"


def test_every_pose_gets_an_id_in_input_order(synthetic):
    tr = PoseTracker(TrackingConfig(), 30)
    frame = group(one(synthetic, 300), one(synthetic, 900), one(synthetic, 1500))
    out = tr.update(frame, 0.0)
    assert list(out.track_ids) == [0, 1, 2]
    assert np.array_equal(out.keypoints, frame.keypoints)  # poses are not altered
    assert np.all(frame.track_ids == -1)  # the input is not modified
    out = tr.update(group(frame.select([2, 0, 1])), 1 / 30)
    assert list(out.track_ids) == [2, 0, 1]


def test_confirmation_loss_and_removal(synthetic):
    cfg = TrackingConfig(min_hits=3, max_age_s=0.5)
    tr = PoseTracker(cfg, 30)
    p = one(synthetic, 500)
    t = 0.0
    for expected in (TENTATIVE, TENTATIVE, CONFIRMED):
        out = tr.update(p, t)
        assert out.track_ids[0] == 0 and states(tr) == {0: expected}
        t += 1 / 30
    for _ in range(15):  # 0.5 s unseen: still kept
        tr.update(Poses.empty(), t)
        assert states(tr) == {0: LOST}
        t += 1 / 30
    assert tr.update(p, t).track_ids[0] == 0  # comes back: same id, confirmed again
    assert states(tr) == {0: CONFIRMED}
    for _ in range(17):
        t += 1 / 30
        tr.update(Poses.empty(), t)
    assert states(tr) == {}  # unseen for longer than max_age_s: removed
    assert tr.update(p, t + 1 / 30).track_ids[0] == 1  # a new id, never a reused one


def test_tentative_track_survives_one_dropout_not_two(synthetic):
    tr = PoseTracker(TrackingConfig(min_hits=3), 30)
    p = one(synthetic, 500)
    tr.update(p, 0.0)
    tr.update(Poses.empty(), 1 / 30)
    assert tr.update(p, 2 / 30).track_ids[0] == 0
    tr.update(Poses.empty(), 3 / 30)
    tr.update(Poses.empty(), 4 / 30)
    assert states(tr) == {}
    assert tr.update(p, 5 / 30).track_ids[0] == 1


def test_far_detection_is_gated_out(synthetic):
    tr = PoseTracker(TrackingConfig(min_hits=1), 30)
    tr.update(one(synthetic, 300), 0.0)
    out = tr.update(one(synthetic, 1500), 1 / 30)  # teleported: a different person
    assert out.track_ids[0] == 1
    assert states(tr) == {0: LOST, 1: CONFIRMED}


def test_reset_forgets_tracks_but_never_reuses_ids(synthetic):
    tr = PoseTracker(TrackingConfig(), 30)
    p = one(synthetic, 500)
    tr.update(p, 0.0)
    tr.update(p, 1 / 30)
    tr.reset()
    assert states(tr) == {}
    assert tr.update(p, 0.0).track_ids[0] == 1


def test_disabled_tracker_passes_poses_through(synthetic):
    tr = PoseTracker(TrackingConfig(enabled=False), 30)
    p = one(synthetic, 500)
    p.track_ids[:] = 7
    out = tr.update(p, 0.0)
    assert list(out.track_ids) == [-1] and states(tr) == {}


def test_live_config_change_applies_next_frame(synthetic):
    cfg = TrackingConfig(min_hits=5)
    tr = PoseTracker(cfg, 30)
    p = one(synthetic, 500)
    tr.update(p, 0.0)
    cfg.min_hits = 2
    tr.update(p, 1 / 30)
    assert states(tr) == {0: CONFIRMED}
    cfg.distance = "bogus"
    with pytest.raises(UserError, match="tracking.distance"):
        tr.update(p, 2 / 30)


@pytest.mark.parametrize("layout", [COCO17, BLAZEPOSE33])
def test_layout_change_restarts_tracks(synthetic, layout):
    tr = PoseTracker(TrackingConfig(), 30)
    other = BLAZEPOSE33 if layout == COCO17 else COCO17
    assert tr.update(one(synthetic, 500, layout), 0.0).track_ids[0] == 0
    assert tr.update(one(synthetic, 500, other), 1 / 30).track_ids[0] == 1
    assert tr.update(one(synthetic, 500, other), 2 / 30).track_ids[0] == 1


def test_empty_and_keypointless_frames(synthetic):
    tr = PoseTracker(TrackingConfig(), 30)
    assert len(tr.update(Poses.empty(), 0.0)) == 0
    p = one(synthetic, 500)
    p.keypoints[..., 2] = 0.0  # no usable keypoint: matched on the box alone
    assert tr.update(p, 1 / 30).track_ids[0] == 0
    assert tr.update(p, 2 / 30).track_ids[0] == 0


@pytest.mark.parametrize("fps", [0, -5, float("nan"), None])
def test_unknown_fps_falls_back_to_30(fps):
    assert PoseTracker(TrackingConfig(), fps).fps == 30.0


@pytest.mark.parametrize("field,value", [("min_hits", 0), ("max_age_s", -1.0), ("min_similarity", 1.5),
                                         ("process_noise", 0.0), ("oks_weight", 2.0)])
def test_bad_settings_are_user_errors(synthetic, field, value):
    tr = PoseTracker(TrackingConfig(**{field: value}), 30)
    with pytest.raises(UserError, match="tracking."):
        tr.update(one(synthetic, 500), 0.0)


def shifted(p, dx, dy=0.0, scale=1.0):
    """The same pose moved by (dx, dy) and scaled about its box centre."""
    q = p.copy()
    c = (q.boxes[:, :2] + q.boxes[:, 2:]) / 2
    q.keypoints[..., :2] = (q.keypoints[..., :2] - c[:, None]) * scale + c[:, None] + (dx, dy)
    q.boxes = np.concatenate([(q.boxes[:, :2] - c) * scale + c + (dx, dy),
                              (q.boxes[:, 2:] - c) * scale + c + (dx, dy)], 1)
    return q


@pytest.mark.parametrize("speed,scale,same_id", [
    (2.5, 1.0, True),  # jumped one body size away while unseen for 0.6 s: found again
    (0.0, 1.0, False),  # recovery off
    (2.5, 1.6, False),  # a much bigger box there is somebody else
    (1.0, 1.0, False),  # too far for a person moving at most 1 size/s
])
def test_lost_person_recovered_where_prediction_fails(synthetic, speed, scale, same_id):
    tr = PoseTracker(TrackingConfig(recovery_speed=speed), 30)
    p = one(synthetic, 500)
    for i in range(5):
        tr.update(p, i / 30)
    for i in range(5, 23):  # 18 frames unseen
        tr.update(Poses.empty(), i / 30)
    size = float((p.boxes[0, 2:] - p.boxes[0, :2]).max())
    back = shifted(p, 0.7 * size, 0.5 * size, scale)  # ~0.86 sizes from where he was last seen
    out = tr.update(back, 23 / 30)
    assert (out.track_ids[0] == 0) == same_id
