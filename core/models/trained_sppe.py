"""Trained SPPEs (Stacked Hourglass, ResNet + deconvolutions) loaded from training checkpoints.

A checkpoint written by ``training/`` embeds the model spec (architecture, input and heatmap
size, input normalisation, keypoint layout, and for RMPE checkpoints the learned spatial
transformer), so ``load_trained_sppe(path, device)`` needs nothing else. The result implements
the SPPE protocol of ``core.models.sppe``: RGB crops in [0, 1] → ``SPPEOutput`` with heatmaps
only (decoded through ``spec.codec``: half-pixel centres, stride 4).

An RMPE checkpoint carries the SSTN's localisation net: the SPPE then refines each crop with
the learned transform (sampled from the given crop, zero outside it) and maps the heatmaps back
to the given crop's frame (SDTN), so the estimator sees the same protocol either way.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError
from core.heatmaps import HeatmapCodec
from core.models.sppe import SPPEOutput
from core.geometry import pixel_to_normalised
from core.models.sstn import invert_affine
from core.skeleton import get_skeleton

log = logging.getLogger("rmpe.sppe")

CHECKPOINT_FORMAT = "rmpe-live-checkpoint/1"
ARCHITECTURES = ("hourglass", "resnet")
LOSSES = ("mse", "softmax")
HEATMAP_STRIDE = 4  # both architectures predict heatmaps at input / 4


@dataclass
class SPPEModelSpec:
    """Everything needed to rebuild a trained SPPE and feed it (stored in every checkpoint)."""

    arch: str = "hourglass"  # hourglass | resnet
    layout: str = "coco17"
    input_size: tuple[int, int] = (256, 192)  # (h, w)
    # Stacked Hourglass
    stacks: int = 2
    features: int = 256
    depth: int = 4
    # ResNet + deconvolution head
    resnet_depth: int = 50
    width: int = 64
    deconv_channels: int = 256
    deconv_layers: int = 3
    # input normalisation of RGB in [0, 1]
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    sigma: float = 2.0  # training target σ (heatmap px); decoders may size their blur from it
    # Training loss, which also fixes how raw outputs become heatmaps:
    #   mse      raw outputs are the heatmaps, regressed onto the Gaussian targets (Hourglass paper);
    #   softmax  heatmap = spatial softmax × 2πσ² (peak ≈ 1 when sharp), trained with cross-entropy
    #            against the normalised Gaussian target — converges in far fewer steps.
    loss: str = "mse"
    # RMPE: learned spatial transformer {"loc_size": [h, w], "backbone": "light" | "resnet18"} or None
    stn: dict | None = None

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (self.input_size[0] // HEATMAP_STRIDE, self.input_size[1] // HEATMAP_STRIDE)

    @property
    def num_keypoints(self) -> int:
        return get_skeleton(self.layout).num_keypoints

    @property
    def codec(self) -> HeatmapCodec:
        """Targets, decoding and heatmap ↔ crop mapping (half-pixel centres, stride 4; DARK)."""
        return HeatmapCodec(tuple(self.input_size), self.heatmap_size, float(self.sigma))

    def validate(self) -> "SPPEModelSpec":
        if self.arch not in ARCHITECTURES:
            raise UserError(f"model.arch {self.arch!r}: choose one of {', '.join(ARCHITECTURES)}")
        if self.loss not in LOSSES:
            raise UserError(f"model.loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        try:
            get_skeleton(self.layout)
        except KeyError as exc:
            raise UserError(str(exc.args[0])) from None
        h, w = self.input_size
        # The hourglass pads odd sizes itself; the ResNet's deconvolutions need input / 32 exact.
        if h % HEATMAP_STRIDE or w % HEATMAP_STRIDE or (self.arch == "resnet" and (h % 32 or w % 32)):
            raise UserError(f"model.input_size {list(self.input_size)}: both sides must be multiples of "
                            f"{32 if self.arch == 'resnet' else HEATMAP_STRIDE} for {self.arch}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise UserError("model.mean and model.std need three values (R, G, B)")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "SPPEModelSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise UserError(f"model: unknown key(s) {', '.join(sorted(unknown))}")
        d = dict(data)
        for key in ("input_size", "mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d).validate()


def build_sppe_model(spec: SPPEModelSpec) -> nn.Module:
    """The bare network (normalised input → list of per-stage heatmaps)."""
    k = spec.num_keypoints
    if spec.arch == "hourglass":
        from core.models.hourglass import StackedHourglass

        return StackedHourglass(k, spec.stacks, spec.features, spec.depth)
    from core.models.resnet_sppe import ResNetSPPE

    return ResNetSPPE(k, spec.resnet_depth, spec.width, spec.deconv_channels, spec.deconv_layers)


def build_stn(spec: SPPEModelSpec, learned: bool = True):
    """The symmetric spatial transformer of an RMPE model (``core.models.sstn``)."""
    from core.models.sstn import SymmetricSTN

    stn = spec.stn or {}
    return SymmetricSTN(out_size=spec.input_size, loc_size=tuple(stn.get("loc_size", (64, 48))),
                        backbone=stn.get("backbone", "light"), learned=learned)


def to_heatmaps(raw: torch.Tensor, spec: SPPEModelSpec) -> torch.Tensor:
    """Raw network output [N, K, H, W] → confidence heatmaps (see ``SPPEModelSpec.loss``)."""
    if spec.loss != "softmax":
        return raw
    n, k, h, w = raw.shape
    prob = torch.softmax(raw.float().reshape(n, k, h * w), dim=-1).reshape(n, k, h, w)
    return prob * (2.0 * math.pi * spec.sigma ** 2)


def normalise_crops(crops: torch.Tensor, spec: SPPEModelSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, dtype=crops.dtype, device=crops.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=crops.dtype, device=crops.device).view(1, 3, 1, 1)
    return (crops - mean) / std


def affine_to_normalised(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixel affine [N, 2, 3] between two frames of the same ``size`` (h, w) → the normalised
    affine ``F.affine_grid(align_corners=False)`` expects (pixel centres at integers)."""
    return pixel_to_normalised(theta, size, size)


