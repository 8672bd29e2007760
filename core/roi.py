"""Regions of interest (ROIs) and their tracking across frames.

A ROI is a square in image pixels (pixel centres at integers): centre, side, rotation (radians,
clockwise; 0 = upright person). The SPPE crops one per person (``core.models.sstn.roi_to_affine``).

``RoiTracker`` is BlazePose's detect-then-track scheme, extended to many people. It runs the
detector on the first frame, every ``interval`` frames (unless ``max_persons`` are already
tracked), whenever nobody is tracked, and, after a tracked person is lost, on frames 1, 2, 4, 8, …
after the loss until as many people are tracked again (for at most one interval), looking where
they were lost when the detector can (``detect_near``). On other frames each person's crop
comes from their own previous-frame keypoints. Detections are merged into the carried ROIs:
a detection that is the same person as a tracked one is dropped (tracking keeps the finer,
landmark-derived crop). ``interval`` 1 is plain top-down: nothing is carried over. Interval 8
cost 2.65-2.9× less CPU than detecting on every frame; the default is 6 (figures and method:
docs/roi_tracking.md, docs/model_ladder.md).

Same person (``same_person``): core squares overlapping (IoU > ``nms_iou``), a face on the other's
torso, or OKS ≥ ``DUPLICATE_OKS`` between the poses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.geometry import box_iou
from core.oks import compute_oks

# BlazePose enlarges the square around the alignment circle by this factor before cropping
# (MediaPipe pose_detection_to_roi / pose_landmarks_to_roi: RectTransformation scale 1.25; on the
# demo a crop made this way from a detection gives back, through the landmark model's auxiliary
# points, a ROI of the same side within ~5%).
ROI_SCALE = 1.25
# ROI side for a detector that gives only boxes (HOG), as a multiple of the box height: on the
# demo the landmark model's own next-frame ROI for the person in a HOG box had a side of
# 1.19× the box height (median of 14 boxes, every 10th frame) and the same centre (offset < 3%).
BOX_ROI_SCALE = 1.2
# Half-side, in body radii, of the square around the mid-hip point where no other person's face
# can be: a neighbour standing beside (hips ~0.8 r apart) has their face ~0.8 r above the hips.
TORSO_ZONE = 0.75
DUPLICATE_OKS = 0.7  # two tracked poses this similar are one person
MIN_ROI_SIDE = 8.0  # px; a smaller ROI cannot hold a person the SPPE could read
# Hysteresis on the SPPE's presence: a person carried from the last frame stays while presence >=
# this fraction of ``sppe.min_pose_score`` (a fresh detection needs the full score). On a ~50-px
# person (the demo's background person, frames 96-136) presence swings between 0.2 and 0.95 from
# frame to frame while the keypoints stay put (mean keypoint score 0.65-0.9): with one threshold
# the person was dropped every few frames and, re-detected only after recovery, shown in 0.20 of
# the frames. A crop that has lost its person reads presence < 0.05.
CARRIED_PRESENCE = 0.4


@dataclass(frozen=True)
class Rois:
    """N square ROIs: centres [N, 2] (x, y image px), sides [N] px, rotations [N] radians; float32."""

    centres: np.ndarray
    sides: np.ndarray
    rotations: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "centres", np.asarray(self.centres, np.float32).reshape(-1, 2))
        object.__setattr__(self, "sides", np.asarray(self.sides, np.float32).reshape(-1))
        object.__setattr__(self, "rotations", np.asarray(self.rotations, np.float32).reshape(-1))
        if not len(self.centres) == len(self.sides) == len(self.rotations):
            raise ValueError(f"Rois: {len(self.centres)} centres, {len(self.sides)} sides, "
                             f"{len(self.rotations)} rotations")

    def __len__(self) -> int:
        return len(self.sides)

    @classmethod
    def empty(cls) -> "Rois":
        return cls(np.zeros((0, 2)), np.zeros(0), np.zeros(0))

    def select(self, index) -> "Rois":
        """The ROIs at ``index`` (indices or a boolean mask), in that order."""
        return Rois(self.centres[index], self.sides[index], self.rotations[index])

    def concat(self, other: "Rois") -> "Rois":
        return Rois(np.concatenate([self.centres, other.centres]), np.concatenate([self.sides, other.sides]),
                    np.concatenate([self.rotations, other.rotations]))

    def copy(self) -> "Rois":
        return Rois(self.centres.copy(), self.sides.copy(), self.rotations.copy())

    @property
    def radii(self) -> np.ndarray:
        """Body radius [N] px: the alignment circle the ROI was grown from by ``ROI_SCALE``."""
        return self.sides / (2 * ROI_SCALE)

    def core_boxes(self) -> np.ndarray:
        """[N, 4] x1, y1, x2, y2 core squares (side = body radius, centred at the ROI centre): the
        same person seen twice overlaps strongly there, two people side by side do not."""
        r = self.radii[:, None] / 2
        return np.concatenate([self.centres - r, self.centres + r], 1)

    @classmethod
    def from_alignment_points(cls, centre_points: np.ndarray, scale_points: np.ndarray,
                              scale: float = ROI_SCALE) -> "Rois":
        """BlazePose ROI from two alignment points per person ([N, 2] each, image pixels).

        side = 2·‖scale − centre‖·scale; rotation = 90° − atan2(−dy, dx) (target angle 90°, y down),
        so an upright person (scale point straight above the centre) gets rotation 0.
        """
        c = np.asarray(centre_points, dtype=np.float64).reshape(-1, 2)
        d = np.asarray(scale_points, dtype=np.float64).reshape(-1, 2) - c
        sides = 2.0 * np.hypot(d[:, 0], d[:, 1]) * scale
        rotations = _normalise_angle(np.pi / 2 - np.arctan2(-d[:, 1], d[:, 0]))
        return cls(c, sides, rotations)

    @classmethod
    def from_detections(cls, detections, scale: float = ROI_SCALE) -> "Rois":
        """ROIs of ``core.detection.Detections``.

        With alignment keypoints this is BlazePose's rule (``from_alignment_points`` on points 0
        and 1). Without them (HOG) the ROI is the box's centre, upright, side ``BOX_ROI_SCALE`` ×
        the box's longer side.
        """
        if detections.keypoints is not None:
            return cls.from_alignment_points(detections.keypoints[:, 0], detections.keypoints[:, 1], scale)
        b = detections.boxes
        centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
        sides = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) * BOX_ROI_SCALE
        return cls(centres, sides, np.zeros(len(b)))

    @classmethod
    def from_keypoints(cls, keypoints: np.ndarray, skeleton) -> "Rois":
        """Next-frame ROIs from poses [N, K, 2|3] (image px, ``skeleton``'s layout) for SPPEs
        without alignment points: centre at the hip centre, radius the farthest keypoint from it,
        "up" along hip centre → shoulder centre."""
        names = {n: i for i, n in enumerate(skeleton.names)}
        hips = keypoints[:, [names["left_hip"], names["right_hip"]], :2].mean(1)
        shoulders = keypoints[:, [names["left_shoulder"], names["right_shoulder"]], :2].mean(1)
        radius = np.linalg.norm(keypoints[..., :2] - hips[:, None], axis=-1).max(1)
        up = shoulders - hips
        up /= np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-6)
        return cls.from_alignment_points(hips, hips + up * radius[:, None], ROI_SCALE)


def _normalise_angle(a: np.ndarray) -> np.ndarray:
    return a - 2 * np.pi * np.floor((a + np.pi) / (2 * np.pi))


# ---------------------------------------------------------------------------------- same person


def core_iou(a: Rois, b: Rois) -> np.ndarray:
    """[len(a), len(b)] IoU of the ROIs' core squares."""
    return box_iou(a.core_boxes(), b.core_boxes())


def face_on_torso(faces: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """[M, N]: face n lies within ±TORSO_ZONE·radius_m of person m's mid-hip centre."""
    d = np.abs(faces[None, :, :] - centres[:, None, :]).max(-1)
    return d <= TORSO_ZONE * np.asarray(radii)[:, None]


def same_person(rois: Rois, coco: np.ndarray, areas: np.ndarray, iou_threshold: float) -> np.ndarray:
    """[N, N] bool (not symmetric): poses i and j are one person.

    ``rois`` are the poses' next-frame ROIs, ``coco`` [N, 17, 2|3] their keypoints in COCO-17
    (image px), ``areas`` [N] their box areas (OKS scale). Same person: OKS ≥ DUPLICATE_OKS, core
    squares overlapping (IoU > ``iou_threshold``: the two crops will converge on one body), or
    i's nose on j's torso (a crop that half-saw a person and hallucinated the rest around them).
    """
    gt = np.concatenate([coco[..., :2], np.ones_like(coco[..., :1])], -1)
    same = compute_oks(coco[..., :2], gt, areas) >= DUPLICATE_OKS
    same |= core_iou(rois, rois) > iou_threshold
    same |= face_on_torso(coco[:, 0, :2], rois.centres, rois.radii).T
    return same


def first_of_each_person(same: np.ndarray) -> np.ndarray:
    """Walk rows in order and keep a row unless it is the same person as a kept one (either way)."""
    kept: list[int] = []
    for i in range(len(same)):
        if not any(same[i, j] or same[j, i] for j in kept):
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


# ---------------------------------------------------------------------------------- tracker


class RoiTracker:
    """Decides when to detect and carries each person's ROI to the next frame.

    ``cfg`` is read on every frame (live changes apply): ``interval`` (≥ 1), ``max_persons`` and
    ``nms_iou`` (a ``core.config.DetectorConfig``). Per frame: ``next_rois(detect)`` → crop and
    read the poses → ``update(...)``.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        """Forget tracked ROIs (seek, new source): the next frame runs the detector."""
        self._tracked = Rois.empty()
        self._since_detect = 0
        self._carried = 0  # of this frame's ROIs, the first this many were carried over
        self._frame_rois = Rois.empty()  # this frame's ROIs, as next_rois returned them
        self._known = np.zeros(0, bool)  # of those, the people already tracked (``present``)
        self._recover_left = 0  # frames left in which to look for a lost person
        self._recover_count = 0  # how many people were tracked before the loss
        self._lost = Rois.empty()  # where the people recovery looks for were lost
        self.frames_seen = 0  # frames since the last reset
        self.detector_runs = 0  # of which the detector ran on this many

    @property
    def interval(self) -> int:
        return max(1, int(self.cfg.interval))

    @property
    def tracked(self) -> Rois:
        """The ROIs the next frame will crop without detecting (a copy)."""
        return self._tracked.copy()

    def should_detect(self) -> bool:
        # With max_persons already tracked a periodic detection could add nobody (MediaPipe's
        # one-person behaviour): detect again only when someone is lost.
        full = len(self._tracked) >= max(int(self.cfg.max_persons), 1)
        return (self.interval == 1 or self._recovery_frame() or len(self._tracked) == 0
                or (self._since_detect >= self.interval and not full))

    def _recovery_frame(self) -> bool:
        """Whether this frame looks for a lost person: frames 1, 2, 4, 8, … after the loss, within
        one interval. On the demo the people recovery looked for were mostly a small person
        whose presence flickers (back within the first two) or people who had left the scene
        (not back on the frames after); looking on every frame there cost the demo at full
        resolution ~9 ms per frame (37 recovery runs against 23)."""
        if self._recover_left <= 0:
            return False
        age = self.interval - self._recover_left + 1  # frames since the loss
        return age & (age - 1) == 0

    def next_rois(self, detect: Callable[[], object],
                  detect_near: Callable[[np.ndarray, np.ndarray], object] | None = None,
                  arrived=None) -> Rois:
        """This frame's ROIs: the carried ones first, then (when it is time to detect; ``detect()``
        returns ``Detections``) the detections that are nobody tracked, at most ``max_persons``.

        ``detect_near(centres [M, 2], sides [M])``, when the detector has one, serves the
        recovery runs between scheduled ones: it looks where the lost people were, given how
        large their ROIs were (NanoDet reads the tile around a small person, the full view for a
        large one), and the schedule of full runs goes on undisturbed.

        A detector run through a runner (``core.detection.background``: deferred in file mode,
        on a worker thread in real time) returns None from ``detect``/``detect_near`` (it only
        starts a run) and hands its finished runs in as ``arrived``: detections of an earlier
        frame, merged here like this frame's own. A frame that merges arrivals starts no
        scheduled run (it starts on the next frame: the frame that reads the new people does
        not also pay for a run); recovery runs are not held back."""
        carried = self._tracked if self.interval > 1 else Rois.empty()
        self.frames_seen += 1
        found = None
        focused = (detect_near is not None and self._recovery_frame() and len(self._lost) > 0
                   and len(self._tracked) > 0 and self._since_detect < self.interval)
        if self.should_detect() and (arrived is None or focused):
            self.detector_runs += 1
            if focused:
                found = detect_near(self._lost.centres, self._lost.sides)
                self._since_detect += 1
            else:
                found = detect()
                self._since_detect = 1
        else:
            self._since_detect += 1
        rois = carried
        for detections in (found, arrived):
            if detections is not None:
                rois = self.merge(detections, rois)
        self._carried = len(carried)
        self._frame_rois = rois
        self._known = np.arange(len(rois)) < len(carried)
        if self._recover_left > 0 and len(self._lost) and len(rois) > len(carried):
            # a detection where a tracked person was lost is that person found again
            d = np.abs(rois.centres[len(carried):, None] - self._lost.centres[None]).max(-1)
            self._known[len(carried):] = (d <= self._lost.sides[None] / 2).any(1)
        return rois

    def present(self, presence: np.ndarray, min_score: float) -> np.ndarray:
        """Which of this frame's poses (same order as ``next_rois()`` returned) hold a person:
        presence >= ``min_score``, or >= ``CARRIED_PRESENCE`` × ``min_score`` for the people
        already tracked: the carried ones and, while recovering, detections within half a lost
        ROI of where a person was lost (a fresh box of the same small person can read a presence
        just under the full score; its carried crop had passed the lower one)."""
        threshold = np.full(len(presence), float(min_score), np.float32)
        threshold[self._known[:len(presence)]] *= CARRIED_PRESENCE
        return np.asarray(presence) >= threshold

    def merge(self, detections, carried: Rois) -> Rois:
        """``carried`` plus the detections' ROIs that match no carried person (core IoU > nms_iou,
        or the detection's face on a carried person's torso), without ROIs too small to read."""
        found = Rois.from_detections(detections, ROI_SCALE)
        if len(carried) and len(found):
            known = core_iou(found, carried).max(1) > self.cfg.nms_iou
            if detections.faces is not None:
                known |= face_on_torso(detections.faces, carried.centres, carried.radii).any(0)
            found = found.select(~known)
        rois = carried.concat(found)
        rois = rois.select(rois.sides >= MIN_ROI_SIDE)
        return rois.select(slice(0, max(int(self.cfg.max_persons), 0)))

    def update(self, next_rois: Rois, present: np.ndarray, scores: np.ndarray,
               coco: np.ndarray | None = None, areas: np.ndarray | None = None) -> np.ndarray:
        """Carry the poses read from this frame's ROIs to the next frame; the indices of the poses
        to report, best score first.

        Per pose of this frame (same order as ``next_rois()`` returned): ``next_rois`` its ROI for
        the next frame, ``present`` whether the SPPE found a person, ``scores`` its score, and for
        the duplicate rule ``coco`` [N, 17, 2|3] keypoints and ``areas`` [N] (``same_person``;
        without them only the core-square rule applies). A carried person not present starts
        recovery (``_recovery_frame``); a fresh detection the SPPE finds empty is just dropped
        (re-detecting would find the same false positive again).
        """
        if len(next_rois) == 0:
            self._tracked = Rois.empty()
            return np.zeros(0, np.int64)
        keep = np.flatnonzero(present & (next_rois.sides >= MIN_ROI_SIDE))
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        if len(keep) >= 2:
            kept = next_rois.select(keep)
            if coco is None:
                same = core_iou(kept, kept) > self.cfg.nms_iou
            else:
                same = same_person(kept, coco[keep], areas[keep], self.cfg.nms_iou)
            keep = keep[first_of_each_person(same)]
        self._tracked = next_rois.select(keep)
        # where they were looked for: the ROIs read from a crop without a person are noise
        lost = self._frame_rois.select(np.flatnonzero(~present[:self._carried]))
        if self._recover_left > 0:
            self._recover_left = 0 if len(keep) >= self._recover_count else self._recover_left - 1
            self._lost = self._lost.concat(lost)  # someone else lost meanwhile: look there too
        elif len(lost):
            # a tracked person was lost: look for them (``_recovery_frame``) until as many
            # people are tracked again as before, for at most one detection interval
            self._recover_left = self.interval
            self._recover_count = self._carried
            self._lost = lost
        return keep
