"""Symmetric STN: pixel convention, exact inverse, batching, gradients, identity initialisation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.models.sstn import (SymmetricSTN, compose_residual, crop, crop_frame, crop_to_image, image_to_crop,
                              invert_affine, rescale_theta, roi_to_affine)


def ramp_image(h: int, w: int, dtype=torch.float64) -> torch.Tensor:
    """Channel 0 holds each pixel's x, channel 1 its y: bilinear sampling of it returns the sample point."""
    y, x = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return torch.stack([x, y])[None]


def random_rois(rng, n: int, img_hw=(120, 160)):
    H, W = img_hw
    centers = np.stack([rng.uniform(0.35 * W, 0.65 * W, n), rng.uniform(0.35 * H, 0.65 * H, n)], -1)
    sizes = rng.uniform(20, 40, n)
    rotations = rng.uniform(-math.pi, math.pi, n)
    return centers, sizes, rotations


@pytest.mark.parametrize("out_size", [(8, 8), (16, 12), (12, 16)])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_roi_geometry(out_size, backend):
    """Crop centre → ROI centre; the ROI side spans the crop's larger side; rotation turns the x axis."""
    h, w = out_size
    c, s, r = np.array([[50.25, 30.5]]), np.array([40.0]), np.array([0.3])
    args = (c, s, r) if backend == "numpy" else tuple(torch.tensor(a) for a in (c, s, r))
    theta = roi_to_affine(*args, out_size=out_size)
    theta = np.asarray(theta)
    centre = crop_to_image(np.array([[[(w - 1) / 2, (h - 1) / 2]]]), theta)[0, 0]
    np.testing.assert_allclose(centre, c[0], atol=1e-12)
    # Opposite edges of the larger side are `size` apart, along the rotated axis.
    if w >= h:
        ends = np.array([[[-0.5, (h - 1) / 2], [w - 0.5, (h - 1) / 2]]])
        direction = np.array([math.cos(0.3), math.sin(0.3)])
    else:
        ends = np.array([[[(w - 1) / 2, -0.5], [(w - 1) / 2, h - 0.5]]])
        direction = np.array([-math.sin(0.3), math.cos(0.3)])
    a, b = crop_to_image(ends, theta)[0]
    np.testing.assert_allclose(b - a, 40.0 * direction, atol=1e-12)


def test_roi_width_height_sizes_map_each_axis():
    theta = roi_to_affine(np.array([[10.0, 20.0]]), np.array([[30.0, 60.0]]), np.array([0.0]), out_size=(16, 8))
    corners = crop_to_image(np.array([[[-0.5, -0.5], [7.5, 15.5]]]), theta)[0]
    np.testing.assert_allclose(corners, [[-5.0, -10.0], [25.0, 50.0]], atol=1e-12)


@pytest.mark.parametrize("rotation", [0.0, 0.7, -2.1, math.pi])
@pytest.mark.parametrize("out_size", [(9, 7), (16, 16)])
def test_crop_samples_at_theta_points(rotation, out_size):
    """On a ramp image, each crop pixel's value is the image point θ sends it to (pixel convention)."""
    h, w = out_size
    img = ramp_image(60, 80)
    theta = roi_to_affine(torch.tensor([[40.3, 29.8]], dtype=torch.float64), torch.tensor([20.0], dtype=torch.float64),
                          torch.tensor([rotation], dtype=torch.float64), out_size)
    out = crop(img, theta, out_size)[0]  # [2, h, w]
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    expected = crop_to_image(torch.stack([u, v], -1).reshape(1, -1, 2), theta).reshape(h, w, 2)
    torch.testing.assert_close(out.permute(1, 2, 0), expected, atol=1e-9, rtol=0)


