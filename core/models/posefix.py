"""PoseFix (Moon et al., CVPR 2019): a network that refines any estimator's poses.

Input: a person crop (RGB, normalised) and the input pose drawn into it as one Gaussian heatmap
per keypoint (σ 7 px at 256 rows, scaled with the crop height; all-zero where the input keypoint
is missing) → 3 + K channels. Output: K maps at input / 4 whose spatial softmax gives the refined
keypoint as its expectation (soft-argmax / integral regression). Loss: softmax cross-entropy
against a bilinear one-hot target + L1 on the soft-argmax coordinates.

One addition to the paper (``prior_eps`` > 0; 0 gives the paper's network): the input pose also
enters the output as a prior, logits += γ · trust_k · log(G_k + ε), G_k the input keypoint's
Gaussian at output resolution, trust_k = sigmoid of a per-keypoint linear head on the pooled
backbone features (starts at 0.98), γ learned. The untrained network thus returns its input, and
training learns corrections (a moved joint, or trust switched off for a joint it judges wrong)
instead of first learning to copy the input: from scratch on a CPU budget this is what makes
the refiner beat its input within a few hundred steps (see the report's measurements).

Backbones (``PoseFixSpec.backbone``):
- ``resnet``: our ResNet (``core.models.resnet_sppe``; depth, width and the number of stages
  configurable) taking the 3 + K channels, three stride-2 4×4 deconvolutions (one fewer per
  dropped stage), a 1×1 conv to K maps;
- ``blazepose``: the imported BlazePose-full landmark network, frozen, up to its stride-4
  decoder features (48 channels) and its 39 landmark heatmaps, at 256×256; the input-pose heatmaps
  (pooled to stride 4) are fused after it, then a trainable encoder (three stride-2 residual
  blocks), three stride-2 deconvolutions and a 1×1 conv. Its frozen weights are not stored in
  checkpoints (they come from the model cache).

Pixel conventions (``core.models.sstn``): pixel centres at integer coordinates; crop px ↔
heatmap px through ``core.heatmaps.crop_to_heatmap``; θ maps crop px → image px.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError
from core.models.resnet_sppe import RESNET_LAYOUTS, BasicBlock, ResNetBackbone
from core.skeleton import get_skeleton

KIND = "posefix"
BACKBONES = ("resnet", "blazepose")
BLAZEPOSE_SIZE = (256, 256)
# BlazePose-full landmark graph tensors used as features: the stride-4 decoder sum (48 ch) and
# the 39 landmark heatmaps computed from it (both 64×64 at 256×256 input).
_BLAZEPOSE_FEATURES = (279, 298)


@dataclass
class PoseFixSpec:
    """Everything needed to rebuild a PoseFix network and feed it (stored in every checkpoint)."""

    backbone: str = "resnet"  # resnet | blazepose
    layout: str = "coco17"
    input_size: tuple[int, int] = (256, 192)  # (h, w); blazepose needs 256×256
    resnet_depth: int = 18
    width: int = 64  # ResNet stage widths × (1, 2, 4, 8); blazepose: fusion width
    # ResNet stages kept (4: stride 32 and three deconvolutions, the paper's; fewer: stride
    # 2^(stages+1) and stages − 1 deconvolutions, output still at input / 4: small CPU crops keep
    # their spatial detail instead of shrinking to 2×2)
    stages: int = 4
    deconv_channels: int = 256
    sigma: float = 7.0  # input-pose heatmap σ in crop px at 256 rows (scaled with the height)
    box_scale: float = 1.25  # crop = box of the input pose's keypoints, grown to the aspect, × this
    min_keypoint_score: float = 0.05  # input keypoints scoring below count as missing
    l1_weight: float = 1.0  # loss = CE + l1_weight × L1 (heatmap px)
    # Input-pose prior added to the output logits: γ·log(G + prior_eps / (h·w)), G the input
    # keypoint's Gaussian at output resolution (σ ≥ 1 px; γ learned, starts at 1; prior_eps = the
    # mass left outside the peak). The untrained net then returns the input pose and learns
    # corrections, which must outweigh at most log(h·w / prior_eps). 0 = off (the paper's network).
    prior_eps: float = 0.01
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    extra: dict = field(default_factory=dict)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (self.input_size[0] // 4, self.input_size[1] // 4)

    @property
    def input_sigma(self) -> float:
        return float(self.sigma) * self.input_size[0] / 256.0

    @property
    def num_keypoints(self) -> int:
        return get_skeleton(self.layout).num_keypoints

    def validate(self) -> "PoseFixSpec":
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if self.backbone not in BACKBONES:
            raise UserError(f"posefix.backbone {self.backbone!r}: choose {' or '.join(BACKBONES)}")
        if self.backbone == "resnet" and self.resnet_depth not in RESNET_LAYOUTS:
            raise UserError(f"posefix.resnet_depth {self.resnet_depth}: choose one of {sorted(RESNET_LAYOUTS)}")
        if self.backbone == "blazepose" and self.input_size != BLAZEPOSE_SIZE:
            raise UserError(f"posefix.input_size must be {list(BLAZEPOSE_SIZE)} for the blazepose backbone")
        if min(self.input_size) < 32 or self.input_size[0] % 32 or self.input_size[1] % 32:
            raise UserError(f"posefix.input_size {list(self.input_size)}: both sides multiples of 32")
        if not 2 <= self.stages <= 4:
            raise UserError(f"posefix.stages {self.stages}: choose 2, 3 or 4")
        if self.sigma <= 0 or self.box_scale <= 0 or self.width < 4:
            raise UserError("posefix: sigma and box_scale must be > 0, width >= 4")
        get_skeleton(self.layout)
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"], d["mean"], d["std"] = list(self.input_size), list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "PoseFixSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data or {}) - names
        if unknown:
            raise UserError(f"posefix: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(names))}")
        return cls(**(data or {})).validate()


# ------------------------------------------------------------------------------------ pieces

def pose_heatmaps(xy: torch.Tensor, valid: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Input-pose channels: xy [N, K, 2] crop px, valid [N, K] → [N, K, H, W] Gaussians (peak 1),
    zero for invalid keypoints."""
    h, w = size
    ys = torch.arange(h, device=xy.device, dtype=xy.dtype)
    xs = torch.arange(w, device=xy.device, dtype=xy.dtype)
    gx = torch.exp(-(xs[None, None] - xy[..., :1]) ** 2 / (2 * sigma ** 2))  # [N, K, W]
    gy = torch.exp(-(ys[None, None] - xy[..., 1:]) ** 2 / (2 * sigma ** 2))  # [N, K, H]
    return gy[..., :, None] * gx[..., None, :] * valid[..., None, None].to(xy.dtype)


