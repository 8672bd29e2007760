"""ResNet + deconvolution SPPE: trunk layouts, stride, head, checkpoint spec validation."""
from __future__ import annotations

import pytest
import torch

from core.errors import UserError
from core.models.resnet_sppe import RESNET_LAYOUTS, BasicBlock, Bottleneck, ResNetBackbone, ResNetSPPE
from core.models.trained_sppe import SPPEModelSpec, build_sppe_model


@pytest.mark.parametrize("depth, width, expected_out", [(18, 8, 64), (34, 8, 64), (50, 8, 256)])
def test_backbone_stride_32_and_widths(depth, width, expected_out):
    net = ResNetBackbone(depth, width).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, 128, 96))
    assert y.shape == (1, expected_out, 4, 3)
    kind, blocks = RESNET_LAYOUTS[depth]
    block = BasicBlock if kind == "basic" else Bottleneck
    assert [len(s) for s in net.stages] == list(blocks)
    assert all(isinstance(b, block) for s in net.stages for b in s)


@pytest.mark.parametrize("layers, size, out", [(3, (128, 96), (32, 24)), (2, (128, 96), (16, 12)),
                                               (3, (256, 192), (64, 48))])
def test_deconvolution_head_upsamples(layers, size, out):
    net = ResNetSPPE(17, depth=18, width=8, deconv_channels=16, deconv_layers=layers).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, *size))
    assert isinstance(y, list) and len(y) == 1 and y[0].shape == (2, 17) + out


def test_trains():
    torch.manual_seed(0)
    net = ResNetSPPE(5, depth=18, width=8, deconv_channels=16)
    x, t = torch.randn(4, 3, 64, 64), torch.rand(4, 5, 16, 16)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    first = None
    for _ in range(20):
        loss = ((net(x)[0] - t) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_unknown_depth():
    with pytest.raises(ValueError, match="depth"):
        ResNetBackbone(19)


@pytest.mark.parametrize("spec, message", [
    (dict(arch="resnet", input_size=[100, 96]), "multiples of 32"),
    (dict(arch="hourglass", input_size=[130, 96]), "multiples of 4"),
    (dict(arch="vgg"), "model.arch"),
    (dict(loss="l1"), "model.loss"),
    (dict(layout="mpii"), "unknown keypoint layout"),
    (dict(colour=1), "unknown key"),
])
def test_spec_validation(spec, message):
    with pytest.raises(UserError, match=message):
        SPPEModelSpec.from_dict(spec)


def test_spec_builds_both_architectures():
    hg = build_sppe_model(SPPEModelSpec.from_dict(dict(arch="hourglass", input_size=[64, 48], stacks=2, features=8)))
    rn = build_sppe_model(SPPEModelSpec.from_dict(dict(arch="resnet", input_size=[64, 64], resnet_depth=18, width=8,
                                                       deconv_channels=8)))
    with torch.no_grad():
        assert len(hg.eval()(torch.zeros(1, 3, 64, 48))) == 2
        assert rn.eval()(torch.zeros(1, 3, 64, 64))[0].shape == (1, 17, 16, 16)
