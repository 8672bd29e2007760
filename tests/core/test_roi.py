"""ROI set and ROI tracker on synthetic scenes (no models).

A scene is a list of people per frame (mid-hip x, y; body radius R). The stand-in detector returns
BlazePose-style detections of the people it sees; the stand-in SPPE finds the person whose mid-hip
lies in a ROI's core square and returns that person's exact next-frame ROI and COCO pose.
"""
from __future__ import annotations

import numpy as np
import pytest

from core.config import DetectorConfig
from core.detection import Detections
from core.roi import (DUPLICATE_OKS, MIN_ROI_SIDE, ROI_SCALE, RoiTracker, Rois, core_iou, face_on_torso,
                      first_of_each_person, same_person)
from core.skeleton import COCO17, get_skeleton

R = 100.0  # body radius px
# COCO-17 pose of an upright person, in body radii from the mid-hip point (x right, y down)
TEMPLATE = np.array([[0, -1.6], [-.1, -1.7], [.1, -1.7], [-.2, -1.65], [.2, -1.65], [-.4, -1.2], [.4, -1.2],
                     [-.5, -.6], [.5, -.6], [-.5, -.1], [.5, -.1], [-.2, 0], [.2, 0], [-.2, .8], [.2, .8],
                     [-.2, 1.6], [.2, 1.6]])


def detections(people) -> Detections:
    """BlazePose-style detections: alignment points (hip, size point above it), face above."""
    if not people:
        return Detections.empty()
    hips = np.asarray(people, np.float64).reshape(-1, 2)
    up = hips - [0, R]
    kp = np.stack([hips, up, hips - [0, R / 2], up], 1)
    boxes = np.concatenate([hips - R, hips + R], 1)
    return Detections(boxes, np.full(len(hips), 0.9), kp, hips - [0, 1.6 * R])


def pose(hip) -> np.ndarray:
    xy = np.asarray(hip, np.float64) + TEMPLATE * R
    return np.concatenate([xy, np.ones((17, 1))], 1)


class Scene:
    """Runs a tracker over frames of people; records detector runs and the tracked count per frame."""

    def __init__(self, near: bool = False, **cfg):
        self.cfg = DetectorConfig(**cfg)
        self.tracker = RoiTracker(self.cfg)
        self.detected, self.tracked, self.reported = [], [], []
        self.near = near  # the detector has detect_near (recovery runs look where people were lost)
        self.kinds, self.near_centres = [], []  # per frame "full" | "near" | "-"; centres asked for
        self.near_sides = []

    def frame(self, people, missed=(), unseen=()):
        """``missed``: people the SPPE fails to find this frame; ``unseen``: the detector's."""
        ran = []

        def seen():
            return detections([p for i, p in enumerate(people) if i not in unseen])

        def near(centres, sides):
            self.near_centres.append(np.asarray(centres).copy())
            self.near_sides.append(np.asarray(sides).copy())
            return ran.append("near") or seen()
        rois = self.tracker.next_rois(lambda: ran.append("full") or seen(), near if self.near else None)
        self.detected.append(bool(ran))
        self.kinds.append(ran[0] if ran else "-")
        hips = np.asarray(people, np.float64).reshape(-1, 2)
        present = np.zeros(len(rois), bool)
        next_rois, coco = [], []
        for i in range(len(rois)):
            d = np.abs(hips - rois.centres[i]).max(1) if len(hips) else np.zeros(0)
            j = int(d.argmin()) if len(d) else -1
            found = j >= 0 and d[j] <= rois.radii[i] / 2 and j not in missed
            present[i] = found
            hip = hips[j] if found else rois.centres[i]
            next_rois.append(Rois.from_alignment_points(hip[None], (hip - [0, R])[None]))
            coco.append(pose(hip))
        nxt = next_rois[0] if next_rois else Rois.empty()
        for r in next_rois[1:]:
            nxt = nxt.concat(r)
        scores = 0.9 - 0.01 * np.arange(len(rois))
        keep = self.tracker.update(nxt, present, scores, np.asarray(coco).reshape(-1, 17, 3),
                                   np.full(len(rois), (2 * R) ** 2))
        self.tracked.append(len(self.tracker.tracked))
        self.reported.append(keep)
        return keep