def soft_argmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [N, K, h, w] → (expected xy [N, K, 2] heatmap px, probabilities [N, K, h, w])."""
    n, k, h, w = logits.shape
    p = torch.softmax(logits.float().reshape(n, k, -1), -1).reshape(n, k, h, w)
    xs = torch.arange(w, device=p.device, dtype=p.dtype)
    ys = torch.arange(h, device=p.device, dtype=p.dtype)
    x = (p.sum(2) * xs).sum(-1)
    y = (p.sum(3) * ys).sum(-1)
    return torch.stack([x, y], -1), p


def bilinear_one_hot(xy: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """xy [N, K, 2] heatmap px → [N, K, h·w] target spreading mass 1 over the 4 neighbouring pixels."""
    h, w = size
    x = xy[..., 0].clamp(0, w - 1)
    y = xy[..., 1].clamp(0, h - 1)
    x0 = x.floor().clamp(max=w - 2 if w > 1 else 0)
    y0 = y.floor().clamp(max=h - 2 if h > 1 else 0)
    fx, fy = x - x0, y - y0
    out = xy.new_zeros(xy.shape[:-1] + (h * w,))
    x0, y0 = x0.long(), y0.long()
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        idx = ((y0 + dy).clamp(max=h - 1) * w + (x0 + dx).clamp(max=w - 1))
        out.scatter_add_(-1, idx[..., None], wgt[..., None])
    return out


def posefix_loss(logits: torch.Tensor, target_xy: torch.Tensor, weight: torch.Tensor,
                 l1_weight: float = 1.0) -> torch.Tensor:
    """Softmax cross-entropy against the bilinear one-hot of ``target_xy`` (heatmap px) + ``l1_weight``
    × L1 of the soft-argmax, per keypoint weighted by ``weight`` [N, K], mean over N·K (a normaliser
    that does not depend on the labels, so DDP rank losses average to the global-batch loss)."""
    n, k, h, w = logits.shape
    logp = torch.log_softmax(logits.float().reshape(n, k, -1), -1)
    target = bilinear_one_hot(target_xy.float(), (h, w))
    ce = -(target * logp).sum(-1)
    xy, _ = soft_argmax(logits)
    l1 = (xy - target_xy.float()).abs().sum(-1)
    return ((ce + l1_weight * l1) * weight.float()).mean()


# ------------------------------------------------------------------------------------ networks

def _deconv_head(cin: int, channels: int, k: int, n: int = 3) -> tuple[nn.Sequential, nn.Conv2d]:
    layers = []
    for _ in range(n):
        layers += [nn.ConvTranspose2d(cin, channels, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels),
                   nn.ReLU(inplace=True)]
        cin = channels
    final = nn.Conv2d(cin, k, 1)
    nn.init.normal_(final.weight, std=0.001)
    nn.init.zeros_(final.bias)
    return nn.Sequential(*layers), final


class _BlazePoseTrunk(nn.Module):
    """The frozen BlazePose-full landmark graph, pruned to the ops its stride-4 features need.
    RGB [N, 3, 256, 256] in [0, 1] → [N, 87, 64, 64]."""

    def __init__(self):
        super().__init__()
        from core.assets import artefact_path
        from core.models.tflite_graph import TFLiteGraph

        graph = TFLiteGraph.from_file(artefact_path("pose_landmark_full"))
        self.steps = nn.ModuleList(graph.steps_for(_BLAZEPOSE_FEATURES))
        self.input_id = graph.input_ids[0]
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input_id: x}
        for step in self.steps:
            env[step.output] = step(*[env[i] for i in step.inputs])
        return torch.cat([env[i] for i in _BLAZEPOSE_FEATURES], 1)


class PoseFixNet(nn.Module):
    """``forward(image [N, 3, H, W] normalised, pose_xy [N, K, 2] crop px, pose_valid [N, K])``
    → logits [N, K, H/4, W/4]."""

    def __init__(self, spec: PoseFixSpec):
        super().__init__()
        self.spec = spec
        k = spec.num_keypoints
        if spec.backbone == "resnet":
            self.backbone = ResNetBackbone(spec.resnet_depth, spec.width)
            self.backbone.stem[0] = nn.Conv2d(3 + k, spec.width, 7, 2, 3, bias=False)
            self.backbone.stages = self.backbone.stages[:spec.stages]
            cin = [m for m in self.backbone.stages[-1].modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
        else:
            self.trunk = _BlazePoseTrunk()
            w = spec.width
            self.fuse = nn.Sequential(nn.Conv2d(87 + k, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
            self.backbone = nn.Sequential(BasicBlock(w, w * 2, 2), BasicBlock(w * 2, w * 4, 2), BasicBlock(w * 4, w * 8, 2))
            cin = w * 8
        self.head, self.final = _deconv_head(cin, spec.deconv_channels, k,
                                             spec.stages - 1 if spec.backbone == "resnet" else 3)
        self.prior_gain = nn.Parameter(torch.ones(())) if spec.prior_eps > 0 else None
        # per-keypoint trust in the input (sigmoid; starts at 0.98): one number switches the prior
        # off for a joint the net judges wrong (inversion, swap), no logits to outweigh
        self.trust = nn.Linear(cin, k) if spec.prior_eps > 0 else None
        if self.trust is not None:
            nn.init.zeros_(self.trust.weight)
            nn.init.constant_(self.trust.bias, 4.0)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, pose_xy: torch.Tensor, pose_valid: torch.Tensor) -> torch.Tensor:
        heat = pose_heatmaps(pose_xy.to(image.dtype), pose_valid, tuple(image.shape[-2:]), self.spec.input_sigma)
        if self.spec.backbone == "resnet":
            x = self.backbone(torch.cat([image, heat], 1))
        else:
            with torch.no_grad():
                feats = self.trunk(image * self.std + self.mean)  # BlazePose takes RGB in [0, 1]
            x = self.fuse(torch.cat([feats, F.avg_pool2d(heat, 4)], 1))
            x = self.backbone(x)
        logits = self.final(self.head(x))
        if self.prior_gain is not None:
            trust = torch.sigmoid(self.trust(x.float().mean((2, 3))))[..., None, None]
            hs = tuple(logits.shape[-2:])
            scale = hs[0] / image.shape[-2]
            # σ ≥ 1 output px: the soft-argmax of a sampled Gaussian is then unbiased to ~0.01 px
            prior = pose_heatmaps((pose_xy.to(logits.dtype) + 0.5) * scale - 0.5, pose_valid, hs,
                                  max(self.spec.input_sigma * scale, 1.0))
            logits = logits + self.prior_gain * trust * torch.log(prior + self.spec.prior_eps / (hs[0] * hs[1]))
        return logits

    def train(self, mode: bool = True):
        super().train(mode)
        if hasattr(self, "trunk"):
            self.trunk.eval()
        return self

    def state_dict(self, *args, **kwargs):
        """Trainable weights only (the BlazePose trunk comes from the model cache)."""
        sd = super().state_dict(*args, **kwargs)
        for key in [k for k in sd if k.startswith("trunk.")]:
            del sd[key]
        return sd

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith("trunk.")]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"PoseFix weights do not match the network: missing {missing[:5]}, "
                               f"unexpected {result.unexpected_keys[:5]}")
        return result


def build_posefix(spec: PoseFixSpec) -> PoseFixNet:
    return PoseFixNet(spec.validate())


def flip_pose(xy: torch.Tensor, valid: torch.Tensor, width: int, flip_index) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror crop-px keypoints (u → width − 1 − u) with the left/right swap."""
    idx = torch.as_tensor(np.asarray(flip_index), device=xy.device)
    out = xy[:, idx].clone()
    out[..., 0] = width - 1 - out[..., 0]
    return out, valid[:, idx]


