"""BlazePose detector on real demo frames (our torch port of the fetched model).

People in the demo (1768×994), located on the video itself: the jumping-jacks man stands on the
louvred box with his mid-hip point near (640, 260) for frames 0–160; the walker crosses at ground
level right to left (mid-hip y ≈ 700–770) from frame ~40 to ~200, e.g. near (1485, 760) at
frame 50. In the 224-px full view they are ~45 px tall, which is why tiling exists.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import DetectorConfig
from core.detection import Detections, make_detector
from core.detection.blazepose import BlazePoseDetector
from core.errors import UserError

JUMPER_HIP_FRAME0 = (654, 265)
WALKER_HIP_FRAME50 = (1484, 762)


@pytest.fixture(scope="module")
def detectors(blazepose_models):
    return {tiling: make_detector(DetectorConfig(name="blazepose", tiling=tiling), "cpu") for tiling in (False, True)}


@pytest.fixture(scope="module")
def counts(detectors, demo_frames):
    """Number of detections on every 20th frame, full view only vs tiled (bench_roi_tracking.py
    measures the whole clip)."""
    sample = [f for i, f in demo_frames.items() if i % 20 == 0]
    return {tiling: np.array([len(det(f)) for f in sample]) for tiling, det in detectors.items()}


def near(det: Detections, point, tol: float) -> bool:
    return bool(len(det)) and np.linalg.norm(det.keypoints[:, 0] - point, axis=1).min() < tol


def test_tiled_detection_finds_both_people(detectors, demo_frames):
    det0 = detectors[True](demo_frames[0])
    assert near(det0, JUMPER_HIP_FRAME0, 30)
    det50 = detectors[True](demo_frames[50])
    assert near(det50, WALKER_HIP_FRAME50, 30) and near(det50, (640, 240), 40)


def test_detection_geometry_on_standing_person(detectors, demo_frames):
    det = detectors[True](demo_frames[0])
    i = np.linalg.norm(det.keypoints[:, 0] - JUMPER_HIP_FRAME0, axis=1).argmin()
    rois = det.select([i]).rois()
    sides, rotations = rois.sides, rois.rotations
    assert abs(np.degrees(rotations[0])) < 15  # upright
    # he is ~360 px tall (head ~90, feet ~450): the ROI must hold him, and not be huge
    assert 400 < sides[0] < 700
    top = det.keypoints[i, 1]
    assert top[1] < det.keypoints[i, 0, 1] - 150  # size point above the hips (target angle 90°)
    assert 0.5 <= det.scores[i] <= 1.0
    assert det.faces[i, 1] < det.keypoints[i, 0, 1]  # face above the hips


def test_tiling_finds_more_people_than_the_full_view(counts):
    full, tiled = counts[False], counts[True]
    assert (tiled >= 1).mean() >= 0.95
    assert (tiled >= 2).mean() > (full >= 2).mean() + 0.3
    assert tiled.mean() > full.mean()


def test_all_views_run_in_one_batch(detectors, demo_frames):
    det = detectors[True]
    frame = demo_frames[50]
    views = det.views(*frame.shape[:2])
    assert len(views) == 9
    calls = []
    handle = det.model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        det(frame)
    finally:
        handle.remove()
    assert calls == [9]


@pytest.mark.parametrize("overrides, check", [
    ({"max_persons": 1}, lambda n: n == 1),
    ({"score_threshold": 0.999}, lambda n: n == 0),
])
def test_threshold_and_max_persons(detectors, demo_frames, overrides, check):
    base = detectors[True]
    det = BlazePoseDetector(DetectorConfig(**overrides), "cpu", model=base.model)
    assert check(len(det(demo_frames[50])))


def test_empty_frame_gives_no_detection(detectors):
    black = np.zeros((480, 640, 3), np.uint8)
    det = detectors[True](black)
    assert len(det) == 0 and det.keypoints.shape == (0, 4, 2)


def test_unknown_detector_is_a_user_error():
    with pytest.raises(UserError, match="unknown detector"):
        make_detector(DetectorConfig(name="yolo"), torch.device("cpu"))