# ---------------------------------------------------------------------------------- Rois


def test_rois_select_concat_and_core_boxes():
    a = Rois([[10, 20], [30, 40]], [250, 500], [0.0, 0.5])
    b = Rois([[50, 60]], [125], [1.0])
    both = a.concat(b)
    assert len(both) == 3 and both.centres.dtype == np.float32
    np.testing.assert_array_equal(both.select([2, 0]).sides, [125, 250])
    np.testing.assert_array_equal(both.select(both.sides > 200).centres, [[10, 20], [30, 40]])
    # core square: side = body radius = side / (2 · ROI_SCALE)
    np.testing.assert_allclose(a.core_boxes()[0], [10 - 50, 20 - 50, 10 + 50, 20 + 50])
    assert len(Rois.empty()) == 0 and Rois.empty().core_boxes().shape == (0, 4)
    with pytest.raises(ValueError, match="2 centres"):
        Rois([[0, 0], [1, 1]], [1], [0])


@pytest.mark.parametrize("scale_point, rotation", [
    ((100, 100), 0.0),  # size point above the hips: upright
    ((200, 200), np.pi / 2),  # to the right: lying, rotated a quarter turn clockwise
    ((100, 300), -np.pi),  # below: upside down
])
def test_from_alignment_points(scale_point, rotation):
    r = Rois.from_alignment_points(np.array([[100.0, 200.0]]), np.array([scale_point], np.float64), 1.25)
    np.testing.assert_allclose(r.sides, [250.0])
    np.testing.assert_allclose(r.rotations, [rotation], atol=1e-6)
    np.testing.assert_allclose(r.centres, [[100, 200]])


def test_from_detections_with_and_without_alignment_points():
    with_points = Rois.from_detections(detections([(300, 400)]))
    np.testing.assert_allclose(with_points.centres, [[300, 400]])
    np.testing.assert_allclose(with_points.sides, [2 * R * ROI_SCALE])
    boxes_only = Rois.from_detections(Detections(np.array([[10, 20, 110, 220]]), np.array([0.9])))
    np.testing.assert_allclose(boxes_only.centres, [[60, 120]])
    np.testing.assert_allclose(boxes_only.sides, [200 * 1.2])
    assert boxes_only.rotations[0] == 0.0


@pytest.mark.parametrize("angle", [0.0, 0.4, -1.2])
def test_from_keypoints_follows_the_hip_to_shoulder_direction(angle):
    c, s = np.cos(angle), np.sin(angle)
    rotated = TEMPLATE @ np.array([[c, s], [-s, c]])  # clockwise on screen by ``angle``
    kp = np.concatenate([500 + rotated * R, np.ones((17, 1))], 1)[None]
    r = Rois.from_keypoints(kp, get_skeleton(COCO17))
    np.testing.assert_allclose(r.centres, [[500, 500]], atol=1e-3)
    np.testing.assert_allclose(r.rotations, [angle], atol=1e-5)
    radius = np.linalg.norm(TEMPLATE, axis=1).max() * R  # the farthest keypoint from the hips
    np.testing.assert_allclose(r.sides, [2 * radius * ROI_SCALE], rtol=1e-5)


# ---------------------------------------------------------------------------------- same person


def test_same_person_rules():
    rois = Rois.from_detections(detections([(100, 500), (130, 500), (600, 500), (1100, 500)]))
    coco = np.stack([pose((100, 500)), pose((130, 500)), pose((600, 500)), pose((1100, 500))])
    coco[3] = pose((1500, 500))  # ROI 3 far from the others, its pose too: distinct
    same = same_person(rois, coco, np.full(4, (2 * R) ** 2), 0.3)
    assert same[0, 1] and same[1, 0]  # core squares overlap (and the poses nearly coincide)
    assert not same[0, 2] and not same[2, 3] and not same[0, 3]
    # identical poses in far-apart ROIs: OKS 1
    same = same_person(rois.select([0, 3]), np.stack([pose((100, 500))] * 2), np.full(2, 4 * R * R), 0.3)
    assert same[0, 1] and DUPLICATE_OKS < 1
    # a nose on the other's torso
    on = face_on_torso(np.array([[100.0, 450.0], [100.0, 300.0]]), np.array([[100.0, 500.0]]), np.array([R]))
    assert on.tolist() == [[True, False]]
    assert first_of_each_person(np.array([[0, 1, 0], [0, 0, 0], [0, 1, 0]], bool)).tolist() == [0, 2]


