"""Training configuration: one YAML per run (see assets/train_*.yaml), embedded in every checkpoint.

Sections: ``model`` (``SPPEModelSpec``), ``data``, ``augment`` (``AugmentConfig``), ``optim``,
``eval``, ``run``, and per command ``rmpe`` / ``pgpg`` / ``posefix`` (``PoseFixSpec``). Unknown keys are errors. Command-line
``--set section.key=value`` overrides are YAML-parsed values.

Batch size and learning rate are *global*: ``optim.batch_size`` is the batch of one optimiser
step summed over all DDP ranks (each rank takes batch_size / world_size) and ``optim.lr`` is the
rate for that global batch, so a run gives the same updates on 1 or N processes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from core.config import check_value, read_yaml_mapping, setting, update_sections
from core.errors import UserError
from core.models.posefix import PoseFixSpec
from core.models.trained_sppe import SPPEModelSpec
from training.datasets.coco_keypoints import AugmentConfig


@dataclass
class DataConfig:
    # Each split is a list of sources; a source is {images: DIR, annotations: JSON} or
    # {synthetic: {SyntheticSpec keys}} (generated once under run.out/data or ``synthetic_dir``).
    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    synthetic_dir: str | None = None
    min_keypoints: int = setting(1, ge=0)
    cache_images: bool = True
    workers: int = setting(0, ge=0)


@dataclass
class OptimConfig:
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"  # sgd: momentum 0.9
    lr: float = setting(1e-3, gt=0)  # for the global batch
    weight_decay: float = setting(1e-4, ge=0)
    schedule: Literal["cosine", "step"] = "cosine"
    milestones: list = field(default_factory=lambda: [0.7, 0.9])  # step: fractions of the run (or epochs if > 1)
    gamma: float = setting(0.1, gt=0)
    warmup_iters: int = setting(0, ge=0)
    min_lr_ratio: float = setting(0.01, ge=0, le=1)  # cosine floor
    epochs: int = setting(10, ge=0)
    batch_size: int = setting(32, ge=1)  # global, over all ranks
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    grad_clip: float = setting(0.0, ge=0)


@dataclass
class EvalConfig:
    every: int = setting(1, ge=1)  # epochs between evaluations (the last epoch always evaluates)
    before: bool = False  # also evaluate the initial model (logged as epoch 0)
    flip_test: bool = True
    decode: Literal["dark", "quarter", "argmax"] = "dark"
    dark_kernel: int = setting(0, ge=0)  # 0: from the heatmap size (11 for ≥ 48 px wide, else 5)
    batch_size: int = setting(64, ge=1)
    keypoint_threshold: float = setting(0.2, ge=0, le=1)  # person score = mean of keypoint maxima above this
    proposals: Literal["gt", "pgpg"] = "gt"  # RMPE evaluation boxes: gt, or seeded proposals from the PGPG model
    max_images: int = setting(0, ge=0)  # 0: whole validation set; else its first N images (all their people)


@dataclass
class RunConfig:
    out: str = "runs/train"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:N] (checked by core.models.zoo.resolve_device)
    threads: int = setting(0, ge=0)  # torch intra-op threads per process; 0 = torch default
    progress: bool = True  # tqdm bars (rank 0)
    log_every: int = setting(10, ge=1)  # steps between step-log rows (the first step always logs)
    keep_checkpoints: bool = False  # also keep every epoch's checkpoint as epoch_NNN.pt


@dataclass
class RMPEStage:
    name: str = "joint"
    epochs: int = setting(1, ge=0)
    lr: float = setting(1e-4, gt=0)
    train: list = field(default_factory=lambda: ["stn", "sppe"])  # parts that learn: stn, sppe
    proposal_prob: float = setting(1.0, ge=0, le=1)  # chance per sample of a PGPG proposal instead of the GT box


@dataclass
class RMPEConfig:
    init_sppe: str | None = None  # stage-1 SPPE checkpoint (else the stages must include sppe)
    parallel_sppe: str | None = None  # frozen parallel branch (default: a frozen copy of init_sppe)
    context: float = setting(1.5, ge=1)  # context crop around each proposal the STN can reach into
    loc_size: list = field(default_factory=lambda: [64, 48])
    loc_backbone: Literal["light", "resnet18"] = "light"  # resnet18: the paper's
    use_stn: bool = True  # ablation: False = plain box crops
    use_parallel: bool = True  # ablation: False = no parallel SPPE branch
    parallel_weight: float = setting(1.0, ge=0)
    stages: list = field(default_factory=list)  # RMPEStage dicts; empty: the default schedule


@dataclass
class PGPGConfig:
    atoms: int = setting(8, ge=1)  # k-means atomic poses
    components: int = setting(3, ge=1)  # Gaussian mixture components per atom
    min_keypoints: int = setting(6, ge=1)
    box_source: Literal["detector", "file", "jitter"] = "detector"
    boxes_file: str | None = None  # box_source file: COCO results JSON (image_id, bbox, score)
    detector: dict = field(default_factory=dict)  # DetectorConfig overrides for box_source detector
    detections_cache: str | None = None  # default run.out/detections.json
    iou_threshold: float = setting(0.5, ge=0, le=1)  # a detection matches a GT box at this IoU
    jitter: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0, 0.05, 0.05, 0.05, 0.05])  # mean, std
    # The PGPG model file: train pgpg writes it (default run.out/pgpg.json); train sppe / rmpe sample
    # proposals from it (sppe: augment.proposal_prob; rmpe: each stage's proposal_prob; without one,
    # rmpe jitters the GT boxes by ``jitter``)
    model: str | None = None


@dataclass
class TrainConfig:
    model: SPPEModelSpec = field(default_factory=SPPEModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    rmpe: RMPEConfig = field(default_factory=RMPEConfig)
    pgpg: PGPGConfig = field(default_factory=PGPGConfig)
    posefix: PoseFixSpec = field(default_factory=PoseFixSpec)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return _plain(d)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        cfg = cls()
        cfg.update(data)
        return cfg

    def update(self, data: dict) -> "TrainConfig":
        data = dict(data or {})
        model = data.pop("model", None)
        if model is not None:  # the model spec validates its own keys
            if not isinstance(model, dict):
                raise UserError("training config: section 'model' must be a mapping")
            self.model = SPPEModelSpec.from_dict({**self.model.to_dict(), **model})
        update_sections(self, data, "training config")
        self.validate()
        return self

    def validate(self) -> None:
        """What one field cannot say alone (types, ranges and choices are checked as values load)."""
        o = self.optim
        if not all(isinstance(m, (int, float)) and not isinstance(m, bool) for m in o.milestones):
            raise UserError(f"training config: optim.milestones must be a list of numbers, not {o.milestones!r}")
        ms = [float(m) for m in o.milestones]
        if ms and not (all(0 < m <= 1 for m in ms) or all(m > 1 for m in ms)):
            raise UserError("optim.milestones: give all fractions of the run (0-1] or all epoch numbers (> 1)")
        for stage in self.rmpe.stages:
            rmpe_stage(stage)
        self.posefix.validate()


def rmpe_stage(data: dict | RMPEStage) -> RMPEStage:
    if isinstance(data, RMPEStage):
        return data
    if not isinstance(data, dict):
        raise UserError("rmpe.stages: each stage must be a mapping")
    names = {f.name for f in dataclasses.fields(RMPEStage)}
    unknown = set(data) - names
    if unknown:
        raise UserError(f"rmpe.stages: unknown key(s) {', '.join(sorted(unknown))}")
    fields_ = {f.name: f for f in dataclasses.fields(RMPEStage)}
    stage = RMPEStage(**{k: check_value(RMPEStage, fields_[k], v, f"rmpe.stages: {k}") for k, v in data.items()})
    bad = set(stage.train) - {"stn", "sppe"}
    if bad or not stage.train:
        raise UserError(f"rmpe stage {stage.name!r}: train must list stn and/or sppe")
    return stage


def _plain(value):
    """Tuples → lists so the config survives YAML / safe torch.load round trips."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def parse_overrides(items: list[str] | None) -> dict:
    """``["optim.lr=0.01", "model.input_size=[64, 48]"]`` → nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UserError(f"--set {item!r}: expected section.key=value")
        key, raw = item.split("=", 1)
        section, name = key.split(".", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: value is not valid YAML") from None
        out.setdefault(section, {})[name] = value
    return out


def load_config(path: str | Path | None, overrides: dict | None = None) -> TrainConfig:
    """Config from a YAML file plus overrides (relative paths in it are relative to the working directory)."""
    cfg = TrainConfig()
    if path is not None:
        cfg.update(read_yaml_mapping(path, "training config"))
    if overrides:
        cfg.update(overrides)
    return cfg


def check_synthetic_args(num_images: int, size, people, video: int) -> None:
    """``train synthetic`` flags, one UserError line each: ``--num-images`` >= 1, ``--size H W``
    each in [32, 8192], ``--people MIN MAX`` with 0 <= MIN <= MAX <= 50, ``--video`` >= 0."""
    if num_images < 1:
        raise UserError(f"--num-images must be >= 1, not {num_images}")
    if not all(32 <= v <= 8192 for v in size):
        raise UserError(f"--size H W must each lie in [32, 8192], not {' '.join(map(str, size))}")
    lo, hi = people
    if not 0 <= lo <= hi <= 50:
        raise UserError(f"--people MIN MAX needs 0 <= MIN <= MAX <= 50, not {lo} {hi}")
    if video < 0:
        raise UserError(f"--video must be >= 0, not {video}")
