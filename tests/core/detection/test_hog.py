"""OpenCV pedestrian HOG as the second detector, on a real demo frame."""
from __future__ import annotations

import numpy as np

from core.config import DetectorConfig
from core.detection import make_detector


def test_hog_finds_the_standing_man(demo_frames):
    det = make_detector(DetectorConfig(name="hog"))
    assert det.name == "hog"
    found = det(demo_frames[0])
    assert found.keypoints is None and len(found) >= 1
    # the jumping-jacks man stands on the box: head ~y 90, feet ~y 450, hips at x ≈ 650
    b = found.boxes[0]
    assert b[0] < 650 < b[2] and b[1] < 120 and b[3] > 430
    assert 0.5 <= found.scores[0] <= 1.0
    rois = found.rois()
    centres, rotations = rois.centres, rois.rotations
    assert abs(centres[0, 0] - 650) < 60 and rotations[0] == 0.0


def test_hog_max_persons_and_tiny_frames(demo_frames):
    det = make_detector(DetectorConfig(name="hog", max_persons=0))
    assert len(det(demo_frames[0])) == 0
    assert len(make_detector(DetectorConfig(name="hog"))(np.zeros((100, 60, 3), np.uint8))) == 0