def detransform_heatmaps(heatmaps: torch.Tensor, box_to_stn: torch.Tensor, crop_size: tuple[int, int]) -> torch.Tensor:
    """SDTN on heatmaps: maps predicted in the STN crop → the box crop's frame (differentiable).

    ``box_to_stn`` [N, 2, 3] maps box-crop pixels to STN-crop pixels (θ_stn⁻¹ ∘ θ_box). Heatmaps
    cover their crop exactly, so the normalised transform of the crops applies to them unchanged.
    """
    m = affine_to_normalised(box_to_stn.to(heatmaps.dtype), crop_size)
    grid = F.affine_grid(m, list(heatmaps.shape), align_corners=False)
    return F.grid_sample(heatmaps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class TrainedSPPE:
    """SPPE protocol over a trained network (and, for RMPE checkpoints, its learned STN)."""

    regresses = False  # heatmaps only: decode "regression" falls back to a heatmap decoder

    def __init__(self, spec: SPPEModelSpec, model: nn.Module, stn: nn.Module | None = None, device="cpu",
                 source: str = ""):
        self.spec = spec
        self.device = torch.device(device)
        # channels-last convolutions run about 1.5x faster on CPU (oneDNN)
        self.model = model.to(self.device, memory_format=torch.channels_last if self.device.type == "cpu"
                              else torch.contiguous_format).eval()
        self.stn = stn.to(self.device).eval() if stn is not None else None
        self.input_size = tuple(int(v) for v in spec.input_size)
        self.heatmap_size = spec.heatmap_size
        self.codec = spec.codec
        self.layout = spec.layout
        self.num_keypoints = spec.num_keypoints
        self.source = source

    @torch.inference_mode()
    def __call__(self, crops: torch.Tensor) -> SPPEOutput:
        crops = crops.to(self.device, torch.float32)
        if tuple(crops.shape[-2:]) != self.input_size:
            raise ValueError(f"crops must be {self.input_size}, got {tuple(crops.shape[-2:])}")
        if crops.shape[0] == 0:
            return SPPEOutput(heatmaps=crops.new_zeros((0, self.num_keypoints) + self.heatmap_size))
        box_to_stn = None
        if self.stn is not None:
            n = crops.shape[0]
            identity = torch.eye(2, 3, dtype=crops.dtype, device=self.device).expand(n, 2, 3).contiguous()
            crops, theta = self.stn(crops, identity, torch.arange(n, device=self.device))
            box_to_stn = invert_affine(theta)
        x = normalise_crops(crops, self.spec)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", enabled=self.device.type == "cuda"):
            heatmaps = self.model(x)[-1]
        heatmaps = to_heatmaps(heatmaps.float(), self.spec)
        if box_to_stn is not None:
            heatmaps = detransform_heatmaps(heatmaps, box_to_stn, self.input_size)
        return SPPEOutput(heatmaps=heatmaps.clamp_(min=0.0))


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A training checkpoint as a dict (UserError when missing or not one of ours)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not an RMPE-Live training checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def checkpoint_arch(checkpoint_path: str | Path) -> str:
    """The architecture a training checkpoint holds (``model_spec.arch``): what ``--weights`` runs."""
    return _spec_of(read_checkpoint(checkpoint_path), checkpoint_path).arch


def _spec_of(ckpt: dict, path) -> SPPEModelSpec:
    spec = ckpt.get("model_spec")
    if not isinstance(spec, dict) or "arch" not in spec:
        raise UserError(f"checkpoint {path} holds no model spec (model_spec.arch): not an SPPE checkpoint")
    return SPPEModelSpec.from_dict(spec)


def load_trained_sppe(checkpoint_path: str | Path, device="cpu", arch: str | None = None) -> TrainedSPPE:
    """The SPPE stored in a training checkpoint (``train sppe`` or ``train rmpe``), ready for inference.

    The checkpoint's own spec decides the architecture; ``arch`` (the configured ``sppe.model``),
    when given, must agree with it, else one ``UserError`` names both.
    """
    ckpt = read_checkpoint(checkpoint_path)
    spec = _spec_of(ckpt, checkpoint_path)
    if arch is not None and arch != spec.arch:
        raise UserError(f"--sppe {arch} contradicts the checkpoint {checkpoint_path}, which holds a {spec.arch} "
                        f"SPPE: give --sppe {spec.arch}, or --weights alone (the checkpoint decides)")
    model = build_sppe_model(spec)
    model.load_state_dict(ckpt["model"])
    stn = None
    if ckpt.get("stn") is not None and spec.stn is not None:
        stn = build_stn(spec)
        stn.load_state_dict(ckpt["stn"])
    log.info("trained SPPE %s: %s %s input %dx%d, heatmaps %dx%d, layout %s%s", Path(checkpoint_path).name,
             spec.arch, f"{spec.stacks} stacks x {spec.features}" if spec.arch == "hourglass"
             else f"ResNet-{spec.resnet_depth} (width {spec.width})", *spec.input_size, *spec.heatmap_size,
             spec.layout, " + learned STN" if stn is not None else "")
    return TrainedSPPE(spec, model, stn, device, source=str(checkpoint_path))
