"""Multi-person tracker: box Kalman prediction + Hungarian assignment on pose/box similarity.

Life cycle of a track:

* **tentative** — created for every detection no track took; it already carries a fresh id and
  its pose is output with that id (every shown person has an id). A tentative track that misses
  two frames in a row is removed (one dropped frame is forgiven).
* **confirmed** — after ``min_hits`` matched frames.
* **lost** — a confirmed track that found no detection; it coasts on its Kalman prediction (its
  size frozen) and is matched again, keeping its id, until it has been unseen for longer than
  ``max_age_s``; then it is removed.

Ids are never reused, not even after ``reset()``.

Assignment is one ``scipy.optimize.linear_sum_assignment`` over all tracks. A pair is allowed
(gating) when its similarity, widened by the track's position uncertainty, reaches
``min_similarity``; its cost is ``1 - similarity`` against the exact prediction, so a precisely
predicted track wins over a long-lost vague one, while the vague one can still take a detection
nobody else explains. A track's predicted pose is its last observed keypoints (relative to its
box) placed on its Kalman-predicted box.

Recovery: a lost track that still found nothing may take a leftover detection of similar box
extent lying within ``recovery_speed`` body sizes per second of unseen time from where it was
last seen or predicted (a jump, a turn or a stop behind an occluder defeats constant velocity;
on the demo video this keeps the id of the man who flips off the box, unseen for 0.6 s). Its
Kalman filter restarts at the new place.

All per-track state is held in arrays aligned with the track order, so a frame costs a few
vectorised operations whatever the number of people.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.config import TrackingConfig
from core.errors import UserError
from core.poses import Poses
from trackers import kalman_box as kb
from trackers.distances import PoseSet, cost_matrix, make_similarity

log = logging.getLogger("rmpe.tracker")

DEFAULT_FPS = 30.0
TENTATIVE, CONFIRMED, LOST = 0, 1, 2
STATE_NAMES = {TENTATIVE: "tentative", CONFIRMED: "confirmed", LOST: "lost"}

_INFEASIBLE = 1e6
_TENTATIVE_MAX_MISSES = 1  # a new track survives one dropped frame before it is confirmed
_RECOVERY_SIZE_RATIO = 1.25  # recovery: box extent within this factor of the extents the track had


class PoseTracker:
    """``update(poses, timestamp)`` returns a copy of ``poses`` with ``track_ids`` set.

    Every input pose is returned (same order) with an id, tentative ones included. With
    ``cfg.enabled`` false the poses pass through with ids -1. Settings are read from ``cfg`` on
    every call, so live config changes take effect on the next frame.
    """

    def __init__(self, cfg: TrackingConfig, fps: float):
        # fps only sets the time step when timestamps do not advance; sources that cannot tell
        # their rate (some cameras report 0) get a common default instead of an error.
        if fps is None or not np.isfinite(fps) or fps <= 0:
            log.warning("tracker: source frame rate %r unusable, assuming %g fps", fps, DEFAULT_FPS)
            fps = DEFAULT_FPS
        self.cfg = cfg
        self.fps = float(fps)
        self._next_id = 0
        self.reset()

    def reset(self) -> None:
        """Forget every track (seek / new source); ids keep counting up."""
        self._last_timestamp: float | None = None
        self._layout: str | None = None
        self._similarity = None
        self._similarity_key = None
        self._clear(0)

    def _clear(self, k: int) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.states = np.zeros(0, dtype=np.int8)
        self.hits = np.zeros(0, dtype=np.int64)
        self.misses = np.zeros(0, dtype=np.int64)
        self.last_update = np.zeros(0)
        self.last_box = np.zeros((0, 4))  # box of the last matched detection
        self.size_range = np.zeros((0, 2))  # smallest and largest box extent max(w, h) seen
        self.x, self.p = np.zeros((0, 8)), np.zeros((0, 8, 8))
        self.template = np.zeros((0, k, 2))  # keypoints relative to the box centre, in box sizes
        self.template_valid = np.zeros((0, k), dtype=bool)

    def track_states(self) -> dict[int, str]:
        """{track id: 'tentative' | 'confirmed' | 'lost'} of the tracks alive now."""
        return {int(i): STATE_NAMES[int(s)] for i, s in zip(self.ids, self.states)}

    def _check(self) -> None:
        cfg = self.cfg
        if cfg.max_age_s < 0 or cfg.min_hits < 1:
            raise UserError("tracking.max_age_s must be >= 0 and tracking.min_hits >= 1")
        if not 0 <= cfg.min_similarity <= 1:
            raise UserError(f"tracking.min_similarity must lie in [0, 1], got {cfg.min_similarity}")
        if cfg.process_noise <= 0 or cfg.measurement_noise <= 0:
            raise UserError("tracking.process_noise and tracking.measurement_noise must be > 0")

    def update(self, poses: Poses, timestamp: float) -> Poses:
        cfg = self.cfg
        out = poses.copy()
        if not cfg.enabled:
            out.track_ids[:] = -1
            return out
        self._check()
        key = (cfg.distance, poses.layout, cfg.oks_weight)
        if key != self._similarity_key:
            self._similarity = make_similarity(*key)
            self._similarity_key = key
        if poses.layout != self._layout:
            self._clear(poses.num_keypoints)  # keypoint templates of another layout are meaningless
            self._layout = poses.layout
        timestamp = float(timestamp)
        dt = 1.0 / self.fps
        if self._last_timestamp is not None and timestamp > self._last_timestamp:
            dt = timestamp - self._last_timestamp
        self._last_timestamp = timestamp

        self.x, self.p = kb.predict(self.x, self.p, dt, cfg.process_noise)
        boxes = np.asarray(poses.boxes, dtype=np.float64)
        xy = np.asarray(poses.keypoints[:, :, :2], dtype=np.float64)
        valid = poses.keypoints[:, :, 2] > cfg.keypoint_threshold
        rows, cols = self._assign(PoseSet(boxes, xy, valid, np.zeros(len(poses))))
        r_rows, r_cols = self._recover(boxes, rows, cols, timestamp)
        if len(r_cols):  # the motion model failed them: restart their filters at the new place
            self.x[r_cols], self.p[r_cols] = kb.initiate(boxes[r_rows], cfg.measurement_noise)
            rows, cols = np.concatenate([rows, r_rows]), np.concatenate([cols, r_cols])

        ids = np.full(len(poses), -1, dtype=np.int64)
        ids[rows] = self.ids[cols]
        self._correct(cols, boxes[rows], xy[rows], valid[rows], timestamp)
        self._age(cols, timestamp)
        new = np.flatnonzero(ids < 0)
        ids[new] = self._start(boxes[new], xy[new], valid[new], timestamp)
        out.track_ids = ids
        return out

    def _assign(self, dets: PoseSet) -> tuple[np.ndarray, np.ndarray]:
        """Hungarian assignment; returns aligned (detection rows, track rows)."""
        empty = np.zeros(0, dtype=np.int64)
        if len(self.ids) == 0 or len(dets.boxes) == 0:
            return empty, empty
        pred_boxes = kb.boxes_of(self.x)
        pred_xy = self.x[:, None, :2] + self.template * self.x[:, None, 2:4]
        tracks = PoseSet(pred_boxes, pred_xy, self.template_valid, kb.position_variance(self.p))
        plausible = self._similarity(dets, tracks) >= self.cfg.min_similarity
        fit = self._similarity(dets, tracks._replace(var=np.zeros(len(self.ids))))
        cost = np.where(plausible, cost_matrix(fit), _INFEASIBLE)
        rows, cols = linear_sum_assignment(cost)
        keep = cost[rows, cols] < _INFEASIBLE
        return rows[keep], cols[keep]

    def _recover(self, boxes, rows, cols, timestamp: float) -> tuple[np.ndarray, np.ndarray]:
        """Second chance for lost tracks: a detection nobody took, within the distance the person
        could have covered while unseen (``recovery_speed`` body sizes/s), from where they were last
        seen or from where they were predicted to be, with a box extent (max of width and height)
        within the range the track has shown (a person who flips or crouches changes it). Catches people
        whose motion the constant-velocity model cannot follow (a jump, a turn, a stop) while unseen;
        the size check keeps stray false detections from taking a lost person's id."""
        empty = np.zeros(0, dtype=np.int64)
        speed = self.cfg.recovery_speed
        if speed <= 0:
            return empty, empty
        free_d = np.ones(len(boxes), dtype=bool)
        free_d[rows] = False
        free_d = np.flatnonzero(free_d)
        free_t = self.states != TENTATIVE
        free_t[cols] = False
        free_t = np.flatnonzero(free_t)
        if len(free_d) == 0 or len(free_t) == 0:
            return empty, empty
        det = kb.xyxy_to_cxcywh(boxes[free_d])
        pred = self.x[free_t, :4]
        last = kb.xyxy_to_cxcywh(self.last_box[free_t])
        det_size = det[:, None, 2:4].max(-1)  # [D, 1]
        lo, hi = self.size_range[free_t, 0][None], self.size_range[free_t, 1][None]
        similar = (det_size >= lo / _RECOVERY_SIZE_RATIO) & (det_size <= hi * _RECOVERY_SIZE_RATIO)
        size = np.maximum(det_size, hi)
        d_pred = np.linalg.norm(det[:, None, :2] - pred[None, :, :2], axis=-1)
        d_last = np.linalg.norm(det[:, None, :2] - last[None, :, :2], axis=-1)
        dist = np.minimum(d_pred, d_last) / size
        reach = speed * (timestamp - self.last_update[free_t])
        cost = np.where((dist <= reach[None]) & similar, dist, _INFEASIBLE)
        r, c = linear_sum_assignment(cost)
        keep = cost[r, c] < _INFEASIBLE
        return free_d[r[keep]], free_t[c[keep]]

    def _learn(self, cols, boxes, xy, valid) -> None:
        c = kb.xyxy_to_cxcywh(boxes)
        rel = (xy - c[:, None, :2]) / c[:, None, 2:]
        self.template[cols] = np.where(valid[..., None], rel, self.template[cols])
        self.template_valid[cols] |= valid

    def _correct(self, cols, boxes, xy, valid, timestamp: float) -> None:
        if len(cols) == 0:
            return
        x, p = kb.update(self.x[cols], self.p[cols], boxes, self.cfg.measurement_noise)
        self.x[cols], self.p[cols] = x, p
        self._learn(cols, boxes, xy, valid)
        self.hits[cols] += 1
        self.misses[cols] = 0
        self.last_update[cols] = timestamp
        self.last_box[cols] = boxes
        extent = kb.xyxy_to_cxcywh(boxes)[:, 2:4].max(-1)
        self.size_range[cols, 0] = np.minimum(self.size_range[cols, 0], extent)
        self.size_range[cols, 1] = np.maximum(self.size_range[cols, 1], extent)
        st = self.states[cols]
        promote = (st == LOST) | ((st == TENTATIVE) & (self.hits[cols] >= self.cfg.min_hits))
        self.states[cols] = np.where(promote, CONFIRMED, st)

    def _age(self, matched_cols, timestamp: float) -> None:
        """Count a miss for every unmatched track; mark lost, drop the expired."""
        missed = np.ones(len(self.ids), dtype=bool)
        missed[matched_cols] = False
        self.misses[missed] += 1
        newly_lost = missed & (self.states == CONFIRMED)
        kb.hold_size(self.x, newly_lost)
        self.states[newly_lost] = LOST
        expired = missed & (
            ((self.states == TENTATIVE) & (self.misses > _TENTATIVE_MAX_MISSES))
            | ((self.states == LOST) & (timestamp - self.last_update > self.cfg.max_age_s + 1e-6)))  # float-safe
        if expired.any():
            self._keep(~expired)

    def _keep(self, mask) -> None:
        for name in ("ids", "states", "hits", "misses", "last_update", "last_box", "size_range", "x", "p",
                     "template", "template_valid"):
            setattr(self, name, getattr(self, name)[mask])

    def _start(self, boxes, xy, valid, timestamp: float) -> np.ndarray:
        """New tentative tracks (confirmed at once when min_hits is 1); returns their ids."""
        n = len(boxes)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        x, p = kb.initiate(boxes, self.cfg.measurement_noise)
        k = xy.shape[1]
        first = len(self.ids)
        self.ids = np.concatenate([self.ids, new_ids])
        self.states = np.concatenate([self.states, np.full(n, CONFIRMED if self.cfg.min_hits <= 1 else TENTATIVE,
                                                           dtype=np.int8)])
        self.hits = np.concatenate([self.hits, np.ones(n, dtype=np.int64)])
        self.misses = np.concatenate([self.misses, np.zeros(n, dtype=np.int64)])
        self.last_update = np.concatenate([self.last_update, np.full(n, timestamp)])
        self.last_box = np.concatenate([self.last_box, boxes])
        extent = kb.xyxy_to_cxcywh(boxes)[:, 2:4].max(-1)
        self.size_range = np.concatenate([self.size_range, np.stack([extent, extent], 1)])
        self.x, self.p = np.concatenate([self.x, x]), np.concatenate([self.p, p])
        self.template = np.concatenate([self.template, np.zeros((n, k, 2))])
        self.template_valid = np.concatenate([self.template_valid, np.zeros((n, k), dtype=bool)])
        self._learn(np.arange(first, first + n), boxes, xy, valid)
        return new_ids
