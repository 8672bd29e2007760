"""Pieces every training loop shares: data sources, loaders, optimiser, schedule, loss, seeding."""
from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, Subset

from core.errors import UserError
from training.config import TrainConfig
from training.datasets.coco_keypoints import AugmentConfig, CocoKeypoints, SampleGeometry, collate
from training.ddp import DistInfo, barrier, per_rank_batch

log = logging.getLogger("rmpe.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (0 keeps the default); returns the previous count to restore."""
    before = torch.get_num_threads()
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    return before


def geometry_from(cfg: TrainConfig, context: float = 1.0) -> SampleGeometry:
    m = cfg.model
    return SampleGeometry(input_size=tuple(m.input_size), heatmap_size=m.heatmap_size, sigma=float(m.sigma),
                          layout=m.layout, mean=tuple(m.mean), std=tuple(m.std), context=context)


COCO_HINT = ("Datasets are not downloaded for you (README 'Training data': COCO goes under data/coco); "
             "assets/train_sppe_ci.yaml trains offline on synthetic people")


def check_data_sources(cfg: TrainConfig, splits=("train", "val")) -> None:
    """Every file-based source of ``data.train`` and ``data.val`` exists (UserError naming the first one
    missing); run before anything is generated, so a missing dataset costs no synthesis time."""
    for split in splits:
        sources = getattr(cfg.data, split, None)
        if isinstance(sources, dict):
            sources = [sources]
        for i, src in enumerate(sources or []):
            if not isinstance(src, dict) or "synthetic" in src or "annotations" not in src:
                continue  # resolve_sources reports malformed entries
            file_source(split, i, src)


def file_source(split: str, i: int, src: dict) -> tuple[Path, Path]:
    """(images_dir, annotations.json) of a file-based source, both present, else one UserError."""
    ann = Path(src["annotations"])
    images = Path(src.get("images", ann.parent))
    if not ann.is_file():
        raise UserError(f"data.{split}[{i}]: annotations not found: {ann}. {COCO_HINT}")
    if not images.is_dir():
        raise UserError(f"data.{split}[{i}]: image folder not found: {images}. {COCO_HINT}")
    return images, ann


def resolve_sources(cfg: TrainConfig, split: str, info: DistInfo) -> list[tuple[Path, Path]]:
    """(images_dir, annotations.json) per source of ``data.<split>``; synthetic sources are generated
    (by rank 0, once; an existing identical dataset is reused)."""
    from training.datasets.synthetic import SyntheticSpec, generate_dataset

    sources = getattr(cfg.data, split)
    if isinstance(sources, dict):
        sources = [sources]
    if not sources:
        raise UserError(f"data.{split}: no data source (give images + annotations, or synthetic)")
    out = []
    for i, src in enumerate(sources):
        if not isinstance(src, dict):
            raise UserError(f"data.{split}[{i}]: expected a mapping")
        if "synthetic" in src:
            spec = SyntheticSpec.from_dict(src["synthetic"])
            root = Path(cfg.data.synthetic_dir or Path(cfg.run.out) / "data") / f"{split}_{i}_seed{spec.seed}"
            if info.is_main:
                generate_dataset(root, spec, progress=cfg.run.progress)
            barrier(info)
            out.append((root / "images", root / "annotations.json"))
        elif "annotations" in src:
            out.append(file_source(split, i, src))
        else:
            raise UserError(f"data.{split}[{i}]: needs 'annotations' (+ 'images') or 'synthetic'")
    return out


def build_dataset(cfg: TrainConfig, split: str, info: DistInfo, geometry: SampleGeometry,
                  augment: AugmentConfig, proposals=None) -> CocoKeypoints | ConcatDataset:
    parts = [CocoKeypoints(images, ann, geometry, augment, proposals=proposals, min_keypoints=cfg.data.min_keypoints,
                           cache_images=cfg.data.cache_images, seed=cfg.run.seed + (0 if split == "train" else 7919))
             for images, ann in resolve_sources(cfg, split, info)]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def set_epoch(dataset, epoch: int) -> None:
    for part in getattr(dataset, "datasets", [dataset]):
        part.set_epoch(epoch)


def parts_of(dataset) -> list[CocoKeypoints]:
    return list(getattr(dataset, "datasets", [dataset]))


def train_loader(dataset, cfg: TrainConfig, info: DistInfo) -> tuple[DataLoader, DistributedSampler]:
    """Shuffled, drop-last loader of batch_size / world per rank (one shared permutation)."""
    batch = per_rank_batch(cfg.optim.batch_size, info.world_size)
    if len(dataset) < cfg.optim.batch_size:
        raise UserError(f"training set has {len(dataset)} people, fewer than one batch ({cfg.optim.batch_size})")
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.run.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True, collate_fn=collate,
                        num_workers=cfg.data.workers, persistent_workers=cfg.data.workers > 0,
                        pin_memory=info.device.type == "cuda")
    return loader, sampler