def test_marker_lands_where_image_to_crop_says():
    """A Gaussian marker at a real-valued image point is found in the crop at image_to_crop(point)."""
    H, W, sigma = 100, 140, 3.0
    marker = np.array([71.37, 46.81])
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.exp(-((xx - marker[0]) ** 2 + (yy - marker[1]) ** 2) / (2 * sigma ** 2))
    theta = roi_to_affine(np.array([[68.0, 50.0]]), np.array([48.0]), np.array([0.45]), (64, 64))
    out = crop(torch.tensor(img)[None, None], theta, (64, 64))[0, 0].numpy()
    v, u = np.mgrid[0:64, 0:64].astype(np.float64)
    found = np.array([(out * u).sum() / out.sum(), (out * v).sum() / out.sum()])
    expected = image_to_crop(marker[None, None], theta)[0, 0]
    assert np.abs(found - expected).max() < 0.01


@pytest.mark.parametrize("backend", ["numpy", "torch32", "torch64"])
def test_crop_then_inverse_round_trip(backend, rng):
    """Image → crop → image returns points to < 0.01 px (SDTN∘STN = identity to 1e-4)."""
    centers, sizes, rotations = random_rois(rng, 6)
    pts = rng.uniform(0, 160, (6, 17, 2))
    if backend == "numpy":
        theta = roi_to_affine(centers, sizes, rotations, (256, 192))
        back = crop_to_image(image_to_crop(pts, theta), theta)
        err = np.abs(back - pts).max()
    else:
        dt = torch.float32 if backend == "torch32" else torch.float64
        theta = roi_to_affine(*(torch.tensor(a, dtype=dt) for a in (centers, sizes, rotations)), out_size=(256, 192))
        p = torch.tensor(pts, dtype=dt)
        back = SymmetricSTN.sdtn(SymmetricSTN.stn(p, theta), theta)
        assert back.dtype == dt
        err = float((back - p).abs().max())
    assert err < 1e-4


def test_invert_affine_composes_to_identity(rng):
    theta = roi_to_affine(*random_rois(rng, 5), (64, 48))
    inv = invert_affine(theta)
    full = lambda t: np.concatenate([t, np.broadcast_to([0.0, 0.0, 1.0], (len(t), 1, 3))], 1)  # noqa: E731
    np.testing.assert_allclose(full(theta) @ full(inv), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)


def test_rescale_theta_covers_the_same_region(rng):
    theta = roi_to_affine(*random_rois(rng, 4), (256, 192))
    small = rescale_theta(theta, (256, 192), (64, 48))
    corners_big = np.array([[[-0.5, -0.5], [191.5, 255.5], [191.5, -0.5]]] * 4)
    corners_small = np.array([[[-0.5, -0.5], [47.5, 63.5], [47.5, -0.5]]] * 4)
    np.testing.assert_allclose(crop_to_image(corners_small, small), crop_to_image(corners_big, theta), atol=1e-9)
    torch_small = rescale_theta(torch.tensor(theta), (256, 192), (64, 48))
    np.testing.assert_allclose(torch_small.numpy(), small, atol=1e-12)


def test_batch_index_matches_per_image_crops(rng):
    images = torch.rand(3, 2, 40, 50, dtype=torch.float64)
    theta = torch.tensor(roi_to_affine(*random_rois(rng, 5, (40, 50)), (10, 8)))
    index = torch.tensor([2, 0, 2, 1, 0])
    batched = crop(images, theta, (10, 8), batch_index=index)
    for i in range(5):
        single = crop(images[index[i]:index[i] + 1], theta[i:i + 1], (10, 8))
        torch.testing.assert_close(batched[i:i + 1], single, atol=1e-12, rtol=0)
    same = crop(images, theta, (10, 8), batch_index=torch.full((5,), 1))  # one-image path
    torch.testing.assert_close(same, crop(images[1:2], theta, (10, 8)), atol=0, rtol=0)
    assert crop(images, theta[:0], (10, 8), torch.zeros(0, dtype=torch.long)).shape == (0, 2, 10, 8)
    with pytest.raises(ValueError):
        crop(images, theta, (10, 8))  # B > 1, B != N, no batch_index


def test_half_precision_images_keep_subpixel_geometry():
    img = ramp_image(90, 120, torch.float32) / 128
    theta = roi_to_affine(torch.tensor([[61.3, 44.9]]), torch.tensor([30.0]), torch.tensor([0.2]), (16, 16))
    ref = crop(img, theta, (16, 16))
    half = crop(img.half(), theta, (16, 16))
    assert half.dtype == torch.float16
    assert float((half.float() - ref).abs().max() * 128) < 0.1


