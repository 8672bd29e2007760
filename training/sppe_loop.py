"""``train sppe``: Stacked Hourglass or ResNet SPPE on top-down person crops.

Per epoch: augmented crops (optionally PGPG proposals instead of GT boxes), weighted heatmap MSE
on every stack (intermediate supervision), AdamW/Adam with a per-iteration cosine or step
schedule, AMP on CUDA; then OKS AP on the validation set (flip test, DARK decoding, pycocotools),
a row in ``metrics.csv`` (``steps.csv`` holds the step losses) and ``last.pt`` / ``best.pt``
checkpoints that embed the config. ``--resume last.pt`` continues where a run stopped.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from core.models.trained_sppe import build_sppe_model, to_heatmaps
from core.skeleton import get_skeleton
from training.checkpoint import load_checkpoint, save_epoch_checkpoints
from training.common import (amp_enabled, build_dataset, channels_last, describe_device, eval_loader,
                             geometry_from, heatmap_loss, make_optimizer, make_scaler, make_scheduler, parts_of,
                             seed_everything, set_epoch, set_threads, train_loader)
from training.config import TrainConfig
from training.datasets.coco_keypoints import AugmentConfig
from training.ddp import DistInfo, barrier, cleanup, init_distributed, unwrap, wrap_model
from training.engine import train_one_epoch
from training.evaluate import evaluate_parts, flip_averaged
from training.metrics import CSVLog
from training.pgpg import load_proposals

log = logging.getLogger("rmpe.train")

AP_FIELDS = ["AP", "AP50", "AP75", "APm", "APl", "AR"]
STEP_FIELDS = ["step", "epoch", "loss", "lr", "images_per_s"]
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
    threads = set_threads(cfg.run.threads)
    info = init_distributed(cfg.run.device)
    try:
        return _run(cfg, info, resume, init)
    finally:
        cleanup(info)
        torch.set_num_threads(threads)


def _run(cfg: TrainConfig, info: DistInfo, resume: str | None, init: str | None) -> dict:
    seed_everything(cfg.run.seed)
    out = Path(cfg.run.out)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    spec = cfg.model
    log.info("train sppe: %s on %s, %d process(es); global batch %d (%d per process), lr %.3g",
             spec.arch, describe_device(info), info.world_size, cfg.optim.batch_size,
             cfg.optim.batch_size // info.world_size, cfg.optim.lr)
    geometry = geometry_from(cfg)
    proposals = load_proposals(cfg.pgpg.model)
    augment = cfg.augment
    if proposals is None and augment.proposal_prob > 0:
        log.info("augment.proposal_prob ignored: no PGPG model given (pgpg.model)")
    train_set = build_dataset(cfg, "train", info, geometry, augment, proposals)
    val_set = build_dataset(cfg, "val", info, geometry, AugmentConfig.none())
    val_parts = [(p, eval_loader(p, cfg, info)) for p in parts_of(val_set)]

    model = build_sppe_model(spec).to(info.device, memory_format=torch.channels_last)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(resume, "sppe")
        model.load_state_dict(ckpt["model"])
    elif init:
        model.load_state_dict(load_checkpoint(init)["model"])
    train_model = wrap_model(model, info)
    loader, sampler = train_loader(train_set, cfg, info)
    optimizer = make_optimizer(train_model.parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg, len(loader))
    scaler = make_scaler(cfg, info.device)
    start_epoch, best_ap, history = 0, -1.0, []
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best_ap = int(ckpt["epoch"]), float(ckpt["best_ap"])
        history = list(ckpt.get("metrics", {}).get("history", []))
        log.info("resumed from %s at epoch %d (best AP %.4f)", resume, start_epoch, best_ap)
    log.info("%d training people (%d steps/epoch), %d validation people", len(train_set), len(loader),
             sum(len(p) for p, _ in val_parts))

    step_log = CSVLog(out / "steps.csv", STEP_FIELDS, enabled=info.is_main)
    epoch_log = CSVLog(out / "metrics.csv", EPOCH_FIELDS, enabled=info.is_main)
    paths = {"last": out / "last.pt", "best": out / "best.pt"}

    def loss_fn(batch):
        return heatmap_loss(train_model(channels_last(batch["image"])), batch["target"], batch["target_weight"],
                            spec.loss)

    if cfg.eval.before and start_epoch == 0:
        metrics = evaluate_model(unwrap(train_model), val_parts, cfg, info)
        row = {"epoch": 0, "loss": float("nan"), "images_per_s": 0.0, **_ap_fields(metrics)}
        history.append(row)
        epoch_log.write(row)
        log.info("epoch 0 (untrained): AP %.4f", metrics["AP"])

    for epoch in range(start_epoch, cfg.optim.epochs):
        set_epoch(train_set, epoch)
        sampler.set_epoch(epoch)
        stats = train_one_epoch(train_model, loader, loss_fn, optimizer, scheduler, scaler, cfg, info, epoch + 1,
                                step_log, first_step=epoch * len(loader), desc="sppe")
        row = {"epoch": epoch + 1, "loss": stats["loss"], "images_per_s": stats["images_per_s"]}
        last_epoch = epoch + 1 == cfg.optim.epochs
        if last_epoch or (epoch + 1) % max(cfg.eval.every, 1) == 0:
            metrics = evaluate_model(unwrap(train_model), val_parts, cfg, info)
            row.update(_ap_fields(metrics))
        history.append(row)
        epoch_log.write(row)
        improved = "AP" in row and row["AP"] > best_ap
        if improved:
            best_ap = row["AP"]
        log.info("epoch %d: loss %.5f, %.1f img/s%s", epoch + 1, stats["loss"], stats["images_per_s"],
                 f", AP {row['AP']:.4f} (AP50 {row['AP50']:.4f})" if "AP" in row else "")
        if info.is_main:
            kwargs = dict(kind="sppe", spec=spec, config=cfg.to_dict(), model=unwrap(train_model), epoch=epoch + 1,
                          optimizer=optimizer, scheduler=scheduler, scaler=scaler, best_ap=best_ap,
                          metrics={"history": history})
            save_epoch_checkpoints(paths, out, epoch + 1, improved, cfg.run.keep_checkpoints, **kwargs)
        barrier(info)
    return {"history": history, "best_ap": best_ap, "last": str(paths["last"]), "best": str(paths["best"])}


def _ap_fields(metrics: dict) -> dict:
    return {k: metrics[k] for k in AP_FIELDS if k in metrics}