def test_core_iou():
    a = Rois([[0, 0]], [2 * R * ROI_SCALE], [0])
    assert core_iou(a, a)[0, 0] == pytest.approx(1.0)
    shifted = Rois([[R / 2, 0]], [2 * R * ROI_SCALE], [0])
    assert core_iou(a, shifted)[0, 0] == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------- tracker


@pytest.mark.parametrize("interval, max_persons, expected_runs", [
    (1, 10, 17),  # plain top-down
    (2, 10, 9),  # frames 1, 3, ..., 17
    (4, 10, 5),
    (8, 10, 3),  # frames 1, 9, 17
    (16, 10, 2),
    (2, 1, 1),  # max_persons tracked: nobody could be added, detect only when someone is lost
    (2, 2, 1),
    (2, 3, 9),
])
def test_detection_interval_and_max_persons(interval, max_persons, expected_runs):
    scene = Scene(interval=interval, max_persons=max_persons)
    for _ in range(17):
        assert len(scene.frame([(200, 500), (800, 500)])) == min(2, max_persons)
    assert sum(scene.detected) == expected_runs
    assert scene.tracker.detector_runs == expected_runs and scene.tracker.frames_seen == 17


def test_interval_one_carries_nothing_over():
    scene = Scene(interval=1)
    scene.frame([(200, 500)])
    assert len(scene.tracker.tracked) == 1
    rois = scene.tracker.next_rois(lambda: detections([]))
    assert len(rois) == 0  # the detector alone decides


def test_person_enters_and_waits_for_the_next_detection():
    scene = Scene(interval=4)
    for t in range(9):
        scene.frame([(200, 500)] + ([(800, 500)] if t >= 2 else []))
    assert scene.detected == [True, False, False, False, True, False, False, False, True]
    assert scene.tracked == [1, 1, 1, 1, 2, 2, 2, 2, 2]


