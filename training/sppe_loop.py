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
from training.checkpoint import load_checkpoint, load_optim_state
from training.common import (amp_enabled, build_dataset, channels_last, describe_device, eval_loader,
                             geometry_from, heatmap_loss, make_optimizer, make_scaler, make_scheduler, parts_of,
                             train_loader)
from training.config import TrainConfig
from training.datasets.coco_keypoints import AugmentConfig
from training.ddp import DistInfo, unwrap, wrap_model
from training.engine import AP_FIELDS, Phase, RunLogs, TrainState, ap_fields, evaluate_initial, fit, run_distributed
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
    train_model = wrap_model(model, info)
    loader, sampler = train_loader(train_set, cfg, info)
    optimizer = make_optimizer(train_model.parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg, len(loader))
    scaler = make_scaler(cfg, info.device)
    state = TrainState.from_checkpoint(ckpt)
    if ckpt is not None:
        load_optim_state(ckpt, optimizer, scheduler, scaler)
        log.info("resumed from %s at epoch %d (best AP %.4f)", resume, state.epoch, state.best_ap)
    log.info("%d training people (%d steps/epoch), %d validation people", len(train_set), len(loader),
             sum(len(p) for p, _ in val_parts))

    def loss_fn(batch):
        return heatmap_loss(train_model(channels_last(batch["image"])), batch["target"], batch["target_weight"],
                            spec.loss)

    def evaluate():
        return ap_fields(evaluate_model(unwrap(train_model), val_parts, cfg, info))

    def checkpoint(finished: bool) -> dict:
        return dict(kind="sppe", spec=spec, config=cfg.to_dict(), model=unwrap(train_model), optimizer=optimizer,
                    scheduler=scheduler, scaler=scaler)

    if cfg.eval.before and state.epoch == 0:
        evaluate_initial(state, logs, evaluate, {})
    phase = Phase("sppe", cfg.optim.epochs, train_model, loader, sampler, train_set, loss_fn, optimizer, scheduler,
                  scaler, checkpoint)
    fit(phase, state, cfg, info, logs, evaluate, start=state.epoch)
    return logs.result(state)
