"""Stacked Hourglass SPPE (Newell et al., ECCV 2016).

Pre-activation bottleneck residuals (f/2, f/2, f), a recursive hourglass of configurable depth
(4 in the paper) with max-pool down / nearest-neighbour up, and intermediate supervision: every
stack emits heatmaps, and all but the last feed back into the next stack's input. The stem
reduces the input by 4 (7×7 stride-2 conv, residual, max-pool), so heatmaps are input / 4.

``forward`` returns the list of per-stack heatmaps [N, K, H/4, W/4]; the last is the prediction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1×1(f/2) → BN-ReLU-conv3×3(f/2) → BN-ReLU-conv1×1(f), plus identity or 1×1 skip."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        y = self.conv3(F.relu(self.bn3(y)))
        return y + (x if self.skip is None else self.skip(x))


class Hourglass(nn.Module):
    """Recursive hourglass: skip branch at this scale + (pool → residual → inner → residual → up)."""

    def __init__(self, depth: int, features: int):
        super().__init__()
        self.up1 = PreActBottleneck(features, features)
        self.low1 = PreActBottleneck(features, features)
        self.low2 = Hourglass(depth - 1, features) if depth > 1 else PreActBottleneck(features, features)
        self.low3 = PreActBottleneck(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up1 = self.up1(x)
        # ceil_mode keeps odd sizes (e.g. 3 columns of a 96-wide input at depth 4) from vanishing.
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2, ceil_mode=True))))
        # Upsample to the skip's exact size: nearest ×2 then crop handles odd sizes.
        up2 = F.interpolate(low, scale_factor=2, mode="nearest")[..., :up1.shape[-2], :up1.shape[-1]]
        return up1 + up2


class StackedHourglass(nn.Module):
    """``stacks`` hourglasses of ``features`` channels and ``depth`` levels, ``num_keypoints`` heatmaps."""

    def __init__(self, num_keypoints: int = 17, stacks: int = 2, features: int = 256, depth: int = 4):
        super().__init__()
        if stacks < 1 or depth < 1 or features < 2:
            raise ValueError("hourglass needs stacks >= 1, depth >= 1 and features >= 2")
        stem_mid = max(features // 2, 1)
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_mid // 2 or 1, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem_mid // 2 or 1),
            nn.ReLU(inplace=True),
            PreActBottleneck(stem_mid // 2 or 1, stem_mid),
            nn.MaxPool2d(2, ceil_mode=True),
            PreActBottleneck(stem_mid, stem_mid),
            PreActBottleneck(stem_mid, features),
        )
        self.hourglasses = nn.ModuleList(Hourglass(depth, features) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(PreActBottleneck(features, features), nn.Conv2d(features, features, 1, bias=False),
                          nn.BatchNorm2d(features), nn.ReLU(inplace=True))
            for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Conv2d(features, num_keypoints, 1) for _ in range(stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(features, features, 1) for _ in range(stacks - 1))
        self.merge_heatmaps = nn.ModuleList(nn.Conv2d(num_keypoints, features, 1) for _ in range(stacks - 1))
        self.num_keypoints = num_keypoints

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for i, (hg, feat, head) in enumerate(zip(self.hourglasses, self.features, self.heads)):
            y = feat(hg(x))
            heatmaps = head(y)
            outputs.append(heatmaps)
            if i < len(self.merge_features):
                x = x + self.merge_features[i](y) + self.merge_heatmaps[i](heatmaps)
        return outputs