@torch.no_grad()
def refine_crops(net: PoseFixNet, image: torch.Tensor, pose_xy: torch.Tensor, pose_valid: torch.Tensor,
                 flip_test: bool = True) -> torch.Tensor:
    """Refined keypoints [N, K, 2] in crop px (flip test: mean of the plain and mirrored estimates)."""
    spec = net.spec
    hs, size = spec.heatmap_size, spec.input_size
    xy, _ = soft_argmax(net(image, pose_xy, pose_valid))
    if flip_test:
        fxy, fvalid = flip_pose(pose_xy, pose_valid, size[1], get_skeleton(spec.layout).flip_index)
        m, _ = soft_argmax(net(torch.flip(image, dims=[3]), fxy, fvalid))
        m, _ = flip_pose(m, fvalid, hs[1], get_skeleton(spec.layout).flip_index)
        xy = 0.5 * (xy + m)
    from core.heatmaps import heatmap_to_crop

    return heatmap_to_crop(xy, hs, size)


def pose_crop_theta(xy: np.ndarray, valid: np.ndarray, spec: PoseFixSpec, scale=None, rotation=None,
                    flip=None) -> np.ndarray:
    """θ [N, 2, 3] (crop px → image px) of the crop PoseFix sees for input poses xy [N, K, 2] (image
    px), valid [N, K]: the box of the valid keypoints, centred, grown to the crop's aspect ratio and
    by ``box_scale`` × ``scale`` [N] (at least 8 px tall), rotated by ``rotation`` [N] radians,
    mirrored where ``flip`` [N]."""
    from core.models.sstn import roi_to_affine

    xy = np.asarray(xy, np.float64)
    valid = np.asarray(valid, bool)
    n = len(xy)
    big = np.where(valid[..., None], xy, np.inf)
    small = np.where(valid[..., None], xy, -np.inf)
    lo, hi = big.min(1), small.max(1)
    empty = ~valid.any(1)
    lo[empty], hi[empty] = 0.0, 1.0
    centre = (lo + hi) / 2
    w, h = (hi - lo).T
    aspect = spec.input_size[1] / spec.input_size[0]
    h = np.maximum(np.maximum(h, w / aspect), 8.0)
    size = np.stack([h * aspect, h], 1) * spec.box_scale
    if scale is not None:
        size = size * np.asarray(scale, np.float64).reshape(n, 1)
    rot = np.zeros(n) if rotation is None else np.asarray(rotation, np.float64).reshape(n)
    theta = roi_to_affine(centre, size, rot, spec.input_size)
    if flip is not None:
        mirror = np.array([[-1.0, 0.0, spec.input_size[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        f = np.asarray(flip, bool).reshape(n)
        theta[f] = theta[f] @ mirror
    return theta
