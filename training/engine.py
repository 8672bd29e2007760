"""The training skeleton every loop (SPPE, RMPE stages, PoseFix) runs.

``fit`` runs one phase (a stretch of epochs with one optimiser): per epoch ``train_one_epoch``
(forward/backward with AMP on CUDA, per-step LR schedule, gradient clipping, rank-averaged loss
logging, tqdm on rank 0), evaluation when due, a row in ``metrics.csv``, keep-best and the
``last`` / ``best`` (/ ``epoch_NNN``) checkpoints. ``TrainState`` is what a resumed run needs to
continue (epoch, stage, best AP, history); it travels inside every checkpoint.
Epochs are numbered from 1 in logs and checkpoints; data order and augmentation are seeded by the
0-based index of the epoch being run (RMPE: the 1-based one, as before the shared skeleton), so a
resumed run repeats the uninterrupted one step for step.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from training.checkpoint import load_optim_state, save_epoch_checkpoints
from training.common import (amp_enabled, make_optimizer, make_scaler, make_scheduler, seed_everything,
                             set_epoch, set_threads, to_device, train_loader)
from training.config import TrainConfig
from training.ddp import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, unwrap, wrap_model
from training.metrics import CSVLog, Throughput

log = logging.getLogger("rmpe.train")

AP_FIELDS = ["AP", "AP50", "AP75", "APm", "APl", "AR"]
STEP_FIELDS = ["step", "epoch", "loss", "lr", "images_per_s"]


def ap_fields(metrics: dict, prefix: str = "") -> dict:
    """The COCO summary numbers of an evaluation as epoch-row fields (``prefix`` + name)."""
    return {prefix + k: metrics[k] for k in AP_FIELDS if k in metrics}


def run_distributed(cfg: TrainConfig, body: Callable[..., dict], *args) -> dict:
    """Run ``body(cfg, info, *args)`` the way every ``train`` command runs: torch threads set from
    ``run.threads`` (restored after), the process group joined (torchrun; else one process) and
    left even when ``body`` raises, ``run.seed`` applied first. Returns ``body``'s result."""
    threads = set_threads(cfg.run.threads)
    info = init_distributed(cfg.run.device)
    try:
        seed_everything(cfg.run.seed)
        return body(cfg, info, *args)
    finally:
        cleanup(info)
        torch.set_num_threads(threads)


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint and read back by ``--resume``."""

    epoch: int = 0  # epochs finished, over the whole run
    stage: int = 0  # index of the stage in progress (staged loops; == number of stages when done)
    stage_epoch: int = 0  # epochs finished inside that stage
    best_ap: float = -1.0
    history: list = field(default_factory=list)  # the epoch rows written so far

    @classmethod
    def from_checkpoint(cls, ckpt: dict | None) -> "TrainState":
        if ckpt is None:
            return cls()
        return cls(epoch=int(ckpt.get("epoch", 0)), stage=int(ckpt.get("stage", 0)),
                   stage_epoch=int(ckpt.get("stage_epoch", 0)), best_ap=float(ckpt.get("best_ap", -1.0)),
                   history=list((ckpt.get("metrics") or {}).get("history", [])))

    def checkpoint_fields(self) -> dict:
        return {"epoch": self.epoch, "stage": self.stage, "stage_epoch": self.stage_epoch,
                "best_ap": float(self.best_ap), "metrics": {"history": list(self.history)}}


@dataclass
class RunLogs:
    """The run folder: ``steps.csv``, ``metrics.csv`` and the checkpoint paths (rank 0 writes)."""

    out: Path
    steps: CSVLog
    epochs: CSVLog
    keep_all: bool = False

    @classmethod
    def open(cls, cfg: TrainConfig, info: DistInfo, epoch_fields: list[str], step_extra: list[str] = ()) -> "RunLogs":
        out = Path(cfg.run.out)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
        return cls(out, CSVLog(out / "steps.csv", STEP_FIELDS + list(step_extra), enabled=info.is_main),
                   CSVLog(out / "metrics.csv", list(epoch_fields), enabled=info.is_main), cfg.run.keep_checkpoints)

    @property
    def paths(self) -> dict:
        return {"last": self.out / "last.pt", "best": self.out / "best.pt"}

    def result(self, state: TrainState) -> dict:
        return {"history": state.history, "best_ap": state.best_ap, "last": str(self.paths["last"]),
                "best": str(self.paths["best"])}


@dataclass
class Phase:
    """One stretch of epochs with one optimiser: a whole single-stage run, or one stage.

    ``checkpoint(finished)`` returns the ``save_checkpoint`` keywords of the loop (kind, spec,
    config, model, optimiser state ...; ``finished``: this epoch ends the phase). ``row_extra()``
    adds fields to each epoch row (read after the epoch, e.g. loss parts); ``index`` is the stage
    number of a staged loop (None: unstaged)."""

    name: str
    epochs: int
    model: torch.nn.Module
    loader: object
    sampler: object
    dataset: object
    loss_fn: Callable[[dict], torch.Tensor]
    optimizer: object
    scheduler: object
    scaler: object
    checkpoint: Callable[[bool], dict]
    index: int | None = None
    row_extra: Callable[[], dict] | None = None
    before_epoch: Callable[[], None] | None = None
    desc: str = ""  # progress-bar label (default: name)
    seed_offset: int = 0  # data order / augmentation seed = 0-based epoch + this (RMPE keeps its 1-based seeds)


def evaluate_initial(state: TrainState, logs: RunLogs, evaluate: Callable[[], dict], row: dict) -> None:
    """Score the starting model as epoch 0 (``eval.before``)."""
    row = {"epoch": 0, "loss": float("nan"), "images_per_s": 0.0, **row, **evaluate()}
    state.history.append(row)
    logs.epochs.write(row)
    log.info("epoch 0 (%s): %s", row.get("stage", "untrained"), _ap_text(row))


def fit(phase: Phase, state: TrainState, cfg: TrainConfig, info: DistInfo, logs: RunLogs,
        evaluate: Callable[[], dict], start: int = 0, final: bool = True) -> TrainState:
    """Epochs ``start`` .. ``phase.epochs`` - 1 of ``phase``; ``evaluate()`` returns epoch-row fields
    (its ``AP`` decides the best checkpoint). ``final``: this phase ends the run (its last epoch
    always evaluates). Updates and returns ``state``."""
    n = len(phase.loader)
    for epoch in range(start, phase.epochs):
        if phase.before_epoch is not None:
            phase.before_epoch()
        set_epoch(phase.dataset, state.epoch + phase.seed_offset)
        phase.sampler.set_epoch(state.epoch + phase.seed_offset)
        extra = {} if phase.index is None else {"stage": phase.name}
        stats = train_one_epoch(phase.model, phase.loader, phase.loss_fn, phase.optimizer, phase.scheduler,
                                phase.scaler, cfg, info, state.epoch + 1, logs.steps, first_step=state.epoch * n,
                                desc=phase.desc or phase.name, extra=extra)
        state.epoch += 1
        finished = epoch + 1 == phase.epochs
        row = {"epoch": state.epoch, **extra, "loss": stats["loss"], "images_per_s": stats["images_per_s"],
               **(phase.row_extra() if phase.row_extra else {})}
        if (final and finished) or state.epoch % max(cfg.eval.every, 1) == 0:
            row.update(evaluate())
        state.history.append(row)
        logs.epochs.write(row)
        improved = "AP" in row and row["AP"] > state.best_ap
        if improved:
            state.best_ap = row["AP"]
        if phase.index is None:
            state.stage_epoch = epoch + 1
        else:
            state.stage, state.stage_epoch = (phase.index + 1, 0) if finished else (phase.index, epoch + 1)
        log.info("epoch %d%s: loss %.5f, %.1f img/s%s", state.epoch, f" ({phase.name})" if extra else "",
                 stats["loss"], stats["images_per_s"], ", " + _ap_text(row) if "AP" in row else "")
        if info.is_main:
            save_epoch_checkpoints(logs.paths, logs.out, state.epoch, improved, logs.keep_all,
                                   state=state, **phase.checkpoint(finished))
        barrier(info)
    return state


def fit_single_phase(kind: str, spec, model: torch.nn.Module, train_set, cfg: TrainConfig, info: DistInfo,
                     logs: RunLogs, ckpt: dict | None, resume: str | None, val_count: int,
                     loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
                     evaluate: Callable[[torch.nn.Module], dict]) -> dict:
    """The whole of a one-phase run (SPPE, PoseFix) once its model and data exist: ``model``
    (weights already loaded) wrapped for DDP, its loader, optimiser, schedule and scaler (their
    state from ``ckpt`` when resuming), ``eval.before`` as epoch 0, then ``cfg.optim.epochs``
    epochs of ``fit``; checkpoints of ``kind`` carry ``spec``. ``loss_fn(train model, batch)``
    returns the loss; ``evaluate(unwrapped model)`` the epoch-row AP fields. Returns
    ``logs.result``."""
    train_model = wrap_model(model, info)
    loader, sampler = train_loader(train_set, cfg, info)
    optimizer = make_optimizer(train_model.parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg, len(loader))
    scaler = make_scaler(cfg, info.device)
    state = TrainState.from_checkpoint(ckpt)
    if ckpt is not None:
        load_optim_state(ckpt, optimizer, scheduler, scaler)
        log.info("resumed from %s at epoch %d (best AP %.4f)", resume, state.epoch, state.best_ap)
    log.info("%d training people (%d steps/epoch), %d validation people", len(train_set), len(loader), val_count)

    def evaluate_now() -> dict:
        return evaluate(unwrap(train_model))

    def checkpoint(finished: bool) -> dict:
        return dict(kind=kind, spec=spec, config=cfg.to_dict(), model=unwrap(train_model), optimizer=optimizer,
                    scheduler=scheduler, scaler=scaler)

    if cfg.eval.before and state.epoch == 0:
        evaluate_initial(state, logs, evaluate_now, {})
    phase = Phase(kind, cfg.optim.epochs, train_model, loader, sampler, train_set,
                  lambda batch: loss_fn(train_model, batch), optimizer, scheduler, scaler, checkpoint)
    fit(phase, state, cfg, info, logs, evaluate_now, start=state.epoch)
    return logs.result(state)


def _ap_text(row: dict) -> str:
    parts = [f"{k} {row[k]:.4f}" for k in row if (k in ("AP", "AP50", "input_AP", "AP_gain") or k.endswith("_loss"))
             and isinstance(row[k], float) and not math.isnan(row[k])]
    return ", ".join(parts)


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
