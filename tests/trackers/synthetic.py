"""Synthetic multi-person sequences for tracker checks, and a small CLEAR-MOT counter.

People are animated stick figures (COCO-17, or BlazePose-33 derived from it) walking on straight
lines with swinging limbs. A sequence can add keypoint and box noise, random detection dropouts,
occlusion intervals and false positives; every detection remembers which person it came from.
Loaded by path from tests/trackers/conftest.py and bench/bench_trackers.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.poses import Poses
from core.skeleton import COCO17, get_skeleton

# Standing COCO-17 pose, relative to the box centre, in units of person height (y down).
_COCO_TEMPLATE = np.array([
    [0.00, -0.42], [-0.03, -0.44], [0.03, -0.44], [-0.06, -0.43], [0.06, -0.43],
    [-0.12, -0.30], [0.12, -0.30], [-0.15, -0.10], [0.15, -0.10], [-0.16, 0.08], [0.16, 0.08],
    [-0.08, 0.05], [0.08, 0.05], [-0.09, 0.27], [0.09, 0.27], [-0.09, 0.48], [0.09, 0.48],
])
# Horizontal limb swing amplitude per COCO keypoint (sign = phase), person heights.
_SWING = np.zeros(17)
_SWING[[7, 8]] = [0.05, -0.05]
_SWING[[9, 10]] = [0.10, -0.10]
_SWING[[13, 14]] = [-0.06, 0.06]
_SWING[[15, 16]] = [-0.12, 0.12]

# BlazePose-33 keypoint = COCO keypoint + offset (person heights).
_BP_FROM_COCO = {
    "nose": (0, 0, 0), "left_eye_inner": (1, 0.01, 0), "left_eye": (1, 0, 0),
    "left_eye_outer": (1, -0.01, 0), "right_eye_inner": (2, -0.01, 0), "right_eye": (2, 0, 0),
    "right_eye_outer": (2, 0.01, 0), "left_ear": (3, 0, 0), "right_ear": (4, 0, 0),
    "mouth_left": (0, -0.015, 0.025), "mouth_right": (0, 0.015, 0.025),
    "left_shoulder": (5, 0, 0), "right_shoulder": (6, 0, 0), "left_elbow": (7, 0, 0),
    "right_elbow": (8, 0, 0), "left_wrist": (9, 0, 0), "right_wrist": (10, 0, 0),
    "left_pinky": (9, -0.01, 0.04), "right_pinky": (10, 0.01, 0.04),
    "left_index": (9, 0, 0.045), "right_index": (10, 0, 0.045),
    "left_thumb": (9, 0.01, 0.03), "right_thumb": (10, -0.01, 0.03),
    "left_hip": (11, 0, 0), "right_hip": (12, 0, 0), "left_knee": (13, 0, 0),
    "right_knee": (14, 0, 0), "left_ankle": (15, 0, 0), "right_ankle": (16, 0, 0),
    "left_heel": (15, -0.015, 0.02), "right_heel": (16, 0.015, 0.02),
    "left_foot_index": (15, 0.04, 0.025), "right_foot_index": (16, -0.04, 0.025),
}


@dataclass
class Walker:
    """A person walking on a straight line; position and height in pixels, velocity per frame."""

    x: float
    y: float
    vx: float
    vy: float
    height: float
    start: int = 0
    end: int | None = None
    hidden: list[tuple[int, int]] = field(default_factory=list)  # [a, b) frames without detection
    stride_hz: float = 1.0

    def present(self, f: int) -> bool:
        return f >= self.start and (self.end is None or f < self.end)

    def visible(self, f: int) -> bool:
        return self.present(f) and not any(a <= f < b for a, b in self.hidden)

    def keypoints(self, f: int, fps: float, layout: str) -> np.ndarray:
        """Noise-free keypoints [K, 2] at frame f."""
        t = (f - self.start) / fps
        cx, cy = self.x + self.vx * (f - self.start), self.y + self.vy * (f - self.start)
        rel = _COCO_TEMPLATE.copy()
        rel[:, 0] += _SWING * np.sin(2 * np.pi * self.stride_hz * t)
        if self.vx < 0:
            rel[:, 0] *= -1  # face the walking direction
        coco = np.array([cx, cy]) + rel * self.height
        if layout == COCO17:
            return coco
        names = get_skeleton(layout).names
        src = np.array([_BP_FROM_COCO[n][0] for n in names])
        off = np.array([_BP_FROM_COCO[n][1:] for n in names]) * self.height
        return coco[src] + off


def _box_of(xy: np.ndarray, pad: float = 0.1) -> np.ndarray:
    lo, hi = xy.min(0), xy.max(0)
    m = (hi - lo) * pad
    return np.concatenate([lo - m, hi + m])


@dataclass
class Frame:
    poses: Poses  # detections (noisy), in a shuffled order
    det_person: np.ndarray  # [D] index of the person each detection came from, -1 = false positive
    gt_ids: np.ndarray  # [G] persons visible in this frame
    gt_boxes: np.ndarray  # [G, 4] their noise-free boxes
    gt_keypoints: np.ndarray  # [G, K, 2] their noise-free keypoints
    timestamp: float


def make_sequence(people: list[Walker], n_frames: int, fps: float = 30.0, layout: str = COCO17,
                  kp_noise: float = 0.0, box_noise: float = 0.0, dropout: float = 0.0,
                  fp_rate: float = 0.0, image_size=(1920, 1080), seed: int = 0) -> list[Frame]:
    """Detections per frame. Noise stds are fractions of the person height; ``dropout`` is the
    chance that a visible person is missed in a frame; ``fp_rate`` the chance of one spurious
    detection per frame."""
    rng = np.random.default_rng(seed)
    k = get_skeleton(layout).num_keypoints
    frames = []
    for f in range(n_frames):
        gt_ids, gt_boxes, gt_kps, det_boxes, det_kps, det_person = [], [], [], [], [], []
        for i, p in enumerate(people):
            if not p.visible(f):
                continue
            xy = p.keypoints(f, fps, layout)
            centre = xy.mean(0)
            if not (0 <= centre[0] < image_size[0] and 0 <= centre[1] < image_size[1]):
                continue  # walked out of the picture
            gt_ids.append(i)
            gt_boxes.append(_box_of(xy))
            gt_kps.append(xy)
            if rng.random() < dropout:
                continue
            noisy = xy + rng.normal(0, kp_noise * p.height, xy.shape)
            box = _box_of(noisy) + rng.normal(0, box_noise * p.height, 4)
            scores = np.clip(rng.normal(0.85, 0.1, k), 0.05, 1.0)
            det_kps.append(np.concatenate([noisy, scores[:, None]], axis=1))
            det_boxes.append(box)
            det_person.append(i)
        if rng.random() < fp_rate:
            h = rng.uniform(100, 400)
            c = rng.uniform([h, h], [image_size[0] - h, image_size[1] - h])
            xy = c + _COCO_TEMPLATE[:, :2] * h if layout == COCO17 else \
                c + rng.normal(0, 0.2 * h, (k, 2))
            xy = xy + rng.normal(0, 0.05 * h, xy.shape)
            det_kps.append(np.concatenate([xy, rng.uniform(0.3, 0.7, (k, 1))], axis=1))
            det_boxes.append(_box_of(xy))
            det_person.append(-1)
        order = rng.permutation(len(det_boxes))
        poses = Poses(np.array(det_boxes).reshape(-1, 4)[order], np.array(det_kps).reshape(-1, k, 3)[order],
                      np.full(len(order), 0.9), layout=layout)
        frames.append(Frame(poses, np.array(det_person, dtype=np.int64)[order], np.array(gt_ids, dtype=np.int64),
                            np.array(gt_boxes).reshape(-1, 4), np.array(gt_kps).reshape(-1, k, 2), f / fps))
    return frames


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), -1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


class ClearMot:
    """CLEAR-MOT counts (Bernardin & Stiefelhagen 2008) with box IoU ≥ ``iou`` as the match test.

    Per frame, correspondences from the previous frame are kept while still valid; the rest are
    matched by Hungarian assignment; a ground truth matched to another hypothesis id than its last
    one counts an identity switch. MOTA = 1 - (FN + FP + IDSW) / GT.
    """

    def __init__(self, iou: float = 0.5):
        self.iou = iou
        self.gt = self.fn = self.fp = self.idsw = self.matches = 0
        self._last: dict[int, int] = {}  # gt id -> last matched hypothesis id
        self.ids_per_gt: dict[int, set[int]] = {}

    def update(self, gt_ids, gt_boxes, hyp_ids, hyp_boxes) -> None:
        gt_ids, hyp_ids = list(map(int, gt_ids)), list(map(int, hyp_ids))
        iou = box_iou(np.asarray(gt_boxes).reshape(-1, 4), np.asarray(hyp_boxes).reshape(-1, 4))
        pairs: dict[int, int] = {}  # gt row -> hyp row
        for g, gid in enumerate(gt_ids):
            h_id = self._last.get(gid)
            if h_id is not None and h_id in hyp_ids:
                h = hyp_ids.index(h_id)
                if iou[g, h] >= self.iou and h not in pairs.values():
                    pairs[g] = h
        rest_g = [g for g in range(len(gt_ids)) if g not in pairs]
        rest_h = [h for h in range(len(hyp_ids)) if h not in pairs.values()]
        if rest_g and rest_h:
            sub = iou[np.ix_(rest_g, rest_h)]
            rows, cols = linear_sum_assignment(-sub)
            for r, c in zip(rows, cols):
                if sub[r, c] >= self.iou:
                    pairs[rest_g[r]] = rest_h[c]
        for g, h in pairs.items():
            gid, hid = gt_ids[g], hyp_ids[h]
            if gid in self._last and self._last[gid] != hid:
                self.idsw += 1
            self._last[gid] = hid
            self.ids_per_gt.setdefault(gid, set()).add(hid)
        self.gt += len(gt_ids)
        self.matches += len(pairs)
        self.fn += len(gt_ids) - len(pairs)
        self.fp += len(hyp_ids) - len(pairs)

    @property
    def mota(self) -> float:
        return 1.0 - (self.fn + self.fp + self.idsw) / max(self.gt, 1)

    def summary(self) -> dict:
        return {"gt": self.gt, "matches": self.matches, "fn": self.fn, "fp": self.fp, "idsw": self.idsw,
                "mota": round(self.mota, 4),
                "ids_per_person": round(float(np.mean([len(s) for s in self.ids_per_gt.values()] or [0])), 3)}


def run_tracker(tracker, frames: list[Frame], smoother=None) -> ClearMot:
    """Feed a sequence through a PoseTracker (and optionally a PoseSmoother) and count CLEAR-MOT."""
    mot = ClearMot()
    for fr in frames:
        out = tracker.update(fr.poses, fr.timestamp)
        if smoother is not None:
            out = smoother(out, fr.timestamp)
        mot.update(fr.gt_ids, fr.gt_boxes, out.track_ids, out.boxes)
    return mot


def crowd(n_people: int, n_frames: int, seed: int, occlusions: bool = True, image_size=(1920, 1080)) -> list[Walker]:
    """People walking across the image in random directions (paths cross), each hidden for one
    random 10-30 frame interval when ``occlusions``."""
    rng = np.random.default_rng(seed)
    people = []
    w, h = image_size
    for _ in range(n_people):
        height = rng.uniform(180, 420)
        x = rng.uniform(0.1 * w, 0.9 * w)
        y = rng.uniform(0.3 * h, 0.7 * h)
        speed = rng.uniform(1.0, 8.0)  # pixels per frame
        # aim at a point on the other side so that paths cross
        tx, ty = w - x + rng.normal(0, 100), rng.uniform(0.3 * h, 0.7 * h)
        d = np.hypot(tx - x, ty - y)
        vx, vy = speed * (tx - x) / d, 0.3 * speed * (ty - y) / d
        hidden = []
        if occlusions:
            a = int(rng.integers(10, max(11, n_frames - 40)))
            hidden = [(a, a + int(rng.integers(10, 31)))]
        people.append(Walker(x, y, vx, vy, height, hidden=hidden, stride_hz=rng.uniform(0.7, 1.5)))
    return people


def jitter_trial(smoother, speed: float, direction=(1.0, 0.0), noise: float = 0.005, n_frames: int = 300,
                 fps: float = 30.0, height: float = 400.0, warmup: int = 30, seed: int = 0) -> dict:
    """A standing-pose person translating at ``speed`` heights/s along ``direction`` with Gaussian
    keypoint noise (std ``noise`` heights), fed through ``smoother`` as track 0.

    Returns, over all keypoints after ``warmup`` frames:
    ``reduction`` = 1 - mean|Δ²x_out| / mean|Δ²x_measured| (frame-to-frame acceleration), and
    ``lag`` in frames = Σ e·v / Σ v², the least-squares time shift δ explaining the error
    e = x_true - x_out as δ·v (v = true velocity per frame; for constant velocity this is the
    mean signed error along the motion divided by the speed).
    """
    rng = np.random.default_rng(seed)
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    t = np.arange(n_frames) / fps
    centre = np.array([300.0, 300.0]) + (speed * height * t)[:, None] * d
    true = centre[:, None] + _COCO_TEMPLATE[None] * height  # [T, K, 2]
    meas = true + rng.normal(0, noise * height, true.shape)
    k = true.shape[1]
    out = np.empty_like(meas)
    for i in range(n_frames):
        kp = np.concatenate([meas[i], np.full((k, 1), 0.9)], axis=1)[None]
        pose = Poses(_box_of(meas[i])[None], kp, [0.9], track_ids=[0])
        out[i] = smoother(pose, t[i]).keypoints[0, :, :2]
    sl = slice(warmup, None)
    acc = lambda x: float(np.abs(np.diff(x[sl], 2, axis=0)).mean())  # noqa: E731
    v = np.gradient(true, axis=0)[sl]
    e = (true - out)[sl]
    lag = float((e * v).sum() / (v * v).sum()) if speed > 0 else 0.0
    return {"reduction": 1.0 - acc(out) / acc(meas), "lag": lag,
            "raw_acc": acc(meas), "out_acc": acc(out)}
