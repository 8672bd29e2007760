"""Multi-person tracker: box Kalman prediction + Hungarian assignment on pose/box similarity.

Life cycle of a track:

* **tentative** — created for every detection nothing matched; it already carries a fresh id
  and its pose is output with that id (every shown person has an id). A tentative track that
  misses a single frame is removed.
* **confirmed** — after ``min_hits`` matched frames.
* **lost** — a confirmed track that found no detection; it keeps predicting with its Kalman
  filter and can be matched again (keeping its id) until it has been unseen for longer than
  ``max_age_s``, then it is removed.

Ids are never reused, not even after ``reset()``.

Matching is a cascade: tracks seen in the previous frame are assigned first, lost tracks then
compete for the detections left over, so a long-lost track with a wide uncertainty cannot take
a detection away from a person tracked without a gap. Each stage is one
``scipy.optimize.linear_sum_assignment`` on ``1 - similarity`` with pairs below
``min_similarity`` forbidden (gating). A track's predicted pose is its last observed keypoints
(relative to its box) placed on its Kalman-predicted box.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.config import TrackingConfig
from core.errors import UserError
from core.poses import Poses
from trackers.distances import PoseSet, cost_matrix, make_similarity
from trackers.kalman_box import BoxKalman, xyxy_to_cxcywh

TENTATIVE = "tentative"
CONFIRMED = "confirmed"
LOST = "lost"

_INFEASIBLE = 1e6
_TENTATIVE_MAX_MISSES = 1  # a new track survives one dropped frame before it is confirmed


class Track:
    """One person: box filter, keypoint template, life-cycle counters."""

    __slots__ = ("track_id", "kalman", "template", "template_valid", "hits", "misses", "state",
                 "last_update")

    def __init__(self, track_id: int, box, keypoints_xy, valid, timestamp: float, cfg: TrackingConfig):
        self.track_id = track_id
        self.kalman = BoxKalman(box, cfg.process_noise, cfg.measurement_noise)
        k = len(valid)
        self.template = np.zeros((k, 2))  # keypoints relative to the box centre, in box sizes
        self.template_valid = np.zeros(k, dtype=bool)
        self.hits = 1
        self.misses = 0
        self.state = CONFIRMED if cfg.min_hits <= 1 else TENTATIVE
        self.last_update = timestamp
        self._learn(box, keypoints_xy, valid)

    def _learn(self, box, keypoints_xy, valid) -> None:
        c = xyxy_to_cxcywh(box)
        rel = (keypoints_xy - c[:2]) / c[2:]
        self.template[valid] = rel[valid]
        self.template_valid |= valid

    def update(self, box, keypoints_xy, valid, timestamp: float, min_hits: int) -> None:
        self.kalman.update(box)
        self._learn(box, keypoints_xy, valid)
        self.hits += 1
        self.misses = 0
        self.last_update = timestamp
        if self.state == LOST or (self.state == TENTATIVE and self.hits >= min_hits):
            self.state = CONFIRMED

    def predicted_keypoints(self) -> np.ndarray:
        s = self.kalman.state
        return s[:2] + self.template * s[2:4]


class PoseTracker:
    """``update(poses, timestamp)`` returns a copy of ``poses`` with ``track_ids`` set.

    Every input pose is returned (same order) with an id, tentative ones included. With
    ``cfg.enabled`` false the poses pass through with ids -1. Settings are read from ``cfg`` on
    every call, so live config changes take effect on the next frame.
    """

    def __init__(self, cfg: TrackingConfig, fps: float):
        if not fps or fps <= 0 or not np.isfinite(fps):
            raise UserError(f"tracker needs a positive frame rate, got {fps}")
        self.cfg = cfg
        self.fps = float(fps)
        self._next_id = 0
        self.reset()

    def reset(self) -> None:
        """Forget every track (seek / new source); ids keep counting up."""
        self.tracks: list[Track] = []
        self._last_timestamp: float | None = None
        self._layout: str | None = None

    def update(self, poses: Poses, timestamp: float) -> Poses:
        cfg = self.cfg
        out = poses.copy()
        if not cfg.enabled:
            out.track_ids[:] = -1
            return out
        if cfg.max_age_s < 0 or cfg.min_hits < 1:
            raise UserError("tracking.max_age_s must be >= 0 and tracking.min_hits >= 1")
        if self._layout is not None and poses.layout != self._layout:
            self.tracks = []  # keypoint templates of another layout are meaningless
        self._layout = poses.layout
        timestamp = float(timestamp)
        dt = 1.0 / self.fps
        if self._last_timestamp is not None and timestamp > self._last_timestamp:
            dt = timestamp - self._last_timestamp
        self._last_timestamp = timestamp

        for track in self.tracks:
            track.kalman.predict(dt)

        similarity = make_similarity(cfg.distance, poses.layout, cfg.oks_weight)
        boxes = np.asarray(poses.boxes, dtype=np.float64)
        xy = np.asarray(poses.keypoints[:, :, :2], dtype=np.float64)
        valid = poses.keypoints[:, :, 2] > cfg.keypoint_threshold
        dets = PoseSet(boxes, xy, valid, np.zeros(len(poses)))

        ids = np.full(len(poses), -1, dtype=np.int64)
        matched: set[int] = set()
        for d, track in self._assign(self.tracks, dets, similarity):
            track.update(boxes[d], xy[d], valid[d], timestamp, cfg.min_hits)
            ids[d] = track.track_id
            matched.add(id(track))
        free = np.flatnonzero(ids < 0)

        survivors = []
        for track in self.tracks:
            if id(track) not in matched:
                track.misses += 1
                if track.state == TENTATIVE:
                    if track.misses > _TENTATIVE_MAX_MISSES:
                        continue
                    survivors.append(track)
                    continue
                if track.state != LOST:
                    track.kalman.hold_size()
                track.state = LOST
                if timestamp - track.last_update > cfg.max_age_s:
                    continue
            survivors.append(track)
        for d in free:
            track = Track(self._next_id, boxes[d], xy[d], valid[d], timestamp, cfg)
            self._next_id += 1
            ids[d] = track.track_id
            survivors.append(track)
        self.tracks = survivors
        out.track_ids = ids
        return out

    def _assign(self, tracks: list[Track], dets: PoseSet, similarity) -> list[tuple[int, Track]]:
        """Hungarian assignment of detections to tracks; returns (detection row, track) pairs.

        The gate uses the similarity widened by each track's position uncertainty (so a track
        unseen for a while may still be matched), the cost the similarity against its exact
        prediction (so a precisely predicted track wins over a vague one).
        """
        if not tracks or len(dets.boxes) == 0:
            return []
        predicted = PoseSet(
            np.stack([t.kalman.box for t in tracks]),
            np.stack([t.predicted_keypoints() for t in tracks]),
            np.stack([t.template_valid for t in tracks]),
            np.array([t.kalman.position_variance for t in tracks]),
        )
        plausible = similarity(dets, predicted) >= self.cfg.min_similarity
        fit = similarity(dets, predicted._replace(var=np.zeros(len(tracks))))
        cost = np.where(plausible, cost_matrix(fit), _INFEASIBLE)
        rows, cols = linear_sum_assignment(cost)
        keep = cost[rows, cols] < _INFEASIBLE
        return [(int(r), tracks[c]) for r, c in zip(rows[keep], cols[keep])]

    @property
    def confirmed_ids(self) -> list[int]:
        return [t.track_id for t in self.tracks if t.state == CONFIRMED]
