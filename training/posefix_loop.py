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
from training.checkpoint import load_checkpoint
from training.common import amp_enabled, describe_device, eval_loader, parts_of, resolve_sources
from training.config import TrainConfig
from training.datasets.coco_keypoints import AugmentConfig
from training.datasets.posefix import PoseFixSamples
from training.ddp import DistInfo, broadcast_object, gather_lists
from training.engine import AP_FIELDS, RunLogs, ap_fields, fit_single_phase, run_distributed
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

    def loss_fn(train_model, batch):
        logits = train_model(batch["image"], batch["pose_xy"], batch["pose_valid"])
        return posefix_loss(logits, batch["target_xy"], batch["target_weight"], spec.l1_weight)

    def evaluate_now(net) -> dict:
        return evaluate_posefix(net, val_parts, cfg, info)

    return fit_single_phase(KIND, spec, model, train_set, cfg, info, logs, ckpt, resume,
                            sum(len(p) for p, _ in val_parts), loss_fn, evaluate_now)
