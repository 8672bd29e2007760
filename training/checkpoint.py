"""Resumable training checkpoints that embed their config and model spec.

A checkpoint is a plain dict (tensors, numbers, strings, lists) so ``torch.load(weights_only=True)``
reads it: ``format``, ``kind`` (sppe | rmpe | posefix), ``model_spec`` (what the model is rebuilt
from: ``load_trained_sppe`` / ``load_posefix``), ``config`` (the whole training config), ``model`` /
``stn`` state dicts, optimiser, scheduler and AMP scaler state, and the run's ``TrainState``
(``training.engine``): ``epoch`` (last finished), ``stage`` / ``stage_epoch`` (staged loops),
``best_ap`` and ``metrics`` (``{"history": epoch rows}``).
Files are written to a temporary name and renamed, so an interrupted save never leaves a torn file.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from core.errors import UserError
from core.models.trained_sppe import CHECKPOINT_FORMAT, SPPEModelSpec, read_checkpoint

log = logging.getLogger("rmpe.train")


def save_checkpoint(path: str | Path, *, kind: str, spec: SPPEModelSpec, config: dict, model: torch.nn.Module,
                    epoch: int = 0, optimizer=None, scheduler=None, scaler=None, stn: torch.nn.Module | None = None,
                    best_ap: float = -1.0, metrics: dict | None = None, stage: int = 0,
                    extra: dict | None = None, state=None) -> Path:
    """Write a checkpoint atomically; ``state`` (a ``TrainState``) replaces epoch / stage / best_ap /
    metrics. ``spec`` is any model spec with ``to_dict()``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "model_spec": spec.to_dict(),
        "config": config,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "stn": None if stn is None else {k: v.detach().cpu() for k, v in stn.state_dict().items()},
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None or not scaler.is_enabled() else scaler.state_dict(),
        "epoch": int(epoch),
        "stage": int(stage),
        "best_ap": float(best_ap),
        "metrics": metrics or {},
        "torch_rng": torch.get_rng_state(),
    }
    if state is not None:
        ckpt.update(state.checkpoint_fields())
    if extra:
        ckpt.update(extra)
    from core.fileio import atomic_write

    with atomic_write(path) as tmp:
        torch.save(ckpt, tmp)
    return path



def save_epoch_checkpoints(paths: dict, out: Path, number: int, improved: bool, keep_all: bool,
                           **kwargs) -> None:
    """End-of-epoch writes shared by the loops: ``last`` always, ``best`` when AP improved, and a
    per-epoch copy ``epoch_<number>.pt`` when ``keep_all`` (run.keep_checkpoints)."""
    save_checkpoint(paths["last"], **kwargs)
    if improved:
        save_checkpoint(paths["best"], **kwargs)
    if keep_all:
        save_checkpoint(Path(out) / f"epoch_{number:03d}.pt", **kwargs)


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict:
    """Read a checkpoint for resuming or fine-tuning (UserError if missing, foreign or the wrong kind)."""
    ckpt = read_checkpoint(path)
    if kind is not None and ckpt.get("kind") != kind:
        raise UserError(f"{path} is a {ckpt.get('kind')} checkpoint; this command needs a {kind} checkpoint")
    return ckpt


def load_optim_state(ckpt: dict, optimizer, scheduler, scaler) -> None:
    """Restore the optimiser, LR-schedule position and AMP scaler saved in ``ckpt`` (when present)."""
    if ckpt.get("optimizer") is None:
        return
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(ckpt["scaler"])
