"""BlazePose person detector: letterboxed views → SSD decode → weighted NMS → image coordinates.

The model sees a 224×224 letterboxed image, so people in a wide frame are only a few dozen
pixels tall. With ``cfg.tiling`` the frame is seen as the full view plus overlapping square
tiles (``tile_size`` px, ``tile_overlap`` overlap), all letterboxed into ONE batch and run in ONE
forward pass; the candidates of all views are merged by a single weighted NMS.

Facts used (MediaPipe pose_detection graph): input RGB in [-1, 1], letterbox centred with zero
border; outputs per anchor: face box (cx, cy, w, h) and 4 alignment keypoints (x, y), all in
224-px units relative to the anchor centre (anchors are fixed-size 1×1); score = sigmoid of the
logit clipped to ±100; weighted NMS at IoU 0.3.

Merging. The model's face box has a constant size (0.2 of the view: 44.8/224 on every anchor),
so face-box IoU cannot compare a full-frame candidate with a tile candidate. Candidates are
compared by a scale-aware "core" box instead, a square of side r (the body radius ‖kp1 − kp0‖)
centred on the mid-hip point kp0: the same person seen twice overlaps strongly there, two people
side by side (hips ~0.8 r apart) do not. Measured on the demo, the full view also returns people
it sees small with hips, radius and even face badly placed (r twice the truth, rotated 60°, the
"face" on the torso). A face cannot sit on the hips or torso of a better-scored person, so a candidate whose
face centre lies within ±``core.roi.TORSO_ZONE``·r of a better candidate's mid-hip point is the same person
too. Each cluster takes the best candidate's score and the score-weighted mean of the members
whose core boxes agree with it (MediaPipe's WEIGHTED NMS); members caught only by the face rule
are suppressed without entering the mean.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from core.detection.detections import Detections
from core.detection.anchors import ssd_anchor_centres
from core.geometry import box_iou
from core.roi import face_on_torso

INPUT_SIZE = 224
NUM_KEYPOINTS = 4
SCORE_CLIP = 100.0
MAX_TILES = 12  # a larger frame gets larger tiles rather than more of them
# A tile candidate is kept only if its mid-hip point lies inside the tile and its body circle is
# not much larger than the tile: otherwise the tile saw a cut-off person and its keypoints are
# extrapolated (measured on the demo: a tree trunk at the right edge gave hip points ~950 px outside
# their tile). The full view and the neighbouring tiles see such people whole.
MAX_TILE_DIAMETER = 1.5


def tile_views(height: int, width: int, tile_size: int, overlap: float) -> np.ndarray:
    """Views [V, 4] (x0, y0, x1, y1, integer pixel bounds): the full frame, then the tiles.

    Tiles are ``tile_size`` squares laid out so that neighbours overlap by at least ``overlap``
    of a tile and the last tile ends at the frame border. A frame that is not much larger than
    one tile gets only the full view.
    """
    full = np.array([[0, 0, width, height]], dtype=np.int64)
    if max(height, width) <= tile_size * 1.25:
        return full
    tile = float(tile_size)
    while True:
        xs, ys = _tile_starts(width, tile, overlap), _tile_starts(height, tile, overlap)
        if len(xs) * len(ys) <= MAX_TILES:
            break
        tile *= 1.25
    t = int(round(tile))
    tiles = [(x, y, min(x + t, width), min(y + t, height)) for y in ys for x in xs]
    return np.concatenate([full, np.array(tiles, dtype=np.int64)])


def _tile_starts(length: int, tile: float, overlap: float) -> list[int]:
    if length <= tile:
        return [0]
    step = tile * (1.0 - overlap)
    n = int(math.ceil((length - tile) / step - 1e-9)) + 1
    return [int(round(v)) for v in np.linspace(0, length - tile, n)]


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Resize keeping the aspect ratio into a centred ``size``² canvas with a black border.

    Returns (canvas uint8 [size, size, 3], (sx, sy, px, py)) where a continuous canvas
    coordinate X maps to the input's continuous coordinate (X − px) / sx (edges at 0 and W).
    Area interpolation: the model needs the frame shrunk several-fold without aliasing.
    """
    h, w = image.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py:py + nh, px:px + nw] = resized
    return canvas, (nw / w, nh / h, float(px), float(py))


