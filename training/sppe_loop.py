"""``train sppe``: Stacked Hourglass or ResNet SPPE on top-down person crops.

Per epoch: augmented crops (optionally PGPG proposals instead of GT boxes), weighted heatmap MSE
on every stack (intermediate supervision), AdamW/Adam with a per-iteration cosine or step
schedule, AMP on CUDA; then OKS AP on the validation set (flip test, DARK decoding, pycocotools),
a row in ``metrics.csv`` (``steps.csv`` holds the step losses) and ``last.pt`` / ``best.pt``
checkpoints that embed the config. ``--resume last.pt`` continues where a run stopped.
"""
from __future__ import annotations

import logging
import torch

from core.models.trained_sppe import build_sppe_model, to_heatmaps
from core.skeleton import get_skeleton
from training.checkpoint import load_checkpoint
from training.common import (amp_enabled, build_dataset, channels_last, describe_device, eval_loader,
                             geometry_from, heatmap_loss, parts_of)
from training.config import TrainConfig
from training.datasets.coco_keypoints import AugmentConfig
from training.ddp import DistInfo
from training.engine import AP_FIELDS, RunLogs, ap_fields, fit_single_phase, run_distributed
from training.evaluate import evaluate_parts, flip_averaged
from training.pgpg import load_proposals

log = logging.getLogger("rmpe.train")

EPOCH_FIELDS = ["epoch", "loss", "images_per_s"] + AP_FIELDS


def sppe_predictor(model: torch.nn.Module, cfg: TrainConfig, info: DistInfo):
    """Batch → (flip-averaged last-stage heatmaps, crop→image θ) for evaluation."""
    flip_index = get_skeleton(cfg.model.layout).flip_index

    def net(x):
        return to_heatmaps(model(channels_last(x))[-1].float(), cfg.model)

    def predict(batch):
        x = batch["image"].to(info.device)
        with torch.autocast(info.device.type, enabled=amp_enabled(cfg, info.device)):
            heat = flip_averaged(net, x, flip_index, cfg.eval.flip_test)
        return heat.float(), batch["theta"].numpy()

    return predict


def evaluate_model(model: torch.nn.Module, val_parts: list, cfg: TrainConfig, info: DistInfo) -> dict:
    model.eval()
    with torch.no_grad():
        return evaluate_parts(val_parts, sppe_predictor(model, cfg, info), cfg, info, cfg.model.input_size,
                              cfg.model.heatmap_size)


def run_sppe(cfg: TrainConfig, resume: str | None = None, init: str | None = None) -> dict:
    """Train an SPPE; returns {"history": [epoch rows], "best_ap", "last", "best"}."""
    return run_distributed(cfg, _run, resume, init)


def _run(cfg: TrainConfig, info: DistInfo, resume: str | None, init: str | None) -> dict:
    spec = cfg.model
    log.info("train sppe: %s on %s, %d process(es); global batch %d (%d per process), lr %.3g",
             spec.arch, describe_device(info), info.world_size, cfg.optim.batch_size,
             cfg.optim.batch_size // info.world_size, cfg.optim.lr)
    logs = RunLogs.open(cfg, info, EPOCH_FIELDS)
    geometry = geometry_from(cfg)
    proposals = load_proposals(cfg.pgpg.model)
    if proposals is None and cfg.augment.proposal_prob > 0:
        log.info("augment.proposal_prob ignored: no PGPG model given (pgpg.model)")
    train_set = build_dataset(cfg, "train", info, geometry, cfg.augment, proposals)
    val_set = build_dataset(cfg, "val", info, geometry, AugmentConfig.none())
    val_parts = [(p, eval_loader(p, cfg, info)) for p in parts_of(val_set)]

    model = build_sppe_model(spec).to(info.device, memory_format=torch.channels_last)
    ckpt = load_checkpoint(resume, "sppe") if resume else None
    if ckpt is not None or init:
        model.load_state_dict((ckpt or load_checkpoint(init))["model"])

    def loss_fn(train_model, batch):
        return heatmap_loss(train_model(channels_last(batch["image"])), batch["target"], batch["target_weight"],
                            spec.loss)

    def evaluate(net) -> dict:
        return ap_fields(evaluate_model(net, val_parts, cfg, info))

    return fit_single_phase("sppe", spec, model, train_set, cfg, info, logs, ckpt, resume,
                            sum(len(p) for p, _ in val_parts), loss_fn, evaluate)