def test_gradcheck_on_theta():
    """Bilinear crop is differentiable in θ (double precision, small sizes)."""
    torch.manual_seed(0)
    img = torch.nn.functional.avg_pool2d(torch.rand(1, 2, 14, 16, dtype=torch.float64), 3, 1, 1)
    theta = roi_to_affine(torch.tensor([[7.9, 6.6]], dtype=torch.float64), torch.tensor([9.0], dtype=torch.float64),
                          torch.tensor([0.37], dtype=torch.float64), (5, 4)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: crop(img, t, (5, 4)), (theta,), eps=1e-6, atol=1e-5)
    pts = torch.rand(1, 3, 2, dtype=torch.float64) * 5
    assert torch.autograd.gradcheck(lambda t: crop_to_image(pts, t), (theta,))
    assert torch.autograd.gradcheck(lambda t: image_to_crop(pts, t), (theta,))


def test_compose_residual_acts_in_normalised_crop_coordinates():
    theta = roi_to_affine(torch.tensor([[30.0, 40.0]], dtype=torch.float64), torch.tensor([20.0], dtype=torch.float64),
                          torch.tensor([0.0], dtype=torch.float64), (8, 8))
    delta = torch.tensor([[[-0.5, 0.0, 0.5], [0.0, -0.5, 0.0]]], dtype=torch.float64)  # zoom ×2, shift right
    out = compose_residual(theta, delta, (8, 8))
    corners = crop_to_image(torch.tensor([[[-0.5, -0.5], [7.5, 7.5]]], dtype=torch.float64), out)[0]
    # x̂' = 0.5·x̂ + 0.5 → normalised x ∈ [0, 1] → image x ∈ [30, 40]; y ∈ [-0.5, 0.5] → [35, 45]
    torch.testing.assert_close(corners, torch.tensor([[30.0, 35.0], [40.0, 45.0]], dtype=torch.float64))


@pytest.mark.parametrize("backbone", ["light", "resnet18"])
def test_identity_initialised_and_gradients_reach_theta_and_loc_net(backbone, rng):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 96, 128)
    theta_box = torch.tensor(roi_to_affine(*random_rois(rng, 3, (96, 128)), (64, 48)), dtype=torch.float32)
    plain = crop(images, theta_box, (64, 48), batch_index=torch.tensor([0, 1, 1]))
    stn = SymmetricSTN(out_size=(64, 48), loc_size=(32, 24), backbone=backbone)
    theta_box.requires_grad_(True)
    crops, theta = stn(images, theta_box, batch_index=torch.tensor([0, 1, 1]))
    assert crops.shape == (3, 3, 64, 48)
    torch.testing.assert_close(theta, theta_box, atol=1e-5, rtol=0)
    torch.testing.assert_close(crops, plain, atol=1e-5, rtol=0)
    (crops * torch.linspace(0, 1, 48)).sum().backward()
    assert theta_box.grad is not None and float(theta_box.grad.abs().sum()) > 0
    assert float(stn.loc.fc.weight.grad.abs().sum()) > 0 and float(stn.loc.fc.bias.grad.abs().sum()) > 0


def test_unlearned_module_is_the_plain_crop(rng):
    images = torch.rand(1, 3, 96, 128)
    theta_box = roi_to_affine(*random_rois(rng, 4, (96, 128)), (32, 24))
    crops, theta = SymmetricSTN(out_size=(32, 24), learned=False)(images, theta_box)
    torch.testing.assert_close(crops, crop(images, theta_box, (32, 24)), atol=0, rtol=0)
    np.testing.assert_allclose(theta.numpy(), theta_box, atol=1e-6)


def test_uint8_images_are_rounded_not_truncated():
    img = torch.tensor([[[[10, 11], [10, 11]]]], dtype=torch.uint8)
    theta = torch.tensor([[[1.0, 0.0, 0.75], [0.0, 1.0, 0.0]]])  # 3/4 of the way to the second column
    out = crop(img, theta, (1, 1))
    assert out.dtype == torch.uint8 and int(out) == 11  # 10.75 → 11 (truncation would give 10)


