"""Heatmap decoding (argmax, quarter-pixel, DARK) and unbiased Gaussian encoding.

Coordinates are heatmap pixels (x, y) with pixel centres at integers (the convention of
``core.models.sstn``); ``crop_to_heatmap`` / ``heatmap_to_crop`` convert to crop pixels.
``HeatmapCodec`` bundles one SPPE's choices (sizes, σ, decoder, pixel mapping): every SPPE carries
one (``sppe.codec``), and inference, training targets and training evaluation all go through it.

Decoding methods (per map; score = max of the raw map, location m = its first argmax):

* ``argmax``  — m.
* ``quarter`` — the Hourglass/AlphaPose baseline: m shifted ¼ px on each axis toward the higher
  neighbour of the raw map, when 0 < x < W−1 and 0 < y < H−1 (both neighbours exist; the
  SimpleBaseline port wrote ``1 < x`` by carrying over Lua's 1-based test).
* ``dark``    — DARK (Zhang et al., CVPR 2020): blur with a k×k Gaussian (zero padding (k−1)/2,
  σ from k as OpenCV's ``getGaussianKernel`` with σ ≤ 0), rescale to the raw maximum, take
  log(max(h, 1e-10)) and apply one Newton step μ = m − H⁻¹∇ with the central differences of the
  DARK paper, only when 1 < x < W−2, 1 < y < H−2 and det H ≠ 0.

The DARK step needs the blurred map only on the 5×5 patch around m, so only that patch is
blurred. The rescale multiplies the patch by s = raw max / blurred max ≥ 1, which shifts every
log by the same constant and cancels in the differences — unless the 1e-10 clamp bites. When
every patch value is above 1e-10 the clamp is inactive for any s ≥ 1, so the result is exactly
DARK's; otherwise the whole map is blurred to get s and the clamp is applied as written.
Maps whose raw maximum is ≤ 0 (or NaN) are not refined (DARK's rescale is undefined there).
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, replace

import numba
import numpy as np

from core.config import DecodeMethod
from core.jit import kernel

__all__ = ["METHODS", "gaussian_kernel_1d", "decode_heatmaps", "encode_heatmaps", "encode_heatmaps_batch",
           "crop_to_heatmap", "heatmap_to_crop", "DECODE_METHODS", "HeatmapCodec"]

METHODS = ("argmax", "quarter", "dark")
_METHOD_ID = {m: i for i, m in enumerate(METHODS)}

# OpenCV 4.x's fixed kernels for odd ksize ≤ 9 when σ ≤ 0 (getGaussianKernel, small_gaussian_tab).
_SMALL_GAUSSIAN = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: tuple(v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)),
}


def gaussian_kernel_1d(ksize: int) -> np.ndarray:
    """The 1-D kernel ``cv2.getGaussianKernel(ksize, 0)`` returns (σ = 0.3·((k−1)/2 − 1) + 0.8)."""
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"DARK kernel size must be a positive odd integer, got {ksize}")
    if ksize in _SMALL_GAUSSIAN:
        return np.array(_SMALL_GAUSSIAN[ksize], dtype=np.float64)
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


@kernel()
def _full_blur_max(hm, g, r):
    H, W = hm.shape
    tmp = np.zeros((H, W))
    for y in range(H):
        for x in range(W):
            acc = 0.0
            for a in range(-r, r + 1):
                xx = x + a
                if 0 <= xx < W:
                    acc += g[a + r] * hm[y, xx]
            tmp[y, x] = acc
    best = -np.inf
    for y in range(H):
        for x in range(W):
            acc = 0.0
            for b in range(-r, r + 1):
                yy = y + b
                if 0 <= yy < H:
                    acc += g[b + r] * tmp[yy, x]
            if acc > best:
                best = acc
    return best


@kernel()
def _dark_offset(hm, g, px, py, vmax):
    """DARK Newton step at the argmax (px, py); returns (dx, dy) or (0, 0) where DARK does not refine."""
    H, W = hm.shape
    if not (1 < px < W - 2 and 1 < py < H - 2) or not (vmax > 0.0):
        return 0.0, 0.0
    r = (g.shape[0] - 1) // 2
    # Row-blur the 5 columns px−2..px+2 on rows py−2−r..py+2+r (zero padding = clipped sums) ...
    rows = np.zeros((5 + 2 * r, 5))
    for j in range(5 + 2 * r):
        y = py - 2 - r + j
        if y < 0 or y >= H:
            continue
        for i in range(5):
            x = px - 2 + i
            acc = 0.0
            for a in range(max(-r, -x), min(r, W - 1 - x) + 1):
                acc += g[a + r] * hm[y, x + a]
            rows[j, i] = acc
    # ... then column-blur the 13 points the Newton step uses; p[j, i] ↔ (y = py + j − 2, x = px + i − 2)
    p = np.zeros((5, 5))
    lo = np.inf
    for j in range(5):
        for i in range(5):
            if (i == 2 or j == 2) or (1 <= i <= 3 and 1 <= j <= 3):
                y = py - 2 + j
                acc = 0.0
                for b in range(max(-r, -y), min(r, H - 1 - y) + 1):
                    acc += g[b + r] * rows[j + r + b, i]
                p[j, i] = acc
                lo = min(lo, acc)
    if lo > 1e-10:
        for j in range(5):
            for i in range(5):
                if (i == 2 or j == 2) or (1 <= i <= 3 and 1 <= j <= 3):
                    p[j, i] = math.log(p[j, i])
    else:
        bmax = _full_blur_max(hm, g, r)
        if not (bmax > 0.0):
            return 0.0, 0.0
        s = vmax / bmax
        for j in range(5):
            for i in range(5):
                if (i == 2 or j == 2) or (1 <= i <= 3 and 1 <= j <= 3):
                    p[j, i] = math.log(max(p[j, i] * s, 1e-10))
    dx = 0.5 * (p[2, 3] - p[2, 1])
    dy = 0.5 * (p[3, 2] - p[1, 2])
    dxx = 0.25 * (p[2, 4] - 2 * p[2, 2] + p[2, 0])
    dxy = 0.25 * (p[3, 3] - p[1, 3] - p[3, 1] + p[1, 1])
    dyy = 0.25 * (p[4, 2] - 2 * p[2, 2] + p[0, 2])
    det = dxx * dyy - dxy * dxy
    if det == 0.0:
        return 0.0, 0.0
    return -(dyy * dx - dxy * dy) / det, -(dxx * dy - dxy * dx) / det


@kernel(inline="always")
def _order_key(i):
    """int32 key with the order of the float32 whose bits are ``i`` (integer max vectorises; float max
    would need fastmath)."""
    return i ^ ((i >> 31) & np.int32(0x7FFFFFFF))


@kernel()
def _argmax(bits):
    """First (x, y) of the maximum of a float32 map given as its int32 bit pattern [H, W]."""
    H, W = bits.shape
    best = np.int32(-2147483648)
    by = 0
    for y in range(H):
        r = np.int32(-2147483648)
        for x in range(W):
            r = max(r, _order_key(bits[y, x]))
        if r > best:
            best = r
            by = y
    for x in range(W):
        if _order_key(bits[by, x]) == best:
            return x, by
    return 0, by


@kernel(inline="always")
def _decode_one(maps, bits, m, method, g, coords, scores):
    hm = maps[m]
    H, W = hm.shape
    bx, by = _argmax(bits[m])
    best = hm[by, bx]
    scores[m] = best
    cx = float(bx)
    cy = float(by)
    if method == 1:
        if 0 < bx < W - 1 and 0 < by < H - 1:
            d = hm[by, bx + 1] - hm[by, bx - 1]
            if d != 0:
                cx += 0.25 if d > 0 else -0.25
            d = hm[by + 1, bx] - hm[by - 1, bx]
            if d != 0:
                cy += 0.25 if d > 0 else -0.25
    elif method == 2:
        ox, oy = _dark_offset(hm, g, bx, by, float(best))
        cx += ox
        cy += oy
    coords[m, 0] = cx
    coords[m, 1] = cy


# maps [M, H, W], method id, Gaussian g, coords [M, 2], scores [M]: the only types decode_heatmaps passes
_DECODE_SIG = "(float32[:, :, ::1], int64, float64[::1], float32[:, ::1], float32[::1])"


@kernel(_DECODE_SIG, parallel=True)
def _decode_parallel(maps, method, g, coords, scores):
    bits = maps.view(np.int32)
    for m in numba.prange(maps.shape[0]):
        _decode_one(maps, bits, m, method, g, coords, scores)


@kernel(_DECODE_SIG)
def _decode_serial(maps, method, g, coords, scores):
    bits = maps.view(np.int32)
    for m in range(maps.shape[0]):
        _decode_one(maps, bits, m, method, g, coords, scores)


# Below this many heatmap values a batch is decoded on one thread: 20×17 maps of 64×48 take
# ~0.2–0.5 ms serially, and when the cores are busy (the pipeline's other stages, other
# processes) a parallel region waits for a descheduled worker for whole scheduler ticks
# (8–24 ms measured on a loaded 2-core machine).
PARALLEL_MIN_VALUES = 1 << 21


def _to_numpy_maps(heatmaps) -> np.ndarray:
    if hasattr(heatmaps, "detach"):  # torch tensor: one transfer for the whole batch
        heatmaps = heatmaps.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(heatmaps, dtype=np.float32)


def decode_heatmaps(heatmaps, method: str = "dark", kernel: int = 11,
                    parallel: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode [N, K, H, W] heatmaps (numpy or torch) → (coords [N, K, 2] float32 heatmap px (x, y),
    scores [N, K] float32 = raw map maxima). ``kernel`` is DARK's blur size (11 for 64×48 maps).

    ``parallel``: numba threads over the N·K maps; None = only for batches of at least
    ``PARALLEL_MIN_VALUES`` heatmap values and when numba has more than one thread.
    """
    if method not in _METHOD_ID:
        raise ValueError(f"unknown heatmap decoding method {method!r}; known: {', '.join(METHODS)}")
    maps = _to_numpy_maps(heatmaps)
    if maps.ndim != 4:
        raise ValueError(f"heatmaps must be [N, K, H, W], got shape {maps.shape}")
    n, k, h, w = maps.shape
    g = gaussian_kernel_1d(kernel)
    coords = np.zeros((n * k, 2), dtype=np.float32)
    scores = np.zeros(n * k, dtype=np.float32)
    if n * k and h * w:
        if parallel is None:
            parallel = maps.size >= PARALLEL_MIN_VALUES and numba.get_num_threads() > 1
        run = _decode_parallel if parallel else _decode_serial
        run(maps.reshape(n * k, h, w), _METHOD_ID[method], g, coords, scores)
    return coords.reshape(n, k, 2), scores.reshape(n, k)


