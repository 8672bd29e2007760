"""ResNet + deconvolution-head SPPE ("Simple Baselines", Xiao et al., ECCV 2018).

A plain ResNet (basic blocks for depth 18/34, bottlenecks for 50/101/152; ``width`` scales the
stage widths, 64 is the standard network) downsamples by 32; three 4×4 stride-2 transposed
convolutions bring it back to input / 4, and a 1×1 convolution gives the heatmaps.

``forward`` returns a one-element list of heatmaps so every SPPE here has the same output shape
(a list of per-stage heatmaps whose last element is the prediction).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# depth -> (block kind, blocks per stage)
RESNET_LAYOUTS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNetBackbone(nn.Module):
    """ResNet-``depth`` trunk (stride 32) whose stage widths are ``width`` × (1, 2, 4, 8)."""

    def __init__(self, depth: int = 50, width: int = 64):
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"unsupported ResNet depth {depth}; choose one of {sorted(RESNET_LAYOUTS)}")
        kind, blocks = RESNET_LAYOUTS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], width
        for i, n in enumerate(blocks):
            planes = width * 2 ** i
            layers = []
            for j in range(n):
                layers.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class ResNetSPPE(nn.Module):
    """ResNet trunk + ``deconv_layers`` × (ConvTranspose 4×4 stride 2, BN, ReLU) + 1×1 heatmap conv."""

    def __init__(self, num_keypoints: int = 17, depth: int = 50, width: int = 64,
                 deconv_channels: int = 256, deconv_layers: int = 3):
        super().__init__()
        self.backbone = ResNetBackbone(depth, width)
        layers, cin = [], self.backbone.out_channels
        for _ in range(deconv_layers):
            layers += [nn.ConvTranspose2d(cin, deconv_channels, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(deconv_channels), nn.ReLU(inplace=True)]
            cin = deconv_channels
        self.head = nn.Sequential(*layers)
        self.final = nn.Conv2d(cin, num_keypoints, 1)
        for m in self.head.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)
        self.num_keypoints = num_keypoints

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.final(self.head(self.backbone(x)))]
