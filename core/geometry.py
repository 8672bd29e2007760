"""Plane geometry shared by inference, training and tracking: box IoU and 2-D affine maps.

Every function takes numpy arrays or torch tensors and returns the same kind (dtype and device
kept for tensors), so one formula serves the numpy pipeline and the differentiable training path.

Conventions
    boxes   [..., 4] x1, y1, x2, y2 in pixels (corners; width = x2 - x1).
    θ       [..., 2, 3] affine map [A | t]: p' = A·p + t, points as (x, y) pixels. A crop's θ maps
            crop pixels → image pixels (``core.models.sstn.roi_to_affine``).
    pixels  centres at integer coordinates; a W-pixel-wide image spans x ∈ [-0.5, W - 0.5].
    unit    ``F.affine_grid(align_corners=False)`` coordinates: x̂ ∈ [-1, 1] spans the full width,
            x̂ = (2x + 1)/W - 1.
"""
from __future__ import annotations

import sys

import numpy as np


def _is_torch(x) -> bool:
    """A tensor can only exist once torch is imported, so numpy callers (tracking) never import it."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _torch():
    return sys.modules["torch"]


def _cat(parts, axis, like):
    return _torch().cat(parts, axis) if _is_torch(like) else np.concatenate(parts, axis)


def box_iou(a, b):
    """IoU matrix [N, M] of boxes a [N, 4] and b [M, 4]; 0 where both are empty.

    Negative extents count as empty (area 0)."""
    if _is_torch(a):
        torch = _torch()
        lt = torch.maximum(a[:, None, :2], b[None, :, :2])
        rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
        inter = (rb - lt).clamp_min(0).prod(-1)
        area_a = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(-1)
        area_b = (b[:, 2:] - b[:, :2]).clamp_min(0).prod(-1)
        return inter / (area_a[:, None] + area_b[None, :] - inter).clamp_min(1e-12)
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def affine_compose(a, b):
    """a ∘ b (apply b, then a) for θ [..., 2, 3] (broadcast over leading dimensions)."""
    m = a[..., :, :2]
    return _cat([m @ b[..., :, :2], m @ b[..., :, 2:] + a[..., :, 2:]], -1, a)


def affine_invert(theta):
    """Exact inverse of θ [..., 2, 3] (closed-form 2×2 inverse; differentiable for tensors)."""
    stack = _torch().stack if _is_torch(theta) else np.stack
    a, b, tx = theta[..., 0, 0], theta[..., 0, 1], theta[..., 0, 2]
    c, d, ty = theta[..., 1, 0], theta[..., 1, 1], theta[..., 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return stack([stack([ia, ib, -(ia * tx + ib * ty)], -1), stack([ic, id_, -(ic * tx + id_ * ty)], -1)], -2)


def affine_apply(points, theta):
    """Points [N, ..., 2] mapped through θ [N, 2, 3] (one map per leading row); same shape out.

    Tensors keep their float dtype (integers become float32); numpy computes in float64 and
    returns the input's float dtype (float64 for integer input)."""
    if _is_torch(points):
        torch = _torch()
        dtype = points.dtype if points.is_floating_point() else torch.float32
        th = torch.as_tensor(theta, dtype=dtype, device=points.device)
        p = points.to(dtype).reshape(th.shape[0], -1, 2)
        return (p @ th[:, :, :2].transpose(1, 2) + th[:, None, :, 2]).reshape(points.shape)
    th = theta.detach().cpu().numpy() if _is_torch(theta) else np.asarray(theta)
    th = th.astype(np.float64)
    pts = np.asarray(points)
    dtype = pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float64
    p = pts.astype(np.float64).reshape(th.shape[0], -1, 2)
    out = p @ np.swapaxes(th[:, :, :2], 1, 2) + th[:, None, :, 2]
    return out.reshape(pts.shape).astype(dtype, copy=False)


def pixel_to_unit_matrix(hw: tuple[int, int], like=None):
    """[3, 3] pixels → unit coordinates of an (h, w) image: x̂ = (2x + 1)/w - 1."""
    h, w = hw
    return _matrix([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]], like)


def unit_to_pixel_matrix(hw: tuple[int, int], like=None):
    """[3, 3] unit → pixel coordinates of an (h, w) image: x = (w·x̂ + w - 1)/2."""
    h, w = hw
    return _matrix([[w / 2.0, 0.0, (w - 1) / 2.0], [0.0, h / 2.0, (h - 1) / 2.0], [0.0, 0.0, 1.0]], like)


def pixel_to_normalised(theta, in_hw: tuple[int, int], out_hw: tuple[int, int]):
    """Pixel θ [N, 2, 3] (output px → input px) → the unit θ ``F.affine_grid(align_corners=False)``
    expects, for an input image of ``in_hw`` and an output (crop) of ``out_hw``."""
    full = _cat([theta, _bottom(theta)], -2, theta)
    return pixel_to_unit_matrix(in_hw, theta)[:2] @ full @ unit_to_pixel_matrix(out_hw, theta)


def normalised_to_pixel(theta_n, in_hw: tuple[int, int], out_hw: tuple[int, int]):
    """Inverse of ``pixel_to_normalised``: unit θ [N, 2, 3] → pixel θ."""
    full = _cat([theta_n, _bottom(theta_n)], -2, theta_n)
    return unit_to_pixel_matrix(in_hw, theta_n)[:2] @ full @ pixel_to_unit_matrix(out_hw, theta_n)


def _bottom(theta):
    """The [..., 1, 3] row (0, 0, 1) that makes θ a 3×3 matrix."""
    row = _matrix([[0.0, 0.0, 1.0]], theta)
    if _is_torch(theta):
        return row.expand(*theta.shape[:-2], 1, 3)
    return np.broadcast_to(row, (*theta.shape[:-2], 1, 3))


def _matrix(rows, like):
    if _is_torch(like):
        return _torch().tensor(rows, dtype=like.dtype, device=like.device)
    dtype = like.dtype if like is not None and np.issubdtype(np.asarray(like).dtype, np.floating) else np.float64
    return np.asarray(rows, dtype=dtype)