def _weights(mu, vis, size, sigma):
    """DARK/SimpleBaseline rule: visible and the 3σ box [μ−3σ, μ+3σ+1] not fully off the map."""
    H, W = size
    t = 3 * sigma
    off = ((mu[..., 0] - t) >= W) | ((mu[..., 1] - t) >= H) | ((mu[..., 0] + t + 1) < 0) | ((mu[..., 1] + t + 1) < 0)
    return (vis > 0) & ~off


def encode_heatmaps_batch(coords, visibility, size: tuple[int, int], sigma: float):
    """Unbiased targets for a batch: coords [N, K, 2] heatmap px (real-valued, no rounding),
    visibility [N, K] → (targets [N, K, H, W] float32, weights [N, K] float32).

    Target = exp(−‖p − μ‖² / 2σ²) on the whole map (computed separably), zero where weight is 0.
    Torch tensors in → torch tensors out on the same device; numpy otherwise.
    """
    H, W = int(size[0]), int(size[1])
    if hasattr(coords, "detach"):
        import torch

        mu = coords.detach().to(torch.float32)
        vis = torch.as_tensor(visibility, device=mu.device)
        keep = _weights(mu, vis, (H, W), sigma)
        xs = torch.arange(W, dtype=torch.float32, device=mu.device)
        ys = torch.arange(H, dtype=torch.float32, device=mu.device)
        gx = torch.exp(-((xs - mu[..., 0:1]) ** 2) / (2 * sigma ** 2))
        gy = torch.exp(-((ys - mu[..., 1:2]) ** 2) / (2 * sigma ** 2))
        targets = gy[..., :, None] * gx[..., None, :] * keep[..., None, None].to(torch.float32)
        return targets, keep.to(torch.float32)
    mu = np.asarray(coords, dtype=np.float64)
    vis = np.asarray(visibility)
    keep = _weights(mu, vis, (H, W), sigma)
    gx = np.exp(-((np.arange(W) - mu[..., 0:1]) ** 2) / (2 * sigma ** 2))
    gy = np.exp(-((np.arange(H) - mu[..., 1:2]) ** 2) / (2 * sigma ** 2))
    targets = (gy[..., :, None] * gx[..., None, :]).astype(np.float32)
    targets *= keep[..., None, None]
    return targets, keep.astype(np.float32)


