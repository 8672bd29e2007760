"""Heatmap decoding (argmax / quarter / DARK) and unbiased encoding."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from bench.reference_numpy import decode_reference
from core.heatmaps import (METHODS, HeatmapCodec, crop_to_heatmap, decode_heatmaps, encode_heatmaps, encode_heatmaps_batch,
                           gaussian_kernel_1d, heatmap_to_crop)

H, W, SIGMA = 64, 48, 2.0


def gaussian_maps(rng, n: int, margin: float = 6.0, size=(H, W), sigma=SIGMA):
    """n single-keypoint maps [n, 1, H, W] with real-valued centres [n, 2] at least ``margin`` from the border."""
    h, w = size
    mu = np.stack([rng.uniform(margin, w - 1 - margin, n), rng.uniform(margin, h - 1 - margin, n)], -1)
    maps, _ = encode_heatmaps_batch(mu[:, None], np.ones((n, 1)), size, sigma)
    return maps, mu


def mean_error(maps, mu, method) -> float:
    coords, _ = decode_heatmaps(maps, method)
    return float(np.linalg.norm(coords[:, 0] - mu, axis=-1).mean())


@pytest.mark.parametrize("ksize", [1, 3, 5, 7, 9, 11, 13, 15])
def test_kernel_is_opencvs(ksize):
    np.testing.assert_allclose(gaussian_kernel_1d(ksize), cv2.getGaussianKernel(ksize, 0).ravel(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("ksize", [0, 4, -3])
def test_kernel_rejects_even_or_non_positive_sizes(ksize):
    with pytest.raises(ValueError):
        gaussian_kernel_1d(ksize)


def test_noise_free_accuracy(rng):
    """DARK ≤ 0.02 px mean error on 64×48, σ = 2 Gaussians; argmax and quarter are far coarser."""
    maps, mu = gaussian_maps(rng, 400)
    errors = {m: mean_error(maps, mu, m) for m in METHODS}
    print("noise-free mean error (px):", {m: round(e, 5) for m, e in errors.items()})
    assert errors["dark"] <= 0.02
    assert errors["dark"] < errors["quarter"] < errors["argmax"]
    assert 0.3 < errors["argmax"] < 0.45  # expected |U(-½, ½)²| ≈ 0.38 px
    assert 0.12 < errors["quarter"] < 0.25


@pytest.mark.parametrize("noise", [0.02, 0.05, 0.1])
def test_dark_beats_quarter_with_additive_noise(rng, noise):
    maps, mu = gaussian_maps(rng, 400)
    noisy = maps + rng.normal(0, noise, maps.shape).astype(np.float32)
    dark, quarter = mean_error(noisy, mu, "dark"), mean_error(noisy, mu, "quarter")
    print(f"noise {noise}: dark {dark:.4f} px, quarter {quarter:.4f} px")
    assert dark < quarter


@pytest.mark.parametrize("case", ["noisy", "tiny", "clamp", "negative", "sharp", "flat", "border"])
@pytest.mark.parametrize("method", METHODS)
def test_matches_literal_reference(rng, case, method):
    """Same results as a literal DarkPose-style decoder (OpenCV blur of the zero-padded map, full
    rescale and clamp) — including maps where the clamp or the border rule decides."""
    maps, _ = gaussian_maps(rng, 60, margin=3.0)
    if case == "noisy":
        maps = maps + rng.normal(0, 0.05, maps.shape).astype(np.float32)
    elif case == "tiny":  # patch values below 1e-10: the full-map rescale and the clamp matter
        maps = (maps * np.float32(1e-12)).astype(np.float32)
    elif case == "clamp":  # max 1.2e-10: the clamp cuts the ±2 px samples only, changing the step
        maps = (maps / maps.max(axis=(-2, -1), keepdims=True) * np.float32(1.2e-10)).astype(np.float32)
    elif case == "negative":
        maps = maps - 2.0
    elif case == "sharp":  # σ = 0.5: far tails underflow to exactly 0
        maps, _ = gaussian_maps(rng, 60, margin=3.0, sigma=0.5)
    elif case == "flat":
        maps = np.zeros_like(maps)
    elif case == "border":
        maps, _ = gaussian_maps(rng, 60, margin=-1.0)
    maps = np.ascontiguousarray(maps.reshape(6, 10, H, W))
    coords, scores = decode_heatmaps(maps, method)
    ref_coords, ref_scores = decode_reference(maps, method)
    np.testing.assert_array_equal(scores, ref_scores)
    np.testing.assert_allclose(coords, ref_coords, rtol=0, atol=2e-5)


@pytest.mark.parametrize("px, refined", [(1, False), (2, True), (W - 3, True), (W - 2, False)])
def test_dark_border_rule(px, refined):
    mu = np.array([[[px + 0.3, 30.2]]])
    maps, _ = encode_heatmaps_batch(mu, np.ones((1, 1)), (H, W), SIGMA)
    coords, _ = decode_heatmaps(maps, "dark")
    assert (coords[0, 0, 0] != px) == refined
    assert (coords[0, 0, 1] != 30.0) == refined  # the rule is joint: both axes or neither
    if refined:  # x is biased by the zero-padded blur at the border (as in DARK); y is not
        assert abs(coords[0, 0, 1] - 30.2) < 0.02


def test_other_kernel_sizes_and_small_maps(rng):
    maps, mu = gaussian_maps(rng, 200, margin=4.0, size=(32, 24), sigma=1.0)
    assert mean_error(maps, mu, "dark") < 0.05
    for k in (3, 5, 7):
        coords, _ = decode_heatmaps(maps, "dark", kernel=k)
        ref, _ = decode_reference(maps, "dark", kernel=k)
        np.testing.assert_allclose(coords, ref, atol=2e-5)


def test_torch_input_and_shapes(rng):
    maps, _ = gaussian_maps(rng, 12)
    maps = maps.reshape(3, 4, H, W)
    coords, scores = decode_heatmaps(torch.from_numpy(maps), "dark")
    ref_coords, ref_scores = decode_heatmaps(maps, "dark")
    assert coords.shape == (3, 4, 2) and scores.shape == (3, 4) and coords.dtype == np.float32
    np.testing.assert_array_equal(coords, ref_coords)
    np.testing.assert_array_equal(scores, ref_scores)
    empty_c, empty_s = decode_heatmaps(np.zeros((0, 17, H, W), np.float32))
    assert empty_c.shape == (0, 17, 2) and empty_s.shape == (0, 17)
    with pytest.raises(ValueError):
        decode_heatmaps(maps[0], "dark")
    with pytest.raises(ValueError):
        decode_heatmaps(maps, "soft-argmax")


def test_argmax_ties_pick_the_first_maximum():
    maps = np.zeros((1, 2, 8, 6), np.float32)
    maps[0, 0, 3, 4] = maps[0, 0, 5, 1] = 1.0
    maps[0, 1, 2, 2] = maps[0, 1, 2, 5] = -1.0
    maps[0, 1] -= 2.0
    coords, scores = decode_heatmaps(maps, "argmax")
    np.testing.assert_array_equal(coords[0], [[4, 3], [0, 0]])
    np.testing.assert_array_equal(scores[0], [1.0, -2.0])


def test_encode_then_dark_decode_recovers_the_centre(rng):
    mu = np.stack([rng.uniform(4, W - 5, 17), rng.uniform(4, H - 5, 17)], -1)
    targets, weights = encode_heatmaps(mu, np.ones(17), (H, W), SIGMA)
    assert targets.shape == (17, H, W) and targets.dtype == np.float32
    np.testing.assert_array_equal(weights, np.ones(17, np.float32))
    coords, scores = decode_heatmaps(targets[None], "dark")
    assert np.abs(coords[0] - mu).max() < 0.01
    assert (scores > 0.85).all()  # real-valued centres: the peak sample is below 1


@pytest.mark.parametrize("centre, visible, weight", [
    ((20.0, 30.0), 1, 1.0),
    ((20.0, 30.0), 0, 0.0),  # invisible
    ((-6.9, 30.0), 1, 1.0),  # off the map, but μ + 3σ + 1 ≥ 0
    ((-7.1, 30.0), 1, 0.0),  # 3σ box fully off the left edge
    ((W + 5.9, 30.0), 1, 1.0),
    ((W + 6.0, 30.0), 1, 0.0),  # μ − 3σ ≥ W
    ((20.0, H + 6.5), 1, 0.0),
])
def test_encode_weight_rule(centre, visible, weight):
    targets, weights = encode_heatmaps(np.array([centre]), np.array([visible]), (H, W), SIGMA)
    assert weights[0] == weight
    if weight == 0:
        assert not targets.any()
    else:
        yy, xx = np.mgrid[0:H, 0:W]
        expected = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * SIGMA ** 2))
        np.testing.assert_allclose(targets[0], expected, atol=1e-6)


def test_encode_batch_torch_matches_numpy(rng):
    mu = rng.uniform(-10, 60, (4, 17, 2))
    vis = rng.integers(0, 3, (4, 17))
    t_np, w_np = encode_heatmaps_batch(mu, vis, (H, W), SIGMA)
    t_th, w_th = encode_heatmaps_batch(torch.tensor(mu), torch.tensor(vis), (H, W), SIGMA)
    assert isinstance(t_th, torch.Tensor) and t_th.shape == (4, 17, H, W)
    np.testing.assert_allclose(t_th.numpy(), t_np, atol=1e-6)
    np.testing.assert_array_equal(w_th.numpy(), w_np)
    single_t, single_w = encode_heatmaps(mu[2], vis[2], (H, W), SIGMA)
    np.testing.assert_array_equal(single_t, t_np[2])
    np.testing.assert_array_equal(single_w, w_np[2])


def test_crop_heatmap_coordinate_maps():
    pts = np.array([[1.5, 1.5], [-0.5, -0.5], [191.5, 255.5]])
    hm = crop_to_heatmap(pts, (256, 192), (64, 48))
    np.testing.assert_allclose(hm, [[0.0, 0.0], [-0.5, -0.5], [47.5, 63.5]])
    np.testing.assert_allclose(heatmap_to_crop(hm, (64, 48), (256, 192)), pts)
    th = crop_to_heatmap(torch.tensor(pts), (256, 192), (64, 48))
    np.testing.assert_allclose(th.numpy(), hm)


@pytest.mark.parametrize("method", METHODS)
def test_parallel_and_serial_paths_agree(rng, method):
    maps, _ = gaussian_maps(rng, 64)
    maps = (maps + rng.normal(0, 0.05, maps.shape).astype(np.float32)).reshape(4, 16, H, W)
    serial = decode_heatmaps(maps, method, parallel=False)
    threaded = decode_heatmaps(maps, method, parallel=True)
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------- HeatmapCodec

CODECS = {
    "trained 256x192 half-pixel": HeatmapCodec((256, 192), (64, 48), sigma=2.0),
    "blazepose offset -0.5": HeatmapCodec((256, 256), (64, 64), sigma=2.0, offset=-0.5),
    "stride 2 half-pixel": HeatmapCodec((128, 96), (64, 48), sigma=1.5, kernel=7),
}
# worst crop-px error per axis, in heatmap px: DARK is sub-pixel; quarter/argmax are not
TOLERANCE = {"dark": 0.01, "quarter": 0.3, "argmax": 0.5}


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("method", ["dark", "quarter", "argmax"])
def test_codec_round_trip_recovers_sub_pixel_centres(rng, name, method):
    codec = CODECS[name].with_decode(method)
    h, w = codec.input_size
    crop_xy = np.stack([rng.uniform(0.15 * w, 0.85 * w, (3, 17)), rng.uniform(0.15 * h, 0.85 * h, (3, 17))], -1)
    targets, weights = codec.encode(crop_xy, np.ones((3, 17)))
    assert targets.shape == (3, 17) + codec.heatmap_size and (weights == 1).all()
    got, scores = codec.decode(targets)
    assert got.shape == (3, 17, 2) and got.dtype == np.float64
    err = np.abs(got - crop_xy) / np.array(codec.stride)
    assert err.max() < TOLERANCE[method]
    assert (scores > 0.85).all()
    single, single_w = codec.encode(crop_xy[0], np.ones(17))  # one person: [K, H, W]
    np.testing.assert_array_equal(single, targets[0])


@pytest.mark.parametrize("name", CODECS)
def test_codec_pixel_mapping_is_invertible_and_torch_friendly(name):
    codec = CODECS[name]
    pts = np.array([[0.0, 0.0], [10.25, 3.5], [-0.5, 100.0]])
    np.testing.assert_allclose(codec.to_crop(codec.to_heatmap(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(codec.to_heatmap(torch.tensor(pts)).numpy(), codec.to_heatmap(pts), atol=1e-9)


def test_codec_mapping_conventions():
    trained, blaze = CODECS["trained 256x192 half-pixel"], CODECS["blazepose offset -0.5"]
    np.testing.assert_allclose(trained.to_crop(np.array([[0.0, 0.0]])), [[1.5, 1.5]])  # block of 4 centred
    np.testing.assert_allclose(blaze.to_crop(np.array([[0.0, 0.0], [63.0, 1.0]])), [[-0.5, -0.5], [251.5, 3.5]])
    assert trained.stride == (4.0, 4.0)


def test_codec_regression_uses_the_model_points_else_dark():
    codec = CODECS["blazepose offset -0.5"].with_decode("regression")
    targets, _ = codec.encode(np.array([[[100.3, 60.7]]]), np.ones((1, 1)))
    regressed = np.array([[[101.0, 61.0]]])
    xy, scores = codec.decode(targets, regressed, np.array([[0.4]], np.float32))
    np.testing.assert_array_equal(xy, regressed)
    assert scores[0, 0] == np.float32(0.4)
    xy, scores = codec.decode(targets, regressed)  # no model confidences: the heatmap maximum
    assert scores[0, 0] == pytest.approx(targets.max())
    xy, _ = codec.decode(targets)  # heatmap-only SPPE: DARK
    np.testing.assert_allclose(xy, [[[100.3, 60.7]]], atol=0.05)
    with pytest.raises(ValueError, match="soft-argmax"):
        codec.with_decode("soft-argmax")
