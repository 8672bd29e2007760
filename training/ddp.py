"""Distributed data parallel through ``torchrun``: NCCL on CUDA, gloo on CPU.

Scaling rule (keeps runs comparable across world sizes): the *global* batch ``optim.batch_size``
and the learning rate ``optim.lr`` are fixed by the config; each of the W ranks takes
batch_size / W samples per step (the batch must divide evenly). The ranks' shards of one global
step are exactly the samples a single process would take for that step (``DistributedSampler``
interleaves one shared permutation), every sample's augmentation is seeded by (seed, epoch,
index), gradients are averaged over ranks, and batch norm is synchronised, so W processes follow
the single-process trajectory up to floating-point summation order.

torch's ``SyncBatchNorm`` only runs on accelerators; ``CPUSyncBatchNorm`` does the same on gloo
with one autograd-aware all-reduce of (Σx, Σx², n) per layer.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from core.errors import UserError

log = logging.getLogger("rmpe.train")


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """``run.device`` for this rank: ``core.models.zoo.resolve_device`` (the one device rule)
    with a bare ``cuda`` meaning this process's GPU, ``cuda:<local_rank>``."""
    from core.models.zoo import resolve_device as zoo_resolve_device  # model zoo: only when needed

    try:
        return zoo_resolve_device(requested, local_rank)
    except UserError as exc:
        raise UserError(f"run.device: {exc}") from None


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1), else a single-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistInfo(device=dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    info = DistInfo(rank, world, local_rank, dev, backend)
    if info.is_main:
        log.info("DDP: %d processes, backend %s, device %s", world, backend, dev.type)
    return info


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def per_rank_batch(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise UserError(f"optim.batch_size {global_batch} does not divide over {world_size} processes; "
                        f"use a multiple of {world_size}")
    return global_batch // world_size


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of the ranks' gradients (each rank's output
    depends on every rank's input)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span all ranks (any backend, gloo included)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        # Σx and Σx² in float64: E[x²] − E[x]² cancels badly in float32 when |mean| ≫ std.
        xd = xf.double()
        count = xd.new_tensor([xd.numel() / c])
        packed = torch.cat([xd.sum(dim=(0, 2, 3)), (xd * xd).sum(dim=(0, 2, 3)), count])
        packed = _AllReduceSum.apply(packed)
        n = packed[-1]
        mean64 = packed[:c] / n
        var = (packed[c:2 * c] / n - mean64 * mean64).clamp_min(0.0).float()
        mean = mean64.float()
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp_min(1)) * m)
                self.num_batches_tracked.add_(1)
        y = (xf - mean.view(1, c, 1, 1)) * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """torch SyncBatchNorm on accelerators, CPUSyncBatchNorm on CPU (state dict keys unchanged)."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CPUSyncBatchNorm):
        out = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child, device))
    return out


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """DDP-wrap a trainable model (sync BN first); unchanged in a single process."""
    if not info.distributed:
        return model
    model = convert_sync_batchnorm(model, info.device)
    ids = [info.device.index] if info.device.type == "cuda" else None
    # Buffers need no broadcast: synchronised batch norm keeps the running statistics identical.
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def gather_lists(items: list, info: DistInfo) -> list:
    """Concatenate every rank's list on every rank (rank order)."""
    if not info.distributed:
        return list(items)
    parts = [None] * info.world_size
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def broadcast_object(obj, info: DistInfo):
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