def weighted_nms(core_boxes: np.ndarray, scores: np.ndarray, values: np.ndarray, iou_threshold: float,
                 faces: np.ndarray | None = None, centres: np.ndarray | None = None,
                 radii: np.ndarray | None = None):
    """MediaPipe's WEIGHTED non-maximum suppression, with an optional face-on-torso rule.

    Repeatedly takes the best remaining candidate and gathers every remaining candidate whose
    core box overlaps it with IoU > ``iou_threshold`` (itself included); it emits the
    score-weighted mean of their ``values`` [N, D] with the best candidate's score. With
    ``faces``, ``centres`` [N, 2] and ``radii`` [N], candidates whose face lies within
    ±``TORSO_ZONE``·radius of the best one's centre are removed as well, outside the mean.
    Returns (kept scores [M], merged values [M, D], index of each cluster's best candidate [M]).
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, values = core_boxes[order], scores[order], values[order]
    if faces is not None:
        faces, centres, radii = faces[order], centres[order], radii[order]
    alive = np.ones(len(order), dtype=bool)
    out_scores, out_values, out_index = [], [], []
    for i in range(len(order)):
        if not alive[i]:
            continue
        agree = alive & (box_iou(boxes[i:i + 1], boxes)[0] > iou_threshold)
        agree[i] = True
        same = agree.copy()
        if faces is not None:
            same |= alive & face_on_torso(faces, centres[i:i + 1], radii[i:i + 1])[0]
        w = scores[agree]
        out_values.append((values[agree] * w[:, None]).sum(0) / w.sum())
        out_scores.append(scores[i])
        out_index.append(order[i])
        alive &= ~same
    d = values.shape[1] if values.ndim == 2 else 0
    return (np.asarray(out_scores, dtype=np.float32), np.asarray(out_values, dtype=np.float32).reshape(-1, d),
            np.asarray(out_index, dtype=np.int64))


class BlazePoseDetector:
    """``detector(frame_rgb) -> Detections`` with BlazePose's detector model (optionally tiled)."""

    name = "blazepose"

    def __init__(self, cfg, device="cpu", model: torch.nn.Module | None = None, runtime=None):
        self.cfg = cfg
        self.device = torch.device(device)
        if model is None:
            from core.models.zoo import load_detector_model

            model = load_detector_model(self.device, runtime)
        self.model = model
        self.anchors = ssd_anchor_centres()

    def views(self, height: int, width: int) -> np.ndarray:
        if not self.cfg.tiling:
            return np.array([[0, 0, width, height]], dtype=np.int64)
        return tile_views(height, width, int(self.cfg.tile_size), float(self.cfg.tile_overlap))

    def __call__(self, frame_rgb: np.ndarray) -> Detections:
        frame_rgb = np.asarray(frame_rgb)
        views = self.views(*frame_rgb.shape[:2])
        boxes, logits, geometry = self.run_views(frame_rgb, views)
        return self.decode(boxes, logits, views, geometry)

    def run_views(self, frame_rgb: np.ndarray, views: np.ndarray):
        """Letterbox every view and run them as one batch: raw (boxes [V, A, 12], logits [V, A])."""
        canvases, geometry = [], []
        for x0, y0, x1, y1 in views:
            canvas, geo = letterbox(frame_rgb[y0:y1, x0:x1])
            canvases.append(canvas)
            geometry.append(geo)
        batch = torch.from_numpy(np.stack(canvases)).to(self.device)
        batch = batch.float().mul_(2.0 / 255.0).sub_(1.0)  # [-1, 1]
        with torch.inference_mode():
            raw_boxes, raw_logits = self.model(batch)
        return (raw_boxes.float().cpu().numpy(), raw_logits.float().cpu().numpy().reshape(len(views), -1),
                np.asarray(geometry, dtype=np.float64))

    def decode(self, raw_boxes: np.ndarray, raw_logits: np.ndarray, views: np.ndarray,
               geometry: np.ndarray) -> Detections:
        """Scores, anchor-relative decode, per-view → image mapping, tile filter, weighted NMS."""
        cfg = self.cfg
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
        view_idx, anchor_idx = np.nonzero(scores >= cfg.score_threshold)
        if len(view_idx) == 0:
            return Detections.empty()
        raw = raw_boxes[view_idx, anchor_idx].astype(np.float64)
        anchor = self.anchors[anchor_idx].astype(np.float64) * INPUT_SIZE  # canvas px
        # face centre then the alignment keypoints, all anchor-relative in canvas px
        pts = np.concatenate([raw[:, None, 0:2], raw[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2)], 1)
        pts = pts + anchor[:, None, :]
        sx, sy, px, py = (geometry[view_idx, i][:, None] for i in range(4))
        v = views[view_idx].astype(np.float64)
        # canvas (continuous) → view (continuous) → image pixel centres
        x = (pts[..., 0] - px) / sx + v[:, 0:1] - 0.5
        y = (pts[..., 1] - py) / sy + v[:, 1:2] - 0.5
        pts = np.stack([x, y], -1)
        face, kp = pts[:, 0], pts[:, 1:]
        s = scores[view_idx, anchor_idx]
        radius = np.hypot(*(kp[:, 1] - kp[:, 0]).T)

        keep = radius > 1.0
        tile = view_idx > 0
        if tile.any():
            size = np.maximum(v[:, 2] - v[:, 0], v[:, 3] - v[:, 1])
            inside = ((kp[:, 0, 0] >= v[:, 0] - 0.5) & (kp[:, 0, 0] <= v[:, 2] - 0.5)
                      & (kp[:, 0, 1] >= v[:, 1] - 0.5) & (kp[:, 0, 1] <= v[:, 3] - 0.5))
            keep &= ~tile | (inside & (2 * radius <= MAX_TILE_DIAMETER * size))
        face, kp, s, radius = face[keep], kp[keep], s[keep], radius[keep]
        if len(s) == 0:
            return Detections.empty()

        core = np.concatenate([kp[:, 0] - radius[:, None] / 2, kp[:, 0] + radius[:, None] / 2], 1)
        values = np.concatenate([kp.reshape(len(s), -1), face], 1)
        merged_scores, merged, _ = weighted_nms(core, s, values, cfg.nms_iou, face, kp[:, 0], radius)
        order = np.argsort(-merged_scores, kind="stable")[: max(int(cfg.max_persons), 0)]
        merged_scores, merged = merged_scores[order], merged[order]
        merged_kp = merged[:, :2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2)
        r = np.hypot(*(merged_kp[:, 1] - merged_kp[:, 0]).T)[:, None]
        body = np.concatenate([merged_kp[:, 0] - r, merged_kp[:, 0] + r], 1)
        return Detections(body, merged_scores, merged_kp, merged[:, 2 * NUM_KEYPOINTS:])
