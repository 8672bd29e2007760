"""Skeleton overlay: limbs, keypoints, optional boxes, scores and track ids, drawn with OpenCV.

``draw_poses(frame, poses, cfg)`` draws in place on an RGB uint8 frame and returns it.

Colours: without track ids every limb has its own colour (left side warm, right side cool, centre
green), so left/right mix-ups are visible. With track ids each person is drawn in a colour picked
by its id (stable across frames), its left limbs lighter and right limbs darker, so people stay
distinguishable and sides stay readable. Keypoints below ``cfg.keypoint_threshold`` are not drawn,
nor any limb touching one.

Speed: the per-frame preparation (visibility masks, endpoints, colours) is vectorised with numpy;
OpenCV draws all segments of one colour in a single ``polylines`` call, so the number of draw calls
is bounded by the number of colours, not by people × limbs.
"""
from __future__ import annotations

import colorsys
from functools import lru_cache

import cv2
import numpy as np

from core.config import RenderConfig
from core.poses import Poses
from core.skeleton import get_skeleton

# cv2 fixed-point drawing: coordinates are scaled by 2**SHIFT so lines land at sub-pixel positions.
_SHIFT = 2
_SCALE = 1 << _SHIFT


def _side(name: str) -> int:
    """+1 left, -1 right, 0 centre, from a keypoint name."""
    return 1 if name.startswith("left") else -1 if name.startswith("right") else 0


@lru_cache(maxsize=None)
def _limb_sides(layout: str) -> np.ndarray:
    """Side of each limb: left (+1) or right (-1) when both ends are on that side, else centre."""
    sk = get_skeleton(layout)
    sides = np.array([_side(n) for n in sk.names])
    a, b = sides[sk.limbs[:, 0]], sides[sk.limbs[:, 1]]
    return np.where(a == b, a, 0)


@lru_cache(maxsize=None)
def limb_colors(layout: str) -> np.ndarray:
    """[L, 3] uint8 RGB, one colour per limb: warm hues on the left, cool on the right, green centre."""
    sides = _limb_sides(layout)
    out = np.zeros((len(sides), 3), np.uint8)
    for side, (h0, h1) in ((1, (0.0, 0.14)), (-1, (0.52, 0.75)), (0, (0.28, 0.40))):
        idx = np.flatnonzero(sides == side)
        for j, i in enumerate(idx):
            hue = h0 + (h1 - h0) * (j / max(len(idx) - 1, 1))
            out[i] = np.round(np.array(colorsys.hsv_to_rgb(hue, 0.9, 1.0)) * 255)
    return out


def track_color(track_id: int) -> np.ndarray:
    """Stable, well-separated RGB colour for a track id (golden-ratio hue steps)."""
    hue = (int(track_id) * 0.618033988749895) % 1.0
    return np.round(np.array(colorsys.hsv_to_rgb(hue, 0.85, 1.0)) * 255).astype(np.uint8)


def _shade(color: np.ndarray, side: int) -> np.ndarray:
    """Left limbs lighter, right limbs darker than the person's colour."""
    c = color.astype(np.float32)
    if side > 0:
        c = c + (255 - c) * 0.45
    elif side < 0:
        c = c * 0.6
    return c.astype(np.uint8)


def _sizes(frame: np.ndarray) -> tuple[int, int]:
    """Line thickness and keypoint radius scaled with the frame (2 px / 2 px at 640 wide, 4 px / 7 px at 1768)."""
    s = max(frame.shape[0], frame.shape[1]) / 640.0
    return max(1, round(1.5 * s)), max(2, round(2.5 * s))


def draw_poses(frame: np.ndarray, poses: Poses, cfg: RenderConfig | None = None) -> np.ndarray:
    """Draw ``poses`` on ``frame`` (RGB uint8 [H, W, 3], modified in place) and return it."""
    cfg = cfg or RenderConfig()
    n = len(poses)
    if n == 0:
        return frame
    sk = get_skeleton(poses.layout)
    kp = poses.keypoints
    xy = kp[:, :, :2]
    finite = np.isfinite(xy).all(-1)
    visible = (kp[:, :, 2] > cfg.keypoint_threshold) & finite  # [N, K]
    # Fixed point, clipped far outside any frame so int32 cannot overflow.
    pts = np.round(np.clip(np.where(finite[..., None], xy, 0), -1e5, 1e5) * _SCALE).astype(np.int32)
    thickness, radius = _sizes(frame)
    tracked = poses.track_ids >= 0

    # Limbs: [N, L] mask of drawable segments and their endpoints [N, L, 2, 2].
    la, lb = sk.limbs[:, 0], sk.limbs[:, 1]
    seg_ok = visible[:, la] & visible[:, lb]
    segs = np.stack([pts[:, la], pts[:, lb]], axis=2)
    per_limb = limb_colors(poses.layout)
    sides = _limb_sides(poses.layout)

    untracked = seg_ok & ~tracked[:, None]
    for limb in np.flatnonzero(untracked.any(0)):  # one call per limb colour
        lines = list(segs[untracked[:, limb], limb])
        cv2.polylines(frame, lines, False, per_limb[limb].tolist(), thickness, cv2.LINE_AA, _SHIFT)
    for i in np.flatnonzero(tracked):  # one call per person and side
        base = track_color(poses.track_ids[i])
        for side in (1, 0, -1):
            m = seg_ok[i] & (sides == side)
            if m.any():
                cv2.polylines(frame, list(segs[i, m]), False, _shade(base, side).tolist(), thickness,
                              cv2.LINE_AA, _SHIFT)

    # Keypoints: filled dots with a dark rim, drawn after limbs so joints stay visible.
    for i in range(n):
        fill = (track_color(poses.track_ids[i]) if tracked[i] else np.array([255, 255, 255])).tolist()
        for x, y in pts[i, visible[i]]:
            cv2.circle(frame, (int(x), int(y)), radius * _SCALE, fill, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(frame, (int(x), int(y)), radius * _SCALE, (20, 20, 20), 1, cv2.LINE_AA, _SHIFT)

    if cfg.draw_boxes or cfg.draw_scores or cfg.draw_ids:
        _draw_labels(frame, poses, cfg, thickness)
    return frame


def _draw_labels(frame: np.ndarray, poses: Poses, cfg: RenderConfig, thickness: int) -> None:
    font_scale = max(0.4, frame.shape[0] / 1000.0 * 0.8)
    text_thickness = max(1, round(font_scale * 1.5))
    for i in range(len(poses)):
        tid = int(poses.track_ids[i])
        color = (track_color(tid) if tid >= 0 else np.array([255, 255, 255])).tolist()
        if not np.isfinite(poses.boxes[i]).all():
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in np.clip(poses.boxes[i], -1e5, 1e5))
        if cfg.draw_boxes:
            cv2.rectangle(frame, (x1, y1), (x2, y2), color, max(1, thickness // 2), cv2.LINE_AA)
        parts = []
        if cfg.draw_ids and tid >= 0:
            parts.append(f"#{tid}")
        if cfg.draw_scores:
            parts.append(f"{poses.scores[i]:.2f}")
        if parts:
            text = " ".join(parts)
            org = (x1, max(y1 - 6, int(20 * font_scale)))
            cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), text_thickness + 2,
                        cv2.LINE_AA)
            cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, text_thickness, cv2.LINE_AA)
