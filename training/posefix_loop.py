"""``train posefix``: the PoseFix refiner on synthetic errors of ground-truth poses.

Per epoch: every annotated person of the training sources, with an input pose drawn by the error
synthesiser and the paper's augmentation (``training.datasets.posefix``); loss = softmax CE
against the bilinear one-hot GT + L1 of the soft-argmax (``core.models.posefix``). Evaluation on
held-out sources with fixed synthetic inputs: the OKS AP (pycocotools) of the refined poses
(``AP`` ..., flip test when ``eval.flip_test``) next to the AP of the unrefined inputs
(``input_AP`` ...) and their difference ``AP_gain``. Checkpoints (kind ``posefix``) carry the
``PoseFixSpec`` and the config; the shared skeleton (``training.engine``) keeps the best, resumes,
logs CSV and runs under torchrun.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import ConcatDataset

from core.evaluation.coco_eval import evaluate
from core.models.posefix import KIND, build_posefix, posefix_loss, refine_crops
from core.models.sstn import crop_to_image
from training.checkpoint import load_checkpoint, load_optim_state
from training.common import (amp_enabled, describe_device, eval_loader, make_optimizer, make_scaler, make_scheduler,
                             parts_of, resolve_sources, train_loader)
from training.config import TrainConfig
from training.datasets.coco_keypoints import AugmentConfig
from training.datasets.posefix import PoseFixSamples
from training.ddp import DistInfo, broadcast_object, gather_lists, unwrap, wrap_model
from training.engine import AP_FIELDS, Phase, RunLogs, TrainState, ap_fields, evaluate_initial, fit, run_distributed
from training.evaluate import validation_ground_truth

log = logging.getLogger("rmpe.train")

EPOCH_FIELDS = ["epoch", "loss", "images_per_s"] + AP_FIELDS + [f"input_{k}" for k in AP_FIELDS] + ["AP_gain"]


def build_posefix_dataset(cfg: TrainConfig, split: str, info: DistInfo, augment: AugmentConfig):
    parts = [PoseFixSamples(images, ann, cfg.posefix, augment, min_keypoints=max(cfg.data.min_keypoints, 3),
                            cache_images=cfg.data.cache_images, seed=cfg.run.seed + (0 if split == "train" else 7919))
             for images, ann in resolve_sources(cfg, split, info)]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def _results(xy: np.ndarray, batch: dict) -> list[dict]:
    """COCO results of keypoints xy [N, K, 2] (image px) scored like the inputs."""
    vis = batch["input_keypoints"][..., 2].numpy()
    out = []
    for i in range(len(xy)):
        kp = np.concatenate([xy[i], vis[i][:, None]], 1)
        out.append({"image_id": int(batch["image_id"][i]), "category_id": 1, "score": float(batch["score"][i]),
                    "keypoints": [round(float(v), 3) for v in kp.reshape(-1)]})
    return out


@torch.no_grad()
def predict_parts(net, loader, cfg: TrainConfig, info: DistInfo) -> tuple[list[dict], list[dict]]:
    """(refined results, input results) of this rank's shard."""
    refined, inputs = [], []
    for batch in loader:
        with torch.autocast(info.device.type, enabled=amp_enabled(cfg, info.device)):
            crop_xy = refine_crops(net, batch["image"].to(info.device), batch["pose_xy"].to(info.device),
                                   batch["pose_valid"].to(info.device), cfg.eval.flip_test)
        xy = crop_to_image(crop_xy.double().cpu().numpy(), batch["theta"].numpy())
        refined += _results(xy, batch)
        inputs += _results(batch["input_keypoints"][..., :2].numpy(), batch)
    return refined, inputs


def evaluate_posefix(net, val_parts: list, cfg: TrainConfig, info: DistInfo) -> dict:
    """Refined and input AP fields (means over the validation sources) and ``AP_gain``; every rank
    returns the same dict."""
    net.eval()
    rows = []
    for dataset, loader in val_parts:
        refined, inputs = predict_parts(net, loader, cfg, info)
        refined, inputs = gather_lists(refined, info), gather_lists(inputs, info)
        row = None
        if info.is_main:
            gt = validation_ground_truth(dataset, cfg)
            row = {**ap_fields(evaluate(gt, refined).stats), **ap_fields(evaluate(gt, inputs).stats, "input_")}
        rows.append(broadcast_object(row, info))
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["AP_gain"] = out["AP"] - out["input_AP"]
    return out


def run_posefix(cfg: TrainConfig, resume: str | None = None, init: str | None = None) -> dict:
    """Train a PoseFix refiner; returns {"history", "best_ap", "last", "best"}."""
    return run_distributed(cfg, _run, resume, init)


def _run(cfg: TrainConfig, info: DistInfo, resume: str | None, init: str | None) -> dict:
    spec = cfg.posefix
    log.info("train posefix: %s backbone%s, input %dx%d, on %s, %d process(es); global batch %d, lr %.3g",
             spec.backbone, f" (ResNet-{spec.resnet_depth}, width {spec.width})" if spec.backbone == "resnet" else "",
             *spec.input_size, describe_device(info), info.world_size, cfg.optim.batch_size, cfg.optim.lr)
    logs = RunLogs.open(cfg, info, EPOCH_FIELDS)
    train_set = build_posefix_dataset(cfg, "train", info, cfg.augment)
    val_parts = [(p, eval_loader(p, cfg, info)) for p in
                 parts_of(build_posefix_dataset(cfg, "val", info, AugmentConfig.none()))]
    model = build_posefix(spec).to(info.device)
    ckpt = load_checkpoint(resume, KIND) if resume else None
    if ckpt is not None or init:
        model.load_state_dict((ckpt or load_checkpoint(init, KIND))["model"])
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
        logits = train_model(batch["image"], batch["pose_xy"], batch["pose_valid"])
        return posefix_loss(logits, batch["target_xy"], batch["target_weight"], spec.l1_weight)

    def evaluate_now():
        return evaluate_posefix(unwrap(train_model), val_parts, cfg, info)

    def checkpoint(finished: bool) -> dict:
        return dict(kind=KIND, spec=spec, config=cfg.to_dict(), model=unwrap(train_model), optimizer=optimizer,
                    scheduler=scheduler, scaler=scaler)

    if cfg.eval.before and state.epoch == 0:
        evaluate_initial(state, logs, evaluate_now, {})
    phase = Phase("posefix", cfg.optim.epochs, train_model, loader, sampler, train_set, loss_fn, optimizer, scheduler,
                  scaler, checkpoint)
    fit(phase, state, cfg, info, logs, evaluate_now, start=state.epoch)
    return logs.result(state)
