"""Body boxes plus face-anchored detections, duplicates merged (``nanodet+blazepose``).

A body detector (NanoDet) finds people from behind, with covered faces and small in the
distance; BlazePose's detector adds its alignment points (mid-hip centre, body radius and
rotation) which give the landmark model an upright crop on the hips. Each BlazePose detection
whose mid-hip point lies inside a body box, and whose body radius fits that box's height, is the
same person: the pair becomes one detection with BlazePose's alignment and the better score.
Body boxes left alone get synthetic alignment points that reproduce the box ROI rule of
``core.roi.Rois.from_detections`` (centre at the box centre, upright, side ``BOX_ROI_SCALE`` × the box's long
side); BlazePose detections that no body box confirms are kept as they are.
"""
from __future__ import annotations

import numpy as np

from core.detection.detections import Detections
from core.roi import BOX_ROI_SCALE, ROI_SCALE

# A BlazePose body radius (hip to the top of the head's circle) is about half to 0.7 of the
# body's height; these bounds only reject pairings between a child-sized box and an adult circle.
RADIUS_TO_HEIGHT = (0.2, 1.2)


def box_alignment(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alignment points [N, 4, 2] and face points [N, 2] for box-only detections, such that
    ``Rois.from_alignment_points`` gives the box ROI (box centre, upright, side
    ``BOX_ROI_SCALE`` × long side)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
    side = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) * BOX_ROI_SCALE
    radius = side / (2 * ROI_SCALE)
    top = centre - np.stack([np.zeros_like(radius), radius], 1)
    kp = np.stack([centre, top, centre, top], 1)
    face = np.stack([centre[:, 0], b[:, 1] + 0.1 * (b[:, 3] - b[:, 1])], 1)
    return kp.astype(np.float32), face.astype(np.float32)


def merge(body: Detections, face: Detections, max_persons: int) -> Detections:
    """One detection per person from body boxes and BlazePose detections (see module doc)."""
    n_body = len(body)
    kp_body, face_body = box_alignment(body.boxes)
    matched_face = np.full(n_body, -1)
    if len(face) and n_body and face.keypoints is not None:
        hips = face.keypoints[:, 0]
        radius = np.linalg.norm(face.keypoints[:, 1] - face.keypoints[:, 0], axis=1)
        b = body.boxes
        height = (b[:, 3] - b[:, 1])[:, None]
        inside = ((hips[None, :, 0] >= b[:, None, 0]) & (hips[None, :, 0] <= b[:, None, 2])
                  & (hips[None, :, 1] >= b[:, None, 1]) & (hips[None, :, 1] <= b[:, None, 3]))
        ratio = radius[None, :] / np.maximum(height, 1e-6)
        fits = inside & (ratio >= RADIUS_TO_HEIGHT[0]) & (ratio <= RADIUS_TO_HEIGHT[1])
        # distance of each hip point to each box centre, in box heights: the best pair first
        centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
        cost = np.linalg.norm(hips[None] - centre[:, None], axis=2) / np.maximum(height, 1e-6)
        cost = np.where(fits, cost, np.inf)
        used = set()
        for flat in np.argsort(cost, axis=None):
            i, j = np.unravel_index(flat, cost.shape)
            if not np.isfinite(cost[i, j]):
                break
            if matched_face[i] >= 0 or j in used:
                continue
            matched_face[i] = j
            used.add(j)
    boxes, scores, kps, faces = [], [], [], []
    for i in range(n_body):
        j = matched_face[i]
        boxes.append(body.boxes[i])
        if j >= 0:
            scores.append(max(body.scores[i], face.scores[j]))
            kps.append(face.keypoints[j])
            faces.append(face.faces[j] if face.faces is not None else face_body[i])
        else:
            scores.append(body.scores[i])
            kps.append(kp_body[i])
            faces.append(face_body[i])
    taken = set(int(j) for j in matched_face if j >= 0)
    for j in range(len(face)):
        if j in taken:
            continue
        boxes.append(face.boxes[j])
        scores.append(face.scores[j])
        if face.keypoints is not None:
            kps.append(face.keypoints[j])
        else:
            kps.append(box_alignment(face.boxes[j:j + 1])[0][0])
        faces.append(face.faces[j] if face.faces is not None
                     else box_alignment(face.boxes[j:j + 1])[1][0])
    if not boxes:
        return Detections.empty()
    order = np.argsort(-np.asarray(scores), kind="stable")[: max(int(max_persons), 0)]
    return Detections(np.asarray(boxes)[order], np.asarray(scores)[order],
                      np.asarray(kps)[order], np.asarray(faces)[order])


class CombinedDetector:
    """``detector(frame_rgb) -> Detections`` from a body detector and a face-anchored one."""

    def __init__(self, body, face, max_persons: int = 10):
        self.body, self.face, self.max_persons = body, face, max_persons
        self.name = f"{body.name}+{face.name}"

    def __call__(self, frame_rgb: np.ndarray) -> Detections:
        return merge(self.body(frame_rgb), self.face(frame_rgb), self.max_persons)