def encode_heatmaps(coords, visibility, size: tuple[int, int], sigma: float):
    """Unbiased targets for one person: coords [K, 2] heatmap px, visibility [K]
    → (targets [K, H, W] float32, weights [K] float32)."""
    t, w = encode_heatmaps_batch(np.asarray(coords)[None], np.asarray(visibility)[None], size, sigma)
    return t[0], w[0]


def crop_to_heatmap(points, crop_size: tuple[int, int], heatmap_size: tuple[int, int]):
    """Crop pixels → heatmap pixels (pixel centres at integers: p_h = (p_c + ½)·s − ½)."""
    sx, sy = heatmap_size[1] / crop_size[1], heatmap_size[0] / crop_size[0]
    scale = np.array([sx, sy])
    return (points + 0.5) * scale - 0.5 if not hasattr(points, "detach") else \
        (points + 0.5) * points.new_tensor(scale) - 0.5


def heatmap_to_crop(points, heatmap_size: tuple[int, int], crop_size: tuple[int, int]):
    """Heatmap pixels → crop pixels (inverse of ``crop_to_heatmap``)."""
    return crop_to_heatmap(points, heatmap_size, crop_size)


DECODE_METHODS = typing.get_args(DecodeMethod)  # regression: the SPPE's own regressed points