def test_person_leaves_then_recovery_backs_off_until_the_interval_ends():
    scene = Scene(interval=4)
    for t in range(10):
        scene.frame([(200, 500)] + ([(800, 500)] if t < 2 else []))
    assert scene.tracked == [2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    # frame 2 loses her: look for 2 people on frames 1, 2 and 4 after the loss (3, 4, 6) within
    # one interval, then periodic from the last run
    assert scene.detected == [True, False, False, True, True, False, True, False, False, False]


def test_recovery_runs_look_near_the_lost_person_and_keep_the_full_schedule():
    """With a detector that can look near points, recovery runs between scheduled runs ask for
    the place the person was lost; the scheduled full runs keep their interval."""
    scene = Scene(near=True, interval=4)
    for t in range(10):
        scene.frame([(200, 500)] + ([(800, 500)] if t < 2 else []))
    assert scene.kinds == ["full", "-", "-", "near", "full", "-", "near", "-", "full", "-"]
    assert all(np.allclose(c, [[800, 500]]) for c in scene.near_centres)
    assert all(np.allclose(s, [2 * R * ROI_SCALE]) for s in scene.near_sides)  # and how large


def test_a_second_person_lost_during_recovery_is_looked_for_too():
    """Recovery started for one lost person also looks where another is lost meanwhile."""
    scene = Scene(near=True, interval=8)
    people = [(200, 500), (800, 500), (1400, 500)]
    for t in range(5):
        missed = {2: (1,), 3: (1, 2)}.get(t, (1, 2) if t > 3 else ())
        scene.frame(people, missed=missed, unseen=(1, 2) if t >= 2 else ())
    assert scene.kinds == ["full", "-", "-", "near", "near"]
    assert np.allclose(scene.near_centres[0], [[800, 500]])
    assert np.allclose(np.sort(scene.near_centres[1], 0), [[800, 500], [1400, 500]])


def test_recovery_looks_where_the_lost_person_was_looked_for():
    """The place of loss is the ROI the empty crop was cut from, not the ROI read from it (a
    crop without a person gives noise there)."""
    tracker = RoiTracker(DetectorConfig(interval=8))
    rois = tracker.next_rois(lambda: detections([(200, 500), (800, 500)]))
    tracker.update(rois, np.array([True, True]), np.array([0.9, 0.8]))
    rois = tracker.next_rois(lambda: None)  # both carried
    asked = []
    noise = Rois.from_alignment_points(np.array([[200, 500], [100, 900]], float),
                                       np.array([[200, 500 - R], [100, 900 - 3 * R]], float))
    tracker.update(noise, np.array([True, False]), np.array([0.9, 0.1]))
    tracker.next_rois(lambda: None, lambda c, s: asked.append((c, s)))
    (centres, sides), = asked
    np.testing.assert_allclose(centres, rois.centres[1:])
    np.testing.assert_allclose(sides, rois.sides[1:])


def test_a_person_found_again_where_they_were_lost_keeps_the_carried_threshold():
    """While recovering, a detection within half a lost ROI of the place of loss is the lost
    person again: it needs only the carried presence; a detection elsewhere the full score."""
    from core.roi import CARRIED_PRESENCE

    tracker = RoiTracker(DetectorConfig(interval=8))
    rois = tracker.next_rois(lambda: detections([(200, 500), (800, 500)]))
    tracker.update(rois, np.array([True, True]), np.array([0.9, 0.8]))
    rois = tracker.next_rois(lambda: None)  # both carried
    tracker.update(rois, np.array([True, False]), np.array([0.9, 0.1]))  # (800, 500) lost
    low = 0.5 * CARRIED_PRESENCE + 0.01
    rois = tracker.next_rois(lambda: detections([(810, 505), (1500, 500)]))
    assert len(rois) == 3
    assert tracker.present(np.array([low, low, low]), 0.5).tolist() == [True, True, False]


def test_lost_person_is_recovered_by_the_next_detection():
    scene = Scene(interval=8)
    people = [(200, 500), (800, 500)]
    for t in range(6):
        scene.frame(people, missed=(1,) if t == 2 else ())
    assert scene.tracked == [2, 2, 1, 2, 2, 2]
    assert scene.detected == [True, False, False, True, False, False]  # recovered at once: stop


def test_empty_fresh_detection_is_dropped_without_recovery():
    scene = Scene(interval=8)
    scene.frame([(200, 500), (800, 500)], missed=(1,))  # false positive for the SPPE
    assert scene.tracked == [1]
    for _ in range(3):
        scene.frame([(200, 500), (800, 500)], missed=(1,))
    assert scene.detected == [True, False, False, False]


def test_nobody_tracked_detects_every_frame():
    scene = Scene(interval=8)
    for _ in range(3):
        scene.frame([])
    assert scene.detected == [True, True, True] and scene.tracked == [0, 0, 0]
    scene.frame([(200, 500)])
    scene.frame([(200, 500)])
    assert scene.detected[3:] == [True, False]


def test_detections_of_tracked_people_are_not_added_twice():
    scene = Scene(interval=2)
    scene.frame([(200, 500)])
    scene.frame([(210, 500)])
    rois = scene.tracker.next_rois(lambda: detections([(215, 505), (800, 500)]))
    assert len(rois) == 2  # the tracked one (carried first) and the newcomer
    np.testing.assert_allclose(rois.centres, [[210, 500], [800, 500]])


def test_detection_with_face_on_a_tracked_torso_is_the_same_person():
    tracker = RoiTracker(DetectorConfig(interval=2))
    carried = Rois.from_detections(detections([(500, 500)]))
    beside = detections([(650, 500)])  # core squares apart...
    assert len(tracker.merge(beside, carried)) == 2
    beside.faces[:] = [[520, 480]]  # ...but its face on the tracked person's torso
    assert len(tracker.merge(beside, carried)) == 1


def test_merge_caps_max_persons_and_drops_tiny_rois():
    tracker = RoiTracker(DetectorConfig(max_persons=2))
    many = detections([(200, 500), (600, 500), (1000, 500)])
    assert len(tracker.merge(many, Rois.empty())) == 2
    tiny = Detections(np.zeros((1, 4)), [0.9], np.array([[[0, 0], [0, -MIN_ROI_SIDE / 4], [0, 0], [0, 0]]]))
    assert len(tracker.merge(tiny, Rois.empty())) == 0


def test_duplicate_poses_are_reported_and_tracked_once():
    """Two crops converging on one person: the better-scored pose is kept."""
    tracker = RoiTracker(DetectorConfig(interval=8))
    rois = tracker.next_rois(lambda: detections([(200, 500), (800, 500)]))
    both_on_one = Rois.from_detections(detections([(200, 500), (205, 500)]))
    coco = np.stack([pose((200, 500)), pose((205, 500))])
    keep = tracker.update(both_on_one, np.ones(2, bool), np.array([0.5, 0.8]), coco, np.full(2, 4 * R * R))
    assert keep.tolist() == [1] and len(rois) == 2
    np.testing.assert_allclose(tracker.tracked.centres, [[205, 500]])


def test_reset_forgets_everything():
    scene = Scene(interval=8)
    scene.frame([(200, 500)])
    scene.tracker.reset()
    assert len(scene.tracker.tracked) == 0 and scene.tracker.frames_seen == 0 == scene.tracker.detector_runs
    scene.frame([(200, 500)])
    assert scene.detected == [True, True]


def test_live_interval_change_applies_on_the_next_frame():
    scene = Scene(interval=8)
    for _ in range(3):
        scene.frame([(200, 500)])
    scene.cfg.interval = 1
    scene.frame([(200, 500)])
    assert scene.detected == [True, False, False, True]


def test_carried_people_need_less_presence_than_fresh_detections():
    """Presence hysteresis: on a detector frame the carried ROIs come first and are kept at
    ``CARRIED_PRESENCE`` × min score; the fresh ones need the full score."""
    from core.roi import CARRIED_PRESENCE

    tracker = RoiTracker(DetectorConfig(interval=8))
    rois = tracker.next_rois(lambda: detections([(200, 500)]))
    assert len(rois) == 1
    assert tracker.present(np.array([0.45]), 0.5).tolist() == [False]  # fresh: full score
    tracker.update(rois, np.array([True]), np.array([0.9]))
    rois = tracker.next_rois(lambda: detections([(200, 500), (800, 500)]))  # carried only
    low = 0.5 * CARRIED_PRESENCE
    assert tracker.present(np.array([low + 0.01]), 0.5).tolist() == [True]
    assert tracker.present(np.array([low - 0.01]), 0.5).tolist() == [False]
    for _ in range(7):
        tracker.update(rois, np.array([True]), np.array([0.9]))
        rois = tracker.next_rois(lambda: detections([(200, 500), (800, 500)]))
    assert len(rois) == 2  # detector frame: carried first, then the fresh one
    assert tracker.present(np.array([0.45, 0.45]), 0.5).tolist() == [True, False]


def test_runs_start_without_results_and_merge_when_they_arrive():
    """A deferred or background runner: ``detect`` only starts a run (returns None); its people
    join as ``arrived`` on a later frame, the schedule counts the start as the run, and a frame
    that merges arrivals starts no run (a due one starts on the next frame)."""
    tracker = RoiTracker(DetectorConfig(interval=4))
    started = []
    rois = tracker.next_rois(lambda: started.append(0))  # nobody tracked: a run starts
    assert started == [0] and len(rois) == 0
    tracker.update(rois, np.zeros(0, bool), np.zeros(0))
    rois = tracker.next_rois(lambda: started.append(1), arrived=detections([(200, 500), (800, 500)]))
    assert started == [0] and len(rois) == 2  # nobody tracked, but two arrive: read them first
    present = np.ones(2, bool)
    next_rois = Rois.from_alignment_points(np.array([[200, 500], [800, 500]], float),
                                           np.array([[200, 500 - R], [800, 500 - R]], float))
    tracker.update(next_rois, present, np.array([0.9, 0.8]))
    for frame in range(2, 4):  # carried, runs not due yet
        rois = tracker.next_rois(lambda: started.append(frame))
        tracker.update(next_rois, present, np.array([0.9, 0.8]))
    rois = tracker.next_rois(lambda: started.append(4), arrived=detections([(200, 500)]))
    assert started == [0] and len(rois) == 2  # due, but an arrival: not added twice, no run
    tracker.update(next_rois, present, np.array([0.9, 0.8]))
    rois = tracker.next_rois(lambda: started.append(5))
    assert started == [0, 5] and len(rois) == 2  # the due run starts on the next frame
