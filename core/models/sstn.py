"""Symmetric spatial transformer (RMPE): ROI → affine θ, batched crop (STN), exact inverse (SDTN).

Conventions (used by every function here):

* Pixel coordinates have pixel centres at integers: pixel (row i, column j) is the unit square
  centred at (x=j, y=i); an image of width W spans x ∈ [-0.5, W-0.5]. This is the convention of
  ``F.grid_sample(..., align_corners=False)`` and of half-pixel-centre resizes.
* θ [N, 2, 3] maps output-crop pixel coordinates (u, v, 1) to input-image pixel coordinates:
  (x, y) = θ[:, :2] @ (u, v) + θ[:, 2].
* ``roi_to_affine``: a square ROI of side ``size`` (image pixels) centred at ``center`` and
  rotated by ``rotation`` radians is mapped with one isotropic scale ``size / max(h, w)``, so the
  ROI side spans the crop's *larger* side and the shorter side sees the central part of the
  square (no aspect distortion). ``sizes`` may also be [N, 2] = (width, height): then the ROI
  width maps onto the crop width and its height onto the crop height (per-axis scale).
  The rotation is the angle of the crop's x axis in the image, measured from image +x towards
  image +y (clockwise on screen, y down) — MediaPipe's ``NormalizedRect.rotation`` convention:
  the crop shows the image content rotated by −rotation, i.e. upright when rotation is the body
  angle.

The plain functions are the inference crop. ``SymmetricSTN`` adds the learned part: a
localisation network predicting a residual affine δθ in normalised crop coordinates, identity at
initialisation, composed on top of the box θ; ``sdtn`` maps SPPE coordinates back exactly.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.geometry import (affine_apply, affine_invert, pixel_to_normalised, pixel_to_unit_matrix,
                           unit_to_pixel_matrix)

__all__ = [
    "roi_to_affine", "crop", "crop_frame", "crop_to_image", "image_to_crop", "invert_affine", "rescale_theta",
    "compose_residual", "LocalisationNet", "SymmetricSTN",
]


def _as_tensor(x, like: torch.Tensor | None = None, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    device = like.device if like is not None else None
    if dtype is None:
        dtype = like.dtype if like is not None and like.is_floating_point() else torch.float64
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def roi_to_affine(centers, sizes, rotations, out_size: tuple[int, int]):
    """θ [N, 2, 3] (crop pixels → image pixels) for N square (or w×h) rotated ROIs.

    centers [N, 2] (x, y) image px; sizes [N] (square side) or [N, 2] (width, height) image px;
    rotations [N] radians; out_size (h, w) of the crop. Returns a torch tensor when ``centers``
    is one (same dtype/device), otherwise a float64 numpy array.
    """
    h, w = int(out_size[0]), int(out_size[1])
    if isinstance(centers, torch.Tensor):
        c = centers
        dtype = c.dtype if c.is_floating_point() else torch.float32
        c = c.to(dtype)
        s = _as_tensor(sizes, c, dtype)
        r = _as_tensor(rotations, c, dtype)
        cos, sin = torch.cos(r), torch.sin(r)
        if s.dim() == 2:
            sx, sy = s[:, 0] / w, s[:, 1] / h
        else:
            sx = sy = s / max(h, w)
        a = torch.stack([torch.stack([cos * sx, -sin * sy], -1), torch.stack([sin * sx, cos * sy], -1)], -2)
        u0 = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=dtype, device=c.device)
        t = c - a @ u0
        return torch.cat([a, t[..., None]], -1)
    c = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    s = np.asarray(sizes, dtype=np.float64)
    r = np.asarray(rotations, dtype=np.float64).reshape(-1)
    cos, sin = np.cos(r), np.sin(r)
    if s.ndim == 2:
        sx, sy = s[:, 0] / w, s[:, 1] / h
    else:
        sx = sy = s.reshape(-1) / max(h, w)
    a = np.stack([np.stack([cos * sx, -sin * sy], -1), np.stack([sin * sx, cos * sy], -1)], -2)
    t = c - a @ np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    return np.concatenate([a, t[..., None]], -1)


def crop(images: torch.Tensor, theta, out_size: tuple[int, int], batch_index=None) -> torch.Tensor:
    """Bilinear crops [N, C, h, w] of ``images`` [B, C, H, W] through pixel θ [N, 2, 3] (zero padding).

    ``batch_index`` [N] picks the source image of each crop (default: all from image 0 when B == 1,
    else crop i from image i). One ``affine_grid`` and one ``grid_sample`` call for all crops.
    Half-precision and integer images are sampled in float32 (normalised coordinates in fp16 lose
    ~0.5 px on a 1080p frame) and the result is cast back (rounded for integer types).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}")
    B, C, H, W = images.shape
    h, w = int(out_size[0]), int(out_size[1])
    out_dtype = images.dtype
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    theta = _as_tensor(theta, work).to(device=images.device)
    if theta.dim() != 3 or theta.shape[1:] != (2, 3):
        raise ValueError(f"theta must be [N, 2, 3], got {tuple(theta.shape)}")
    n = theta.shape[0]
    if n == 0:
        return images.new_zeros((0, C, h, w))
    theta_n = pixel_to_normalised(theta, (H, W), (h, w)).to(work.dtype)
    grid = F.affine_grid(theta_n, [n, C, h, w], align_corners=False)  # [N, h, w, 2]
    if batch_index is None:
        if B == 1:
            batch_index = torch.zeros(n, dtype=torch.long, device=images.device)
        elif B == n:
            batch_index = torch.arange(n, device=images.device)
        else:
            raise ValueError(f"batch_index is required when B ({B}) != N ({n}) and B > 1")
    batch_index = torch.as_tensor(batch_index, dtype=torch.long, device=images.device).reshape(-1)
    if batch_index.numel() != n:
        raise ValueError("batch_index must have one entry per θ")
    single = bool((batch_index == batch_index[0]).all())
    if single:
        # All crops from one image: sample a tall [1, N·h, w] grid, no per-crop image copies.
        src = work[int(batch_index[0]):int(batch_index[0]) + 1]
        out = F.grid_sample(src, grid.reshape(1, n * h, w, 2), mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        out = out.reshape(C, n, h, w).transpose(0, 1)
    else:
        out = F.grid_sample(work.index_select(0, batch_index), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    if not out_dtype.is_floating_point:  # integer images (uint8 frames): round, don't truncate
        info = torch.iinfo(out_dtype)
        out = out.round().clamp(info.min, info.max)
    return out.to(out_dtype).contiguous()


def crop_frame(frame: np.ndarray, theta: np.ndarray, out_size: tuple[int, int], scale: float = 1.0) -> torch.Tensor:
    """CPU inference crop: ``crop`` of one RGB frame [H, W, C] uint8 (numpy) through pixel θ
    [N, 2, 3] (numpy), times ``scale`` → float32 [N, C, h, w] in channels-last memory (the NHWC
    models take it without a copy).

    Same geometry as ``crop``: one ``cv2.warpAffine`` per ROI with ``WARP_INVERSE_MAP`` (θ already
    maps crop pixels to image pixels, and OpenCV, like this module, puts pixel centres at
    integers), bilinear, and ``BORDER_CONSTANT`` 0, which is ``grid_sample``'s zero padding (a
    neighbour outside the frame contributes 0). OpenCV samples at 1/32 px and rounds to uint8, so
    values differ from ``crop`` by about one grey level. It reads only the ROI's pixels, straight
    from the uint8 frame: measured at 1768×994, far below the float conversion of the whole frame
    that the torch path needs (bench/bench_crop.py).
    """
    import cv2

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 [H, W, C], got {frame.dtype} {frame.shape}")
    theta = np.asarray(theta, dtype=np.float64).reshape(-1, 2, 3)
    h, w = int(out_size[0]), int(out_size[1])
    c = frame.shape[2]
    warped = np.empty((len(theta), h, w, c), np.uint8)
    for i, m in enumerate(theta):
        cv2.warpAffine(frame, m, (w, h), dst=warped[i], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = np.multiply(warped, np.float32(scale), dtype=np.float32)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def _affine_apply(points, theta, inverse: bool):
    """θ converted to the points' kind (tensor of their dtype/device, or float64 numpy) first."""
    if isinstance(points, torch.Tensor):
        dtype = points.dtype if points.is_floating_point() else torch.float32
        theta = _as_tensor(theta, points, dtype).to(device=points.device, dtype=dtype)
    else:
        theta = (theta.detach().cpu().numpy() if isinstance(theta, torch.Tensor) else np.asarray(theta))
        theta = theta.astype(np.float64)
    return affine_apply(points, affine_invert(theta) if inverse else theta)


def crop_to_image(points, theta):
    """SDTN: crop pixels [N, K, 2] → image pixels through θ [N, 2, 3] (numpy or torch, same kind out)."""
    return _affine_apply(points, theta, inverse=False)


def image_to_crop(points, theta):
    """STN on points: image pixels [N, K, 2] → crop pixels through the inverse of θ."""
    return _affine_apply(points, theta, inverse=True)


def invert_affine(theta):
    """Exact inverse [N, 2, 3] of affine maps θ [N, 2, 3] (``core.geometry.affine_invert``)."""
    return affine_invert(theta)


def rescale_theta(theta, from_size: tuple[int, int], to_size: tuple[int, int]):
    """θ for a crop of ``to_size`` (h, w) covering the same image region as θ for ``from_size``."""
    (fh, fw), (th_, tw) = from_size, to_size
    kx, ky = fw / tw, fh / th_
    # pixel-centre convention: u_from = (u_to + 0.5)·kx − 0.5
    if isinstance(theta, torch.Tensor):
        k = torch.tensor([kx, ky], dtype=theta.dtype, device=theta.device)
        off = torch.tensor([0.5 * kx - 0.5, 0.5 * ky - 0.5], dtype=theta.dtype, device=theta.device)
        a = theta[:, :, :2]
        return torch.cat([a * k, (theta[:, :, 2] + a @ off)[..., None]], -1)
    theta = np.asarray(theta, dtype=np.float64)
    a = theta[:, :, :2]
    off = np.array([0.5 * kx - 0.5, 0.5 * ky - 0.5])
    return np.concatenate([a * np.array([kx, ky]), (theta[:, :, 2] + a @ off)[..., None]], -1)


def compose_residual(theta: torch.Tensor, delta: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """θ ∘ D, where D = identity + ``delta`` [N, 2, 3] acts in normalised crop coordinates [-1, 1].

    Working in normalised crop coordinates makes δθ independent of the crop resolution.
    """
    dt, dev = theta.dtype, theta.device
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dt, device=dev)
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=dt, device=dev).expand(theta.shape[0], 1, 3)
    m = torch.cat([eye + delta.to(dt), bottom], 1)
    to_norm = pixel_to_unit_matrix(out_size, theta)
    from_norm = unit_to_pixel_matrix(out_size, theta)
    full = torch.cat([theta, bottom], 1)
    return (full @ from_norm @ m @ to_norm)[:, :2]


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class LocalisationNet(nn.Module):
    """ResNet-style regressor of the residual affine δθ (6 numbers), zero-initialised output.

    ``backbone="resnet18"`` is the paper's size (7×7 stem, widths 64–512, 2 blocks per stage);
    ``"light"`` (default) keeps the same shape at widths 16–128 and one block per stage.
    """

    PRESETS = {
        "light": dict(widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1), stem=3),
        "resnet18": dict(widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), stem=7),
    }

    def __init__(self, backbone: str = "light", in_channels: int = 3):
        super().__init__()
        if backbone not in self.PRESETS:
            raise ValueError(f"unknown localisation backbone {backbone!r}; known: {sorted(self.PRESETS)}")
        p = self.PRESETS[backbone]
        widths, blocks, k = p["widths"], p["blocks"], p["stem"]
        stem = [nn.Conv2d(in_channels, widths[0], k, 2, k // 2, bias=False), nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True)]
        if backbone == "resnet18":
            stem.append(nn.MaxPool2d(3, 2, 1))
        layers, cin = [], widths[0]
        for i, (c, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(_BasicBlock(cin, c, 2 if (j == 0 and i > 0) else 1))
                cin = c
        self.features = nn.Sequential(*stem, *layers)
        self.fc = nn.Linear(cin, 6)
        # Identity initialisation: δθ = 0, so the learned transformer starts as the box crop.
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).mean(dim=(2, 3))
        return self.fc(f).view(-1, 2, 3)


class SymmetricSTN(nn.Module):
    """Learned STN on top of the box crop, and its SDTN.

    forward(images [B, C, H, W], theta_box [N, 2, 3] pixel θ for ``out_size``, batch_index)
    → (crops [N, C, h, w], theta [N, 2, 3]). The localisation net sees the box crop at
    ``loc_size``; its δθ (normalised crop coordinates) is composed on top of θ_box.
    With ``learned=False`` this is exactly ``crop(images, theta_box, out_size)``.
    """

    def __init__(self, out_size: tuple[int, int] = (256, 192), loc_size: tuple[int, int] = (64, 48),
                 backbone: str = "light", learned: bool = True, in_channels: int = 3):
        super().__init__()
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.loc_size = (int(loc_size[0]), int(loc_size[1]))
        self.loc = LocalisationNet(backbone, in_channels) if learned else None

    def forward(self, images: torch.Tensor, theta_box, batch_index=None):
        theta_box = _as_tensor(theta_box, images if images.is_floating_point() else None).to(images.device)
        if self.loc is None or theta_box.shape[0] == 0:
            return crop(images, theta_box, self.out_size, batch_index), theta_box
        loc_in = crop(images, rescale_theta(theta_box, self.out_size, self.loc_size), self.loc_size, batch_index)
        delta = self.loc(loc_in)
        theta = compose_residual(theta_box, delta, self.out_size)
        return crop(images, theta, self.out_size, batch_index), theta

    @staticmethod
    def stn(points, theta):
        """Image pixels → crop pixels (the STN applied to points)."""
        return image_to_crop(points, theta)

    @staticmethod
    def sdtn(points, theta):
        """SPPE crop pixels → image pixels with the exact inverse of the STN."""
        return crop_to_image(points, theta)