@dataclass(frozen=True)
class HeatmapCodec:
    """One SPPE's heatmaps: training targets, decoding, and the heatmap ↔ crop pixel mapping.

    input_size    (h, w) crop px the SPPE reads
    heatmap_size  (h, w) of its heatmaps; stride = input / heatmap per axis
    sigma         Gaussian target σ in heatmap px (``encode``)
    method        ``decode``: ``regression`` (the model's regressed points when it has them, else
                  DARK), ``dark``, ``quarter`` or ``argmax``
    kernel        DARK blur size (odd)
    offset        None: heatmap pixel centres sit at the centres of stride × stride crop blocks
                  (p_crop = (p_hm + ½)·stride − ½, the trained SPPEs); a number: p_crop = stride·p_hm
                  + offset (BlazePose: −0.5, its cell i sits at crop position 4·i from the edge)

    Crop and heatmap coordinates are (x, y) with pixel centres at integers.
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float = 2.0
    method: str = "dark"
    kernel: int = 11
    offset: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "input_size", (int(self.input_size[0]), int(self.input_size[1])))
        object.__setattr__(self, "heatmap_size", (int(self.heatmap_size[0]), int(self.heatmap_size[1])))
        if self.method not in DECODE_METHODS:
            raise ValueError(f"unknown heatmap decoding method {self.method!r}; known: {', '.join(DECODE_METHODS)}")

    def with_decode(self, method: str, kernel: int | None = None) -> "HeatmapCodec":
        """The same geometry, decoded with ``method`` (and DARK kernel ``kernel`` if given)."""
        return replace(self, method=method, kernel=self.kernel if kernel is None else int(kernel))

    @property
    def stride(self) -> tuple[float, float]:
        """(x, y) crop px per heatmap px."""
        return self.input_size[1] / self.heatmap_size[1], self.input_size[0] / self.heatmap_size[0]

    def to_crop(self, points):
        """Heatmap px [..., 2] → crop px (numpy or torch)."""
        if self.offset is None:
            return heatmap_to_crop(points, self.heatmap_size, self.input_size)
        sx, sy = self.stride
        if sx == sy:
            return points * sx + self.offset
        scale = np.array([sx, sy]) if not hasattr(points, "detach") else points.new_tensor([sx, sy])
        return points * scale + self.offset

    def to_heatmap(self, points):
        """Crop px [..., 2] → heatmap px (numpy or torch; inverse of ``to_crop``)."""
        if self.offset is None:
            return crop_to_heatmap(points, self.input_size, self.heatmap_size)
        sx, sy = self.stride
        scale = np.array([1 / sx, 1 / sy]) if not hasattr(points, "detach") else points.new_tensor([1 / sx, 1 / sy])
        return (points - self.offset) * scale

    def encode(self, crop_xy, visibility):
        """Unbiased Gaussian targets at crop px ``crop_xy`` [K, 2] or [N, K, 2] (numpy or torch),
        ``visibility`` [K] / [N, K] → (targets [(N,) K, H, W] float32, weights [(N,) K] float32);
        see ``encode_heatmaps_batch``."""
        hm = self.to_heatmap(crop_xy)
        if hm.ndim == 2:
            return encode_heatmaps(hm, visibility, self.heatmap_size, self.sigma)
        return encode_heatmaps_batch(hm, visibility, self.heatmap_size, self.sigma)

    def decode(self, heatmaps, regressed=None, confidences=None) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps [N, K, H, W] (numpy or torch) → (crop px [N, K, 2] float64, scores [N, K]).

        ``regressed`` [N, K, 2] crop px: the model's own points (numpy), used when ``method`` is
        ``regression`` (without them ``regression`` decodes with DARK). ``confidences`` [N, K]: the
        model's keypoint scores; without them the scores are the heatmap maxima.
        """
        if self.method == "regression" and regressed is not None:
            scores = confidences if confidences is not None else decode_heatmaps(heatmaps, "argmax")[1]
            return np.asarray(regressed, np.float64), scores
        method = "dark" if self.method == "regression" else self.method
        coords, maxima = decode_heatmaps(heatmaps, method, int(self.kernel))
        return self.to_crop(coords.astype(np.float64)), maxima if confidences is None else confidences
