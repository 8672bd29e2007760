"""Track ids on the real demo video: estimator → pose NMS → PoseTracker → PoseSmoother.

Who is who (read off the video; mid-hip = mean of the COCO hips, image 1768 × 994):
* the jumping-jacks man stands on the louvred box during frames 0–160 (mid-hip x 600–800,
  y 200–330), flips off it around frame 165 (backlit, mostly undetected for ~0.6 s) and lands
  on the lawn to the right (frames 190–229: mid-hip x > 900, y > 500);
* the walker crosses the lawn from the right edge to the left edge during frames 45–199
  (mid-hip y 600–900; after frame 180 she is left of x 600 while the jumper lands right of 900);
* a ~45-px person stands at the shop door all along (mid-hip ~(1480, 620)): told apart by size.
Both must keep a single id for the whole clip; the number of ids the run produced is printed.
"""
from __future__ import annotations

import numpy as np
import pytest

from core.config import Config
from trackers import PoseSmoother, PoseTracker

pytestmark = [pytest.mark.assets, pytest.mark.slow]


@pytest.fixture(scope="module")
def tracked_clip(demo_run):
    """The session's demo run (tests/conftest.py: default configuration, pose NMS applied) through
    the default tracker and smoother."""
    config = Config.load()
    tracker, smoother = PoseTracker(config.tracking, demo_run.fps), PoseSmoother(config.smoothing)
    tracked, smoothed = [], []
    for poses, t in zip(demo_run.kept, demo_run.times):
        tracked.append(tracker.update(poses, t))
        smoothed.append(smoother(tracked[-1], t))
    return demo_run.kept, tracked, smoothed


def mid_hips(poses) -> np.ndarray:
    return poses.keypoints[:, [11, 12], :2].mean(1)


def people_of(frame_index: int, poses) -> dict[str, np.ndarray]:
    """Rows of the jumper and of the walker in one frame, by the regions described above."""
    h = mid_hips(poses)
    x, y = h[:, 0], h[:, 1]
    # not the ~45-px background person at the shop door (mid-hip ~(1480, 620), tracked too
    # since the default body detector finds her): the jumper and the walker are >= 150 px tall
    tall = (poses.boxes[:, 3] - poses.boxes[:, 1]) >= 150
    jumper = (x >= 600) & (x <= 800) & (y >= 200) & (y <= 330) if frame_index <= 160 else \
        (x > 900) & (y > 500) if frame_index >= 190 else np.zeros(len(h), bool)
    walker = (y >= 600) & (y <= 900) & (x < 600 if frame_index > 180 else True) \
        if 45 <= frame_index <= 199 else np.zeros(len(h), bool)
    return {"jumper": np.flatnonzero(jumper & tall), "walker": np.flatnonzero(walker & tall)}


def test_walker_and_jumper_keep_one_id_each(tracked_clip):
    _, tracked, _ = tracked_clip
    ids = {"jumper": [], "walker": []}
    seen = {"jumper": 0, "walker": 0}
    for i, poses in enumerate(tracked):
        for who, rows in people_of(i, poses).items():
            ids[who] += [int(t) for t in poses.track_ids[rows]]
            seen[who] += len(rows) > 0
    all_ids = sorted({int(t) for p in tracked for t in p.track_ids})
    print(f"\ndemo: {len(all_ids)} track ids produced {all_ids}; jumper ids {sorted(set(ids['jumper']))} "
          f"in {seen['jumper']} frames, walker ids {sorted(set(ids['walker']))} in {seen['walker']} frames")
    assert seen["jumper"] >= 150 and seen["walker"] >= 120  # the labelling found them
    assert len(set(ids["jumper"])) == 1, ids["jumper"]
    assert len(set(ids["walker"])) == 1, ids["walker"]
    assert set(ids["jumper"]) != set(ids["walker"])
    assert all((p.track_ids >= 0).all() for p in tracked)  # every shown person has an id


def test_smoothing_calms_the_walker(tracked_clip):
    """Frame-to-frame keypoint acceleration of the walker drops with the default smoother."""
    _, tracked, smoothed = tracked_clip
    walker_id = None
    raw_xy, smooth_xy = [], []
    for i in range(60, 170):
        rows = people_of(i, tracked[i])["walker"]
        if len(rows) != 1:
            continue
        walker_id = walker_id if walker_id is not None else tracked[i].track_ids[rows[0]]
        j = np.flatnonzero(smoothed[i].track_ids == walker_id)
        raw_xy.append(tracked[i].keypoints[rows[0], :, :2])
        smooth_xy.append(smoothed[i].keypoints[j[0], :, :2])
    raw_xy, smooth_xy = np.array(raw_xy), np.array(smooth_xy)
    acc = lambda a: np.abs(np.diff(a, 2, axis=0)).mean()  # noqa: E731
    reduction = 1 - acc(smooth_xy) / acc(raw_xy)
    print(f"\ndemo walker: mean |acceleration| raw {acc(raw_xy):.2f} px/frame², smoothed {acc(smooth_xy):.2f} "
          f"({reduction:.0%} less)")
    assert len(raw_xy) >= 100
    assert reduction >= 0.2
