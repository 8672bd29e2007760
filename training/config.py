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
from typing import Any

import yaml

from core.config import read_yaml_mapping, update_sections
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
    min_keypoints: int = 1
    cache_images: bool = True
    workers: int = 0


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # adamw | adam | sgd (momentum 0.9)
    lr: float = 1e-3  # for the global batch
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | step
    milestones: list = field(default_factory=lambda: [0.7, 0.9])  # step: fractions of the run (or epochs if > 1)
    gamma: float = 0.1
    warmup_iters: int = 0
    min_lr_ratio: float = 0.01  # cosine floor
    epochs: int = 10
    batch_size: int = 32  # global, over all ranks
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    grad_clip: float = 0.0


@dataclass
class EvalConfig:
    every: int = 1  # epochs between evaluations (the last epoch always evaluates)
    before: bool = False  # also evaluate the initial model (logged as epoch 0)
    flip_test: bool = True
    decode: str = "dark"  # dark | quarter | argmax
    dark_kernel: int = 0  # 0: from the heatmap size (11 for ≥ 48 px wide, else 5)
    batch_size: int = 64
    keypoint_threshold: float = 0.2  # person score = mean of keypoint maxima above this
    proposals: str = "gt"  # RMPE evaluation boxes: gt | pgpg (seeded proposals from the PGPG model)
    max_images: int = 0  # 0: whole validation set; else its first N images (all their people)


@dataclass
class RunConfig:
    out: str = "runs/train"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads per process; 0 = torch default
    progress: bool = True  # tqdm bars (rank 0)
    log_every: int = 10  # steps between step-log rows (the first step always logs)
    keep_checkpoints: bool = False  # also keep every epoch's checkpoint as epoch_NNN.pt


@dataclass
class RMPEStage:
    name: str = "joint"
    epochs: int = 1
    lr: float = 1e-4
    train: list = field(default_factory=lambda: ["stn", "sppe"])  # parts that learn: stn, sppe
    proposal_prob: float = 1.0  # chance per sample of a PGPG proposal instead of the GT box


@dataclass
class RMPEConfig:
    init_sppe: str | None = None  # stage-1 SPPE checkpoint (else the stages must include sppe)
    parallel_sppe: str | None = None  # frozen parallel branch (default: a frozen copy of init_sppe)
    context: float = 1.5  # context crop around each proposal the STN can reach into
    loc_size: list = field(default_factory=lambda: [64, 48])
    loc_backbone: str = "light"  # light | resnet18 (the paper's)
    use_stn: bool = True  # ablation: False = plain box crops
    use_parallel: bool = True  # ablation: False = no parallel SPPE branch
    parallel_weight: float = 1.0
    stages: list = field(default_factory=list)  # RMPEStage dicts; empty: the default schedule


@dataclass
class PGPGConfig:
    atoms: int = 8  # k-means atomic poses
    components: int = 3  # Gaussian mixture components per atom
    min_keypoints: int = 6
    box_source: str = "detector"  # detector | file | jitter
    boxes_file: str | None = None  # box_source file: COCO results JSON (image_id, bbox, score)
    detector: dict = field(default_factory=dict)  # DetectorConfig overrides for box_source detector
    detections_cache: str | None = None  # default run.out/detections.json
    iou_threshold: float = 0.5  # a detection matches a GT box at this IoU
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
        o = self.optim
        if o.optimizer not in ("adam", "adamw", "sgd"):
            raise UserError(f"optim.optimizer {o.optimizer!r}: choose adamw, adam or sgd")
        if o.schedule not in ("cosine", "step"):
            raise UserError(f"optim.schedule {o.schedule!r}: choose cosine or step")
        if o.batch_size < 1 or o.epochs < 0 or o.lr <= 0:
            raise UserError("optim: batch_size >= 1, epochs >= 0 and lr > 0 are required")
        ms = [float(m) for m in o.milestones]
        if ms and not (all(0 < m <= 1 for m in ms) or all(m > 1 for m in ms)):
            raise UserError("optim.milestones: give all fractions of the run (0-1] or all epoch numbers (> 1)")
        if self.eval.decode not in ("dark", "quarter", "argmax"):
            raise UserError(f"eval.decode {self.eval.decode!r}: choose dark, quarter or argmax")
        if self.eval.proposals not in ("gt", "pgpg"):
            raise UserError(f"eval.proposals {self.eval.proposals!r}: choose gt or pgpg")
        if self.pgpg.box_source not in ("detector", "file", "jitter"):
            raise UserError(f"pgpg.box_source {self.pgpg.box_source!r}: choose detector, file or jitter")
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
    stage = RMPEStage(**data)
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