@pytest.mark.parametrize("rotation", [0.0, 0.7, -2.1, math.pi])
@pytest.mark.parametrize("out_size", [(9, 7), (32, 32)])
def test_crop_frame_samples_at_theta_points(rotation, out_size):
    """The cv2 CPU path on a uint8 ramp: each crop pixel holds the image point θ sends it to, to
    OpenCV's 1/32-px sampling plus uint8 rounding (≤ 0.5 + 1/32 + ε grey levels)."""
    h, w = out_size
    ramp = ramp_image(120, 200)[0].permute(1, 2, 0).numpy()  # [H, W, 2]: x, y
    frame = np.concatenate([ramp, np.full((120, 200, 1), 7.0)], -1).astype(np.uint8)
    theta = roi_to_affine(np.array([[100.3, 59.8]]), np.array([40.0]), np.array([rotation]), out_size)
    out = crop_frame(frame, theta, out_size)
    assert out.shape == (1, 3, h, w) and out.dtype == torch.float32
    assert out.permute(0, 2, 3, 1).is_contiguous()  # NHWC memory: the models' input layout
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    expected = crop_to_image(np.stack([u, v], -1).reshape(1, -1, 2), theta).reshape(h, w, 2)
    got = out[0].permute(1, 2, 0).numpy()
    assert np.abs(got[..., :2] - expected).max() <= 0.5 + 1 / 32 + 1e-3
    assert (got[..., 2] == 7.0).all()


def test_crop_frame_matches_crop_with_zero_padding(rng):
    """Same crops as the torch path, ROIs partly off the frame included (zero padding): within 1
    grey level on a smooth image away from the frame edge; across the edge (up to 255 → 0 within
    one pixel) the 1/64-px worst-case sampling offset adds up to 255/64 ≈ 4, plus 0.5 rounding."""
    H, W = 90, 130
    yy, xx = np.mgrid[0:H, 0:W]
    frame = np.stack([127 + 100 * np.sin(xx / 9.0), 127 + 100 * np.cos(yy / 7.0), np.full((H, W), 200)], -1)
    frame = frame.astype(np.uint8)
    centers = np.stack([rng.uniform(-20, W + 20, 12), rng.uniform(-20, H + 20, 12)], -1)
    theta = roi_to_affine(centers, rng.uniform(20, 80, 12), rng.uniform(-math.pi, math.pi, 12), (24, 20))
    ref = crop(torch.from_numpy(frame.astype(np.float32)).permute(2, 0, 1)[None], torch.from_numpy(theta), (24, 20))
    fast = crop_frame(frame, theta, (24, 20), scale=0.5) * 2
    diff = (fast - ref).abs()
    assert float(diff.max()) <= 0.5 + 255 / 64
    # away from the edge: the sample point and its bilinear neighbours are all inside the frame
    v, u = np.mgrid[0:24, 0:20].astype(np.float64)
    pts = crop_to_image(np.broadcast_to(np.stack([u, v], -1).reshape(1, -1, 2), (12, 480, 2)), theta)
    inside = ((pts[..., 0] >= 1) & (pts[..., 0] <= W - 2) & (pts[..., 1] >= 1) & (pts[..., 1] <= H - 2)).reshape(12, 24, 20)
    outside = ((pts[..., 0] < -1) | (pts[..., 0] > W) | (pts[..., 1] < -1) | (pts[..., 1] > H)).reshape(12, 24, 20)
    assert inside.any() and outside.any()
    assert float(diff.permute(0, 2, 3, 1)[torch.from_numpy(inside)].max()) <= 1.0
    assert (fast.permute(0, 2, 3, 1)[torch.from_numpy(outside)] == 0).all()
    assert crop_frame(frame, theta[:0], (24, 20)).shape == (0, 3, 24, 20)
    with pytest.raises(ValueError):
        crop_frame(frame.astype(np.float32), theta, (24, 20))
