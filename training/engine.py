"""The epoch loop both SPPE and RMPE training run: forward/backward with AMP on CUDA, per-step LR
schedule, gradient clipping, rank-averaged loss logging, tqdm progress on rank 0."""
from __future__ import annotations

import time
from typing import Callable

import torch

from training.common import amp_enabled, to_device
from training.config import TrainConfig
from training.ddp import DistInfo, all_reduce_mean
from training.metrics import CSVLog, Throughput


def train_one_epoch(model: torch.nn.Module, loader, loss_fn: Callable[[dict], torch.Tensor], optimizer, scheduler,
                    scaler, cfg: TrainConfig, info: DistInfo, epoch: int, step_log: CSVLog,
                    first_step: int = 0, desc: str = "train", extra: dict | None = None) -> dict:
    """One pass over ``loader``; ``loss_fn(batch on device)`` returns the scalar loss.

    Returns {"loss": mean rank-averaged loss, "images_per_s": global throughput, "steps": n}.
    """
    model.train()
    use_amp = amp_enabled(cfg, info.device)
    it = loader
    if cfg.run.progress and info.is_main:
        from tqdm import tqdm

        it = tqdm(loader, desc=f"{desc} epoch {epoch}", unit="batch", leave=False, dynamic_ncols=True)
    meter = Throughput()
    total, count = 0.0, 0
    step = first_step
    start = time.perf_counter()
    for i, batch in enumerate(it):
        batch = to_device(batch, info.device)
        with torch.autocast(info.device.type, enabled=use_amp):
            loss = loss_fn(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step} (lower optim.lr?)")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.optim.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        meter.add(batch_len(batch) * info.world_size)
        value = all_reduce_mean(loss.detach().item(), info)
        total += value
        count += 1
        if step_log is not None and (i == 0 or (step + 1) % max(cfg.run.log_every, 1) == 0):
            step_log.write({"step": step + 1, "epoch": epoch, "loss": value, "lr": lr,
                            "images_per_s": meter.rate(), **(extra or {})})
        if it is not loader:
            it.set_postfix(loss=f"{value:.3g}", lr=f"{lr:.2g}", img_s=f"{meter.rate():.0f}")
        step += 1
    elapsed = time.perf_counter() - start
    return {"loss": total / max(count, 1), "images_per_s": meter.count / elapsed if elapsed > 0 else 0.0,
            "steps": count, "seconds": elapsed}


def batch_len(batch: dict) -> int:
    return int(batch["image"].shape[0])
