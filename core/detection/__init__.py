"""Person detectors: BlazePose (SSD anchors, tiling, weighted NMS) and OpenCV's pedestrian HOG.

Every detector is a callable ``detector(frame_rgb uint8 [H, W, 3]) -> Detections`` with a
``name``; ``make_detector(cfg, device)`` builds the one ``cfg.name`` asks for. A detection also
says where the SPPE should look: ``Detections.rois()`` turns it into square, rotated regions of
interest (centre, side, rotation) for the spatial transformer crop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import UserError

# BlazePose enlarges the square around the alignment circle by this factor before cropping
# (MediaPipe pose_detection_to_roi / pose_landmarks_to_roi: RectTransformation scale 1.25; on the
# demo a crop made this way from a detection gives back, through the landmark model's auxiliary
# points, a ROI of the same side within ~5%).
ROI_SCALE = 1.25
# ROI side for a detector that gives only boxes (HOG), as a multiple of the box height: on the
# demo the landmark model's own next-frame ROI for the person in a HOG box had a side of
# 1.19× the box height (median of 14 boxes, every 10th frame) and the same centre (offset < 3%).
BOX_ROI_SCALE = 1.2


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

    def rois(self, scale: float = ROI_SCALE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Square rotated ROIs (centres [N, 2], sides [N], rotations [N] radians, clockwise).

        With alignment keypoints this is BlazePose's rule: centre at the mid-hip point, side twice
        the body radius × ``scale``, rotated so the hip→size-point vector points up. Without them
        (HOG) the ROI is the box's centre, upright, side ``BOX_ROI_SCALE`` × the box height.
        """
        if self.keypoints is not None:
            return alignment_rois(self.keypoints[:, 0], self.keypoints[:, 1], scale)
        b = self.boxes
        centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
        sides = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) * BOX_ROI_SCALE
        return centres.astype(np.float32), sides.astype(np.float32), np.zeros(len(b), np.float32)


def alignment_rois(centre_points: np.ndarray, scale_points: np.ndarray, scale: float = ROI_SCALE):
    """BlazePose ROI from two alignment points per person ([N, 2] each, image pixels).

    side = 2·‖scale − centre‖·scale; rotation = 90° − atan2(−dy, dx) (target angle 90°, y down),
    so an upright person (scale point straight above the centre) gets rotation 0.
    """
    c = np.asarray(centre_points, dtype=np.float64).reshape(-1, 2)
    d = np.asarray(scale_points, dtype=np.float64).reshape(-1, 2) - c
    sides = 2.0 * np.hypot(d[:, 0], d[:, 1]) * scale
    rotations = _normalise_angle(np.pi / 2 - np.arctan2(-d[:, 1], d[:, 0]))
    return c.astype(np.float32), sides.astype(np.float32), rotations.astype(np.float32)


def _normalise_angle(a: np.ndarray) -> np.ndarray:
    return a - 2 * np.pi * np.floor((a + np.pi) / (2 * np.pi))


DETECTORS = ("blazepose", "hog")


def make_detector(cfg, device="cpu", runtime=None):
    """The detector ``cfg.name`` names (``DetectorConfig``), its model on ``device``
    (``runtime``: the ``RuntimeConfig`` choosing backend and precision; defaults if None)."""
    if cfg.name == "blazepose":
        from core.detection.blazepose import BlazePoseDetector

        return BlazePoseDetector(cfg, device, runtime=runtime)
    if cfg.name == "hog":
        from core.detection.hog import HOGDetector

        return HOGDetector(cfg)
    raise UserError(f"unknown detector {cfg.name!r}; choose one of: {', '.join(DETECTORS)}")
