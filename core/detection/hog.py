"""OpenCV's pedestrian HOG detector (Dalal–Triggs default people SVM) as a second real detector.

It only finds people at least one 64×128 window tall (about 96 px of person), searches by
shrinking the image, and its cost grows with the pixel count, so the frame is first resized to
``WORK_WIDTH`` (measured on the demo, 1768×994: ~150 ms a frame at 640 px on one core, ~470 ms
at 960 px, which also added a false positive on the louvred box).
"""
from __future__ import annotations

import cv2
import numpy as np

from core.detection.detections import Detections

WORK_WIDTH = 640
WIN_STRIDE = (8, 8)
PADDING = (16, 16)
PYRAMID_SCALE = 1.05


class HOGDetector:
    """``detector(frame_rgb) -> Detections`` (boxes and scores; no alignment keypoints).

    The score is the logistic of the SVM margin, so ``score_threshold`` 0.5 keeps every window
    the SVM accepts (margin ≥ 0) and higher thresholds demand a larger margin.
    """

    name = "hog"

    def __init__(self, cfg):
        self.cfg = cfg
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frame_rgb: np.ndarray) -> Detections:
        frame_rgb = np.asarray(frame_rgb)
        h, w = frame_rgb.shape[:2]
        s = min(1.0, WORK_WIDTH / w)
        image = frame_rgb if s == 1.0 else cv2.resize(frame_rgb, (max(1, round(w * s)), max(1, round(h * s))),
                                                      interpolation=cv2.INTER_AREA)
        if min(image.shape[:2]) < 128:
            return Detections.empty(with_keypoints=False)
        rects, margins = self.hog.detectMultiScale(image, winStride=WIN_STRIDE, padding=PADDING,
                                                   scale=PYRAMID_SCALE)
        if len(rects) == 0:
            return Detections.empty(with_keypoints=False)
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        scores = 1.0 / (1.0 + np.exp(-np.asarray(margins, dtype=np.float64).reshape(-1)))
        sx, sy = image.shape[1] / w, image.shape[0] / h
        # resized continuous coordinates → original pixel centres
        x1 = rects[:, 0] / sx - 0.5
        y1 = rects[:, 1] / sy - 0.5
        boxes = np.stack([x1, y1, x1 + rects[:, 2] / sx, y1 + rects[:, 3] / sy], 1)
        keep = scores >= self.cfg.score_threshold
        boxes, scores = boxes[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")[: max(int(self.cfg.max_persons), 0)]
        return Detections(boxes[order], scores[order], None)
