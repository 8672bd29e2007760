"""Stacked Hourglass: output shapes, intermediate supervision, odd sizes, gradients."""
from __future__ import annotations

import pytest
import torch

from core.models.hourglass import Hourglass, PreActBottleneck, StackedHourglass


@pytest.mark.parametrize("stacks, features, depth, size", [
    (1, 16, 4, (128, 96)),   # 32x24 heatmaps: depth 4 pools 24 → 12 → 6 → 3 → 2 (odd sizes)
    (2, 16, 4, (64, 48)),
    (3, 8, 2, (96, 72)),
    (1, 8, 1, (40, 28)),
])
def test_output_per_stack_at_quarter_resolution(stacks, features, depth, size):
    torch.manual_seed(0)
    net = StackedHourglass(num_keypoints=17, stacks=stacks, features=features, depth=depth).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, *size))
    assert len(out) == stacks
    for o in out:
        assert o.shape == (2, 17, size[0] // 4, size[1] // 4)
        assert torch.isfinite(o).all()


def test_intermediate_supervision_reaches_every_stack():
    """A loss on the first stack's output alone must train the stem and first hourglass only;
    a loss on the last stack trains everything (the merge path feeds it)."""
    torch.manual_seed(0)
    net = StackedHourglass(17, stacks=2, features=16, depth=2)
    out = net(torch.randn(2, 3, 32, 32))
    out[0].sum().backward()
    assert net.stem[0].weight.grad.abs().sum() > 0
    assert net.hourglasses[0].up1.conv1.weight.grad.abs().sum() > 0
    assert net.hourglasses[1].up1.conv1.weight.grad is None
    net.zero_grad()
    out = net(torch.randn(2, 3, 32, 32))
    out[1].sum().backward()
    assert net.hourglasses[0].up1.conv1.weight.grad.abs().sum() > 0
    assert net.merge_heatmaps[0].weight.grad.abs().sum() > 0


def test_bottleneck_preactivation_and_skip():
    block = PreActBottleneck(8, 16)
    assert block.conv1.out_channels == 8 and block.conv2.out_channels == 8 and block.conv3.out_channels == 16
    assert block.skip is not None and PreActBottleneck(16, 16).skip is None
    assert block(torch.randn(1, 8, 5, 7)).shape == (1, 16, 5, 7)


def test_hourglass_is_recursive_to_depth():
    hg = Hourglass(depth=4, features=8)
    levels = 0
    while isinstance(hg, Hourglass):
        levels += 1
        hg = hg.low2
    assert levels == 4 and isinstance(hg, PreActBottleneck)


def test_nearest_upsampling_keeps_blocks_constant():
    """Upsampling is nearest-neighbour: with the skip branch reduced to the identity (its residual
    zeroed), output − input is the upsampled coarse branch: constant on every 2×2 block."""
    torch.manual_seed(0)
    hg = Hourglass(depth=1, features=4).eval()
    for p in hg.up1.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        up = hg(x) - x
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        torch.testing.assert_close(up[..., 0::2, 0::2], up[..., dy::2, dx::2], atol=1e-5, rtol=0)
    assert up.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [dict(stacks=0), dict(depth=0), dict(features=1)])
def test_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        StackedHourglass(17, **{**dict(stacks=1, features=8, depth=2), **kwargs})
