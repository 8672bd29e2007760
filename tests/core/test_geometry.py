"""core.geometry: box IoU, affine compose/invert/apply, pixel↔unit θ; numpy and torch agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.geometry import (affine_apply, affine_compose, affine_invert, box_iou, normalised_to_pixel,
                           pixel_to_normalised)

IOU_CASES = [  # (a, b, IoU)
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
    ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
    ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
    ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),  # contained
    ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),  # apart
    ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # both empty: 0, not NaN
    ([5, 5, 0, 0], [0, 0, 10, 10], 0.0),  # inverted box counts as empty
]


@pytest.mark.parametrize("a, b, expected", IOU_CASES)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_box_iou_table(a, b, expected, kind):
    conv = (lambda x: np.array([x], float)) if kind == "numpy" else (lambda x: torch.tensor([x], dtype=torch.float64))
    iou = box_iou(conv(a), conv(b))
    assert type(iou) is type(conv(a)) and tuple(iou.shape) == (1, 1)
    assert float(iou[0, 0]) == pytest.approx(expected, abs=1e-12)


def test_box_iou_matrix_shape_and_symmetry():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (5, 2))
    a = np.concatenate([xy, xy + rng.uniform(1, 50, (5, 2))], 1)
    b = a[:3] + 3.0
    m = box_iou(a, b)
    assert m.shape == (5, 3)
    np.testing.assert_allclose(m, box_iou(b, a).T)
    np.testing.assert_allclose(box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy(), m)


def _theta(angle, scale, tx, ty):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


THETAS = [_theta(0, 1, 0, 0), _theta(0.3, 2.0, 5, -7), _theta(-1.2, 0.25, 100, 3),
          np.array([[1.5, 0.2, 1.0], [-0.1, 0.7, 2.0]])]  # shear + anisotropic


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_compose_invert_apply_agree(kind):
    rng = np.random.default_rng(1)
    pts = rng.uniform(-50, 50, (len(THETAS), 6, 2))
    a = np.stack(THETAS)
    b = np.stack(THETAS[::-1])
    conv = (lambda x: x) if kind == "numpy" else torch.from_numpy
    ab = affine_compose(conv(a), conv(b))
    inv = affine_invert(conv(a))
    # (a ∘ b)(p) = a(b(p)); a⁻¹(a(p)) = p; single [2, 3] maps broadcast the same way
    np.testing.assert_allclose(np.asarray(affine_apply(conv(pts), ab)),
                               np.asarray(affine_apply(affine_apply(conv(pts), conv(b)), conv(a))), atol=1e-9)
    np.testing.assert_allclose(np.asarray(affine_apply(affine_apply(conv(pts), conv(a)), inv)), pts, atol=1e-9)
    np.testing.assert_allclose(np.asarray(affine_compose(conv(a[0]), conv(b[0]))), np.asarray(ab[0]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(affine_compose(conv(a), inv)), np.tile(np.eye(2, 3), (len(a), 1, 1)),
                               atol=1e-9)


def test_compose_is_differentiable():
    a = torch.tensor(np.stack(THETAS), requires_grad=True)
    affine_compose(a, affine_invert(a)).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


@pytest.mark.parametrize("in_hw, out_hw", [((48, 64), (16, 16)), ((100, 37), (20, 30))])
def test_pixel_theta_drives_affine_grid_to_pixel_centres(in_hw, out_hw):
    """A pixel θ (crop px → image px) turned unit θ makes affine_grid sample at exactly θ(u, v)."""
    theta = torch.tensor(np.stack([_theta(0.4, 1.7, 20.0, 9.0)]))
    theta_n = pixel_to_normalised(theta, in_hw, out_hw)
    grid = F.affine_grid(theta_n, [1, 1, *out_hw], align_corners=False)[0]  # unit input coords
    H, W = in_hw
    sampled_px = torch.stack([((grid[..., 0] + 1) * W - 1) / 2, ((grid[..., 1] + 1) * H - 1) / 2], -1)
    v, u = torch.meshgrid(torch.arange(out_hw[0], dtype=torch.float64),
                          torch.arange(out_hw[1], dtype=torch.float64), indexing="ij")
    expected = affine_apply(torch.stack([u, v], -1)[None], theta)[0]
    torch.testing.assert_close(sampled_px, expected, atol=1e-9, rtol=0)
    torch.testing.assert_close(normalised_to_pixel(theta_n, in_hw, out_hw), theta)
    np.testing.assert_allclose(pixel_to_normalised(theta.numpy(), in_hw, out_hw), theta_n.numpy(), atol=1e-12)
