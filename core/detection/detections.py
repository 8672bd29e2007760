"""``Detections``: what every person detector returns (image pixels, pixel centres at integers)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.roi import ROI_SCALE, Rois


@dataclass
class Detections:
    """N person detections in image pixels (pixel centres at integers).

    boxes      [N, 4] float32 x1, y1, x2, y2: the person's extent (BlazePose: the square around
               the alignment circle; HOG: the detection window)
    scores     [N] float32 in [0, 1]
    keypoints  [N, 4, 2] float32 or None: BlazePose alignment points — 0 mid-hip centre,
               1 full-body size/rotation point (its distance from point 0 is the body radius and
               its direction is "up"), 2 mid-shoulder centre, 3 upper-body size/rotation point
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None = None
    faces: np.ndarray | None = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.keypoints is not None:
            kp = np.asarray(self.keypoints, dtype=np.float32)
            self.keypoints = kp.reshape(len(self.boxes), kp.shape[-2] if kp.ndim == 3 else -1, 2)
        if self.faces is not None:
            self.faces = np.asarray(self.faces, dtype=np.float32).reshape(len(self.boxes), 2)

    @classmethod
    def empty(cls, with_keypoints: bool = True) -> "Detections":
        if with_keypoints:
            return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4, 2)), np.zeros((0, 2)))
        return cls(np.zeros((0, 4)), np.zeros(0))

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, index) -> "Detections":
        index = np.asarray(index)
        kp = None if self.keypoints is None else self.keypoints[index]
        faces = None if self.faces is None else self.faces[index]
        return Detections(self.boxes[index], self.scores[index], kp, faces)

    def rois(self, scale: float = ROI_SCALE) -> Rois:
        """Where the SPPE should look: square rotated ROIs (``core.roi.Rois.from_detections``)."""
        return Rois.from_detections(self, scale)
