"""Application configuration: nested dataclasses, defaults in assets/default.yaml, YAML overrides.

Each section belongs to one stage; a stage reads only its own section. Every value is checked
where it enters (YAML, ``--set``, CLI flags, live updates) by ``check_value``: its type from the
field's annotation (``Literal`` aliases below are the one list of valid choices), its range from
``setting(..., ge/gt/le/lt)``. A bad or unknown key is one UserError line naming the key and what
is allowed, raised at load time, never inside a running stage.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from core import ASSETS_DIR
from core.errors import UserError


# The valid choices of each choice setting: the one list the CLI flags, the app's controls and
# the model factories read (``choices(section, key)``, or ``typing.get_args`` on the alias).
DetectorName = Literal["blazepose", "hog", "nanodet", "nanodet+blazepose"]
SPPEModel = Literal["blazepose", "blazepose-lite", "blazepose-full", "blazepose-heavy",
                    "movenet-lightning", "movenet-thunder", "hourglass", "resnet"]
DecodeMethod = Literal["regression", "dark", "quarter", "argmax"]
KeypointLayout = Literal["coco17", "blazepose33"]
NMSPreset = Literal["paper", "alphapose"]
TrackingDistance = Literal["oks_iou", "oks", "iou", "l2"]
SmoothingMethod = Literal["one_euro", "kalman"]
Device = Literal["auto", "cpu", "cuda"]
Backend = Literal["auto", "onnxruntime", "eager", "channels_last", "jit"]
PipelineMode = Literal["auto", "file", "realtime", "live"]  # live = realtime; see core.pipeline.runner
RefineMethod = Literal["none", "posefix"]


def setting(default, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None):
    """A dataclass field with a checked range (``ge`` ≤ value ≤ ``le``, ``gt`` < value < ``lt``)."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, metadata={"bounds": bounds})


@dataclass
class DetectorConfig:
    name: DetectorName = "nanodet"
    score_threshold: float = setting(0.5, ge=0, le=1)
    nms_iou: float = setting(0.3, ge=0, le=1)
    max_persons: int = setting(10, ge=1)
    tiling: bool = True  # full frame + overlapping tiles, batched in one forward pass
    tile_size: int = setting(640, ge=32)
    tile_overlap: float = setting(0.4, ge=0, lt=1)
    # nanodet: each run sees the full frame and this many tiles, the next run the next tiles in
    # checkerboard order (0: every tile every run); recovery runs read the tile around a small
    # lost person, the full view for a large one
    tiles_per_run: int = setting(1, ge=0)
    interval: int = setting(6, ge=1)  # run the detector every N frames; track ROIs from keypoints in between
    # NanoDet (nanodet, nanodet+blazepose): canvas each view is letterboxed into (multiples of 32)
    # and its own score threshold (quality-focal scores are modest: people at 0.3-0.9)
    nanodet_height: int = setting(416, ge=32)
    nanodet_width: int = setting(416, ge=32)
    nanodet_score: float = setting(0.3, ge=0, le=1)


@dataclass
class SPPEConfig:
    model: SPPEModel = "blazepose"
    weights: str | None = None  # checkpoint for trained SPPEs
    decode: DecodeMethod = "regression"
    dark_kernel: int = setting(11, ge=1)
    keypoint_layout: KeypointLayout = "coco17"  # output layout
    min_pose_score: float = setting(0.5, ge=0, le=1)  # drop crops whose pose-presence score is below this
    # Re-read a person on the ROI their own pose gives when it differs from the crop's ROI (a body
    # box gives an upright box crop; the landmark model wants one aligned on the hips)
    second_pass: bool = True


@dataclass
class PoseNMSConfig:
    enabled: bool = True
    preset: NMSPreset = "paper"


@dataclass
class TrackingConfig:
    enabled: bool = True
    distance: TrackingDistance = "oks_iou"
    max_age_s: float = setting(1.0, ge=0)  # a lost track is kept this long before removal
    min_hits: int = setting(2, ge=1)  # detections before a tentative track is confirmed
    min_similarity: float = setting(0.2, ge=0, le=1)  # gate: pairs less similar than this are never matched
    oks_weight: float = setting(0.5, ge=0, le=1)  # oks_iou: weight of OKS against box IoU
    keypoint_threshold: float = setting(0.3, ge=0, le=1)  # keypoints scoring above this take part in OKS / L2
    process_noise: float = setting(2.0, gt=0)  # box Kalman: acceleration std, box heights per s²
    measurement_noise: float = setting(0.05, gt=0)  # box Kalman: measurement std, fraction of box height
    recovery_speed: float = setting(2.5, ge=0)  # body sizes/s a lost person may move unseen and still be re-found; 0 = off


