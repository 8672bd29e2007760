"""Application configuration: nested dataclasses, defaults in assets/default.yaml, YAML overrides.

Each section belongs to one stage; a stage reads only its own section. Unknown keys are errors
so that typos in a user's YAML are reported instead of silently ignored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core import ASSETS_DIR
from core.errors import UserError


@dataclass
class DetectorConfig:
    name: str = "blazepose"  # blazepose | hog
    score_threshold: float = 0.5
    nms_iou: float = 0.3
    max_persons: int = 10
    tiling: bool = True  # full frame + overlapping tiles, batched in one forward pass
    tile_size: int = 640
    tile_overlap: float = 0.4
    interval: int = 8  # run the detector every N frames; track ROIs from keypoints in between


@dataclass
class SPPEConfig:
    model: str = "blazepose"  # blazepose | hourglass | resnet
    weights: str | None = None  # checkpoint for trained SPPEs
    decode: str = "regression"  # regression | dark | quarter | argmax
    dark_kernel: int = 11
    keypoint_layout: str = "coco17"  # output layout: coco17 | blazepose33
    min_pose_score: float = 0.5  # drop crops whose pose-presence score is below this


@dataclass
class PoseNMSConfig:
    enabled: bool = True
    preset: str = "paper"  # paper | alphapose


@dataclass
class TrackingConfig:
    enabled: bool = True
    distance: str = "oks_iou"  # oks_iou | oks | iou | l2
    max_age_s: float = 1.0  # a lost track is kept this long before removal
    min_hits: int = 2  # detections before a tentative track is confirmed
    min_similarity: float = 0.2  # gate: pairs less similar than this (0..1) are never matched
    oks_weight: float = 0.5  # oks_iou: weight of OKS against box IoU
    keypoint_threshold: float = 0.3  # keypoints scoring above this take part in OKS / L2
    process_noise: float = 2.0  # box Kalman: acceleration std, box heights per s²
    measurement_noise: float = 0.05  # box Kalman: measurement std, fraction of box height
    recovery_speed: float = 2.5  # body sizes/s a lost person may move unseen and still be re-found; 0 = off


@dataclass
class SmoothingConfig:
    enabled: bool = True
    method: str = "one_euro"  # one_euro | kalman
    min_cutoff: float = 0.05
    beta: float = 80.0
    d_cutoff: float = 1.0
    strength: float = 4.0  # 1 = MediaPipe exactly; divides min_cutoff, beta and the kalman process noise
    score_alpha: float = 0.1  # low-pass factor for keypoint scores (1 = no smoothing)
    min_keypoint_score: float = 0.0  # keypoints scoring at or below this neither update nor get filtered
    max_gap_s: float = 0.25  # a track or keypoint unseen for longer restarts its filter
    process_noise: float = 16.0  # kalman: acceleration std in person sizes/s², divided by strength
    measurement_noise: float = 0.01  # kalman: keypoint measurement std, fraction of person size


@dataclass
class RenderConfig:
    keypoint_threshold: float = 0.3
    draw_boxes: bool = False
    draw_scores: bool = False
    draw_ids: bool = True


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda
    backend: str = "auto"  # auto | onnxruntime | eager | channels_last | jit
    threads: int = 0  # torch intra-op threads; 0 = torch default
    half: bool = True  # fp16 on CUDA where accuracy holds


@dataclass
class PipelineConfig:
    mode: str = "auto"  # auto | file | live
    queue_size: int = 4


@dataclass
class RefineConfig:
    method: str = "none"  # none | posefix: PoseFix post step after pose NMS, before tracking
    weights: str | None = None  # a `train posefix` checkpoint
    enabled: bool = True  # live on/off switch (app) while a refiner is configured
    flip_test: bool = True  # average with the mirrored crop's estimate (2 passes)


@dataclass
class Config:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    sppe: SPPEConfig = field(default_factory=SPPEConfig)
    pose_nms: PoseNMSConfig = field(default_factory=PoseNMSConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict | None = None) -> "Config":
        """Defaults from assets/default.yaml, then ``path``, then ``overrides`` (nested dicts)."""
        cfg = cls()
        cfg.update(read_yaml_mapping(ASSETS_DIR / "default.yaml"))
        if path is not None:
            cfg.update(read_yaml_mapping(path))
        if overrides:
            cfg.update(overrides)
        return cfg

    def update(self, data: dict[str, Any]) -> "Config":
        update_sections(self, data, "config")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def update_sections(config, data: dict[str, Any] | None, label: str) -> None:
    """Apply ``{section: {key: value}}`` to a dataclass of dataclass sections; unknown names are
    UserErrors prefixed with ``label`` (shared by the app and training configs)."""
    for section, values in (data or {}).items():
        if not hasattr(config, section):
            raise UserError(f"{label}: unknown section {section!r}")
        target = getattr(config, section)
        if not isinstance(values, dict):
            raise UserError(f"{label}: section {section!r} must be a mapping")
        names = {f.name for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in names:
                raise UserError(f"{label}: unknown key {section}.{key}")
            setattr(target, key, value)


def read_yaml_mapping(path: str | Path, label: str = "config file") -> dict:
    """A YAML file holding a mapping of sections, or one clear UserError line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{label} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{label} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{label} {path} must hold a mapping of sections")
    return data