def eval_indices(dataset: CocoKeypoints, max_images: int) -> list[int]:
    """Samples of the first ``max_images`` images (all of them when 0)."""
    if max_images <= 0:
        return list(range(len(dataset)))
    keep = {img["id"] for img in dataset.data["images"][:max_images]}
    return [i for i, ann in enumerate(dataset.samples) if ann["image_id"] in keep]


def eval_loader(dataset: CocoKeypoints, cfg: TrainConfig, info: DistInfo) -> DataLoader:
    """This rank's shard (every world-th sample, no padding: each person is scored exactly once)."""
    indices = eval_indices(dataset, cfg.eval.max_images)
    shard = Subset(dataset, indices[info.rank::info.world_size])
    return DataLoader(shard, batch_size=cfg.eval.batch_size, shuffle=False, collate_fn=collate,
                      num_workers=cfg.data.workers, pin_memory=info.device.type == "cuda")


def make_optimizer(params, cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    o = cfg.optim
    lr = o.lr if lr is None else lr
    params = [p for p in params if p.requires_grad]
    if o.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=o.weight_decay)
    if o.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=o.weight_decay)


def lr_factor(cfg: TrainConfig, total_iters: int):
    """Per-iteration LR multiplier: linear warmup, then cosine to ``min_lr_ratio`` or steps × gamma."""
    o = cfg.optim
    total = max(int(total_iters), 1)
    milestones = [int(round(m * total)) if m <= 1 else None for m in o.milestones]

    def factor(it: int) -> float:
        if o.warmup_iters > 0 and it < o.warmup_iters:
            return (it + 1) / o.warmup_iters
        if o.schedule == "cosine":
            t = min(it / total, 1.0)
            return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        return o.gamma ** sum(1 for m in milestones if m is not None and it >= m)

    return factor


def make_scheduler(optimizer, cfg: TrainConfig, iters_per_epoch: int, epochs: int | None = None):
    """LambdaLR stepped every iteration (its state dict resumes the position)."""
    epochs = cfg.optim.epochs if epochs is None else epochs
    o = cfg.optim
    if o.schedule == "step" and any(m > 1 for m in o.milestones):
        # milestones given in epochs
        steps = [int(m) * iters_per_epoch for m in o.milestones]

        def factor(it: int) -> float:
            warm = (it + 1) / o.warmup_iters if o.warmup_iters > 0 and it < o.warmup_iters else 1.0
            return warm * o.gamma ** sum(1 for s in steps if it >= s)
    else:
        factor = lr_factor(cfg, iters_per_epoch * epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def heatmap_loss(outputs: list[torch.Tensor], target: torch.Tensor, weight: torch.Tensor,
                 kind: str = "mse") -> torch.Tensor:
    """Loss summed over stacks (intermediate supervision), weighted per joint, mean over N·K(·H·W).

    ``mse``: squared error to the Gaussian targets. ``softmax``: cross-entropy between the spatial
    softmax of the output and the target normalised to sum 1. The normaliser does not depend on
    how many joints are labelled, so rank-local losses average to the global-batch loss exactly
    (DDP comparability).
    """
    total = target.new_zeros((), dtype=torch.float32)
    if kind == "softmax":
        n, k = target.shape[:2]
        t = target.reshape(n, k, -1).float()
        t = t / t.sum(-1, keepdim=True).clamp_min(1e-12)
        for out in outputs:
            logp = torch.log_softmax(out.float().reshape(n, k, -1), dim=-1)
            total = total + (-(t * logp).sum(-1) * weight).mean()
        return total
    w = weight[:, :, None, None].float()
    for out in outputs:
        total = total + ((out.float() - target) ** 2 * w).mean()
    return total


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC memory layout: oneDNN / cuDNN convolutions run faster on it."""
    return x.contiguous(memory_format=torch.channels_last)


def amp_enabled(cfg: TrainConfig, device: torch.device) -> bool:
    return bool(cfg.optim.amp) and device.type == "cuda"


def make_scaler(cfg: TrainConfig, device: torch.device):
    return torch.amp.GradScaler("cuda", enabled=amp_enabled(cfg, device))


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def describe_device(info: DistInfo) -> str:
    if info.device.type == "cuda":
        return f"cuda:{info.device.index} ({torch.cuda.get_device_name(info.device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