@dataclass
class SmoothingConfig:
    enabled: bool = True
    method: SmoothingMethod = "one_euro"
    min_cutoff: float = setting(0.05, gt=0)
    beta: float = setting(80.0, ge=0)
    d_cutoff: float = setting(1.0, gt=0)
    strength: float = setting(4.0, gt=0)  # 1 = MediaPipe exactly; divides min_cutoff, beta and the kalman process noise
    score_alpha: float = setting(0.1, gt=0, le=1)  # low-pass factor for keypoint scores (1 = no smoothing)
    min_keypoint_score: float = setting(0.0, ge=0, le=1)  # keypoints scoring at or below this neither update nor get filtered
    max_gap_s: float = setting(0.25, ge=0)  # a track or keypoint unseen for longer restarts its filter
    process_noise: float = setting(16.0, gt=0)  # kalman: acceleration std in person sizes/s², divided by strength
    measurement_noise: float = setting(0.01, gt=0)  # kalman: keypoint measurement std, fraction of person size


@dataclass
class RenderConfig:
    keypoint_threshold: float = setting(0.3, ge=0, le=1)
    draw_boxes: bool = False
    draw_scores: bool = False
    draw_ids: bool = True


@dataclass
class RuntimeConfig:
    device: Device = "auto"
    backend: Backend = "auto"  # auto: ONNX Runtime on CPU, jit on CUDA (core/models/zoo.py)
    threads: int = setting(0, ge=0)  # torch intra-op threads; 0 = torch default
    half: bool = True  # fp16 on CUDA where accuracy holds


@dataclass
class PipelineConfig:
    mode: PipelineMode = "auto"
    queue_size: int = setting(4, ge=1)


@dataclass
class RefineConfig:
    method: RefineMethod = "none"  # posefix: PoseFix post step after pose NMS, before tracking
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
        cfg.update(read_yaml_mapping(ASSETS_DIR / "default.yaml"), f"config {ASSETS_DIR / 'default.yaml'}")
        if path is not None:
            cfg.update(read_yaml_mapping(path), f"config {path}")
        if overrides:
            cfg.update(overrides)
        return cfg

    def update(self, data: dict[str, Any], label: str = "config") -> "Config":
        """Apply ``{section: {key: value}}`` with every value checked (``check_value``)."""
        update_sections(self, data, label)
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
        fields_ = {f.name: f for f in dataclasses.fields(target)}
        checked = {}
        for key, value in values.items():
            if key not in fields_:
                raise UserError(f"{label}: unknown key {section}.{key}; keys of {section}: {', '.join(fields_)}")
            checked[key] = check_value(type(target), fields_[key], value, f"{label}: {section}.{key}")
        for key, value in checked.items():  # all or nothing: a bad value leaves the section as it was
            setattr(target, key, value)


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def check_value(cls, f: dataclasses.Field, value, name: str):
    """``value`` for field ``f`` of dataclass ``cls`` checked against its annotation and bounds
    (an int where a float is due becomes a float); a UserError ``"<name> must be ..., not ..."``
    otherwise. Annotations without a rule here (nested dataclasses, Any) pass unchecked."""
    value = _check_type(_hints(cls).get(f.name, Any), value, name)
    bounds = f.metadata.get("bounds") if f.metadata else None
    if bounds and value is not None:
        rules = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
                 "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}
        if not all(rules[k][0](value, b) for k, b in bounds.items()):
            allowed = " and ".join(f"{rules[k][1]} {b:g}" for k, b in bounds.items())
            raise UserError(f"{name} must be {allowed}, not {value!r}")
    return value


def _check_type(hint, value, name: str):
    origin = typing.get_origin(hint)
    if origin is Literal:
        options = typing.get_args(hint)
        if value not in options or isinstance(value, bool):
            raise UserError(f"{name} must be one of {', '.join(map(str, options))}, not {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        rest = [h for h in options if h is not type(None)]
        if len(rest) == 1:
            return _check_type(rest[0], value, name)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{name} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{name} must be a whole number, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise UserError(f"{name} must be a number, not {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise UserError(f"{name} must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{name} must be a string, not {value!r}")
        return value
    if hint in (list, dict) or origin in (list, dict, tuple):
        kind = origin or hint
        if not isinstance(value, (list, tuple) if kind in (list, tuple) else dict):
            raise UserError(f"{name} must be a {'list' if kind in (list, tuple) else 'mapping'}, not {value!r}")
        return value
    return value


def choices(section: str, key: str) -> tuple[str, ...]:
    """The valid values of a choice setting of ``Config``, e.g. ``choices("detector", "name")``."""
    cls = _hints(Config)[section]
    hint = _hints(cls)[key]
    if typing.get_origin(hint) is not Literal:
        raise KeyError(f"{section}.{key} is not a choice setting")
    return typing.get_args(hint)


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
