"""``train rmpe``: symmetric STN + SPPE with the parallel SPPE branch (RMPE §3.1), in stages.

Each sample is a context crop around a proposal box (a PGPG proposal, or the GT box) plus the
proposal's θ inside it. The learned STN (``core.models.sstn.SymmetricSTN``: localisation net →
residual affine on top of the box θ, identity at start) crops the SPPE input from the context.

Losses:
* main: the SPPE's heatmaps (every stack) are mapped back to the proposal's frame by the SDTN
  (differentiable resampling with θ_stn⁻¹ ∘ θ_box) and compared with the proposal-frame targets;
* parallel: a frozen SPPE looks at the same STN crop and is compared with *centre-located*
  targets — the pose as it appears in the ideal crop of the GT box. Its weights never change;
  its error flows back through the crop into the STN, pushing it to centre the person.

Stages (``rmpe.stages``; the default schedule when empty). The paper fixes the order of the parts
but our reference facts hold no schedule, so this is our staging: the SPPE is trained first on
ground-truth boxes (as AlphaPose trains without generated proposals before adding them), the
SSTN then learns with the SPPE frozen, and everything is fine-tuned last:
1. ``sppe``  — SPPE alone on GT boxes (dropped when ``rmpe.init_sppe`` supplies a trained SPPE);
2. ``stn``   — SPPE frozen; the STN learns from both losses on proposals (``optim.epochs`` // 2);
3. ``joint`` — STN and SPPE together at lr / 10 on proposals (``optim.epochs`` // 2).
With ``use_stn: false`` stages 2-3 become ``proposals``: the SPPE fine-tuned on proposals at lr / 10.
The parallel branch is a frozen copy of the SPPE as it stands when the first STN stage starts
(or ``rmpe.parallel_sppe``, e.g. a smaller network as in the paper). Ablations: ``use_stn: false``
(plain box crops, hence no parallel branch) and ``use_parallel: false``.

Evaluation maps predictions back through the STN crop's θ and the context θ to the image (SDTN)
and scores them with pycocotools; ``eval.proposals: pgpg`` evaluates on seeded proposals.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from core.geometry import affine_compose
from core.models.sstn import invert_affine
from core.models.trained_sppe import (SPPEModelSpec, build_sppe_model, build_stn, detransform_heatmaps,
                                      normalise_crops, to_heatmaps)
from core.skeleton import get_skeleton
from training.checkpoint import load_checkpoint, load_optim_state
from training.common import (amp_enabled, build_dataset, channels_last, describe_device, eval_loader,
                             geometry_from, heatmap_loss, make_optimizer, make_scaler, make_scheduler, parts_of,
                             train_loader)
from training.config import RMPEStage, TrainConfig, rmpe_stage
from training.datasets.coco_keypoints import AugmentConfig
from training.ddp import DistInfo, unwrap, wrap_model
from training.engine import AP_FIELDS, Phase, RunLogs, TrainState, ap_fields, evaluate_initial, fit, run_distributed
from training.evaluate import evaluate_parts, flip_averaged
from training.pgpg import load_proposals

log = logging.getLogger("rmpe.train")

EPOCH_FIELDS = ["epoch", "stage", "loss", "main_loss", "parallel_loss", "images_per_s"] + AP_FIELDS


class RMPENet(nn.Module):
    """STN + SPPE: (context [N, 3, Hc, Wc] RGB in [0, 1], θ_box [N, 2, 3]) → (crops, θ_stn, raw stacks)."""

    def __init__(self, stn: nn.Module, sppe: nn.Module, spec: SPPEModelSpec):
        super().__init__()
        self.stn = stn
        self.sppe = sppe
        self.spec = spec

    def forward(self, context: torch.Tensor, theta_box: torch.Tensor):
        n = context.shape[0]
        crops, theta = self.stn(context, theta_box.to(context.dtype), torch.arange(n, device=context.device))
        raw = self.sppe(channels_last(normalise_crops(crops, self.spec)))
        return crops, theta, raw


compose_torch = _compose_np = affine_compose  # a ∘ b for affine [..., 2, 3] maps (core/geometry.py)


def main_loss(raw: list[torch.Tensor], box_to_stn: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
              spec: SPPEModelSpec) -> torch.Tensor:
    """SDTN loss: every stack's output mapped back to the proposal frame vs proposal-frame targets.

    mse: the heatmaps themselves are resampled. softmax: the spatial probabilities are resampled
    (outside the STN crop = 0) and renormalised, so an STN zoom changes no constant in the loss.
    """
    size = tuple(spec.input_size)
    total = target.new_zeros((), dtype=torch.float32)
    for out in raw:
        if spec.loss == "softmax":
            n, k, h, w = out.shape
            p = torch.softmax(out.float().reshape(n, k, -1), -1).reshape(n, k, h, w)
            p = detransform_heatmaps(p, box_to_stn.float(), size).reshape(n, k, -1)
            p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
            t = target.reshape(n, k, -1).float()
            t = t / t.sum(-1, keepdim=True).clamp_min(1e-12)
            total = total + (-(t * torch.log(p.clamp_min(1e-12))).sum(-1) * weight).mean()
        else:
            back = detransform_heatmaps(out.float(), box_to_stn.float(), size)
            total = total + ((back - target) ** 2 * weight[:, :, None, None]).mean()
    return total


def rmpe_losses(net: nn.Module, batch: dict, spec: SPPEModelSpec, parallel: nn.Module | None = None,
                parallel_spec: SPPEModelSpec | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(main SDTN loss, parallel centre-located loss or None) of an ``RMPENet`` on a batch."""
    crops, theta_stn, raw = net(batch["image"], batch["theta_box"])
    box_to_stn = compose_torch(invert_affine(theta_stn.float()), batch["theta_box"].float())
    main = main_loss(raw, box_to_stn, batch["target"], batch["target_weight"], spec)
    if parallel is None:
        return main, None
    par_raw = parallel(channels_last(normalise_crops(crops, parallel_spec or spec)))[-1:]
    return main, heatmap_loss(par_raw, batch["centred_target"], batch["centred_weight"], spec.loss)


def default_stages(cfg: TrainConfig) -> list[RMPEStage]:
    e = max(cfg.optim.epochs, 1)
    stages = []
    if not cfg.rmpe.init_sppe:
        stages.append(RMPEStage("sppe", e, cfg.optim.lr, ["sppe"], 0.0))
    if cfg.rmpe.use_stn:
        stages.append(RMPEStage("stn", max(e // 2, 1), cfg.optim.lr, ["stn"], 1.0))
        stages.append(RMPEStage("joint", max(e // 2, 1), cfg.optim.lr / 10, ["stn", "sppe"], 1.0))
    else:
        stages.append(RMPEStage("proposals", e, cfg.optim.lr / 10, ["sppe"], 1.0))
    return stages


def run_rmpe(cfg: TrainConfig, resume: str | None = None) -> dict:
    """Train an RMPE model through its stages; returns {"history", "best_ap", "last", "best"}."""
    return run_distributed(cfg, _run, resume)


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _load_sppe_weights(path: str, device) -> tuple[SPPEModelSpec, nn.Module]:
    ckpt = load_checkpoint(path)
    spec = SPPEModelSpec.from_dict(ckpt["model_spec"])
    model = build_sppe_model(spec)
    model.load_state_dict(ckpt["model"])
    return spec, model.to(device, memory_format=torch.channels_last)


@dataclass
class _Networks:
    """The SPPE, its STN, their ``RMPENet`` and the frozen parallel SPPE (made when first needed)."""

    spec: SPPEModelSpec
    sppe: nn.Module
    stn: nn.Module
    net: RMPENet
    parallel: nn.Module | None = None
    parallel_spec: SPPEModelSpec | None = None

    @classmethod
    def build(cls, cfg: TrainConfig, info: DistInfo, ckpt: dict | None) -> "_Networks":
        r = cfg.rmpe
        if ckpt is not None:
            spec = SPPEModelSpec.from_dict(ckpt["model_spec"])
            sppe = build_sppe_model(spec)
            sppe.load_state_dict(ckpt["model"])
            sppe = sppe.to(info.device, memory_format=torch.channels_last)
        elif r.init_sppe:
            spec, sppe = _load_sppe_weights(r.init_sppe, info.device)
            log.info("SPPE initialised from %s (%s)", r.init_sppe, spec.arch)
        else:
            spec = copy.deepcopy(cfg.model)
            sppe = build_sppe_model(spec).to(info.device, memory_format=torch.channels_last)
        spec.stn = {"loc_size": list(r.loc_size), "backbone": r.loc_backbone} if r.use_stn else None
        cfg.model = spec  # the datasets and the embedded config follow the SPPE actually trained
        stn = build_stn(spec, learned=r.use_stn).to(info.device)
        if ckpt is not None and ckpt.get("stn") is not None:
            stn.load_state_dict(ckpt["stn"])
        nets = cls(spec, sppe, stn, RMPENet(stn, sppe, spec))
        if ckpt is not None and ckpt.get("parallel") is not None:
            nets.parallel_spec = SPPEModelSpec.from_dict(ckpt["parallel_spec"])
            nets.parallel = build_sppe_model(nets.parallel_spec)
            nets.parallel.load_state_dict(ckpt["parallel"])
            nets.parallel = _frozen(nets.parallel.to(info.device, memory_format=torch.channels_last))
        return nets

    def freeze_parallel(self, r, device) -> None:
        if r.parallel_sppe:
            self.parallel_spec, self.parallel = _load_sppe_weights(r.parallel_sppe, device)
            p, s = self.parallel_spec, self.spec
            if tuple(p.input_size) != tuple(s.input_size) or p.layout != s.layout or p.loss != s.loss:
                raise UserError("rmpe.parallel_sppe must share input_size, layout and loss with the SPPE")
        else:
            self.parallel_spec, self.parallel = self.spec, copy.deepcopy(self.sppe)
        self.parallel = _frozen(self.parallel)
        log.info("parallel SPPE frozen (%s)", r.parallel_sppe or "copy of the current SPPE")

    def evaluator(self, val_parts: list, cfg: TrainConfig, info: DistInfo):
        """() → AP fields of the STN + SPPE on the validation parts (predictions mapped through the
        STN crop's θ and the context θ back to the image)."""
        net, spec = self.net, self.spec
        flip_index = get_skeleton(spec.layout).flip_index

        def predict(batch):
            context = batch["image"].to(info.device)
            theta_box = batch["theta_box"].to(info.device, torch.float32)
            with torch.autocast(info.device.type, enabled=amp_enabled(cfg, info.device)):
                crops, theta_stn = net.stn(context, theta_box, torch.arange(context.shape[0], device=info.device))
                heat = flip_averaged(lambda x: to_heatmaps(net.sppe(channels_last(normalise_crops(x, spec)))[-1]
                                                           .float(), spec), crops, flip_index, cfg.eval.flip_test)
            total = np.asarray([_compose_np(c, s) for c, s in zip(batch["theta"].numpy(),
                                                                  theta_stn.detach().double().cpu().numpy())])
            return heat.float(), total

        def evaluate() -> dict:
            net.eval()
            with torch.no_grad():
                return ap_fields(evaluate_parts(val_parts, predict, cfg, info, spec.input_size, spec.heatmap_size))

        return evaluate


def _stage_phase(index: int, stage: RMPEStage, nets: _Networks, cfg: TrainConfig, info: DistInfo, geometry,
                 proposals, ckpt: dict | None) -> Phase:
    """Freeze / unfreeze the parts for ``stage`` and build its data, optimiser and losses."""
    r = cfg.rmpe
    trains_stn = "stn" in stage.train
    if trains_stn and r.use_stn and r.use_parallel and nets.parallel is None:
        nets.freeze_parallel(r, info.device)
    for p in nets.stn.parameters():
        p.requires_grad_(trains_stn and r.use_stn)
    for p in nets.sppe.parameters():
        p.requires_grad_("sppe" in stage.train)
    augment = copy.deepcopy(cfg.augment)
    augment.proposal_prob = stage.proposal_prob if proposals is not None else 0.0
    train_set = build_dataset(cfg, "train", info, geometry, augment, proposals)
    train_model = wrap_model(nets.net, info)
    loader, sampler = train_loader(train_set, cfg, info)
    optimizer = make_optimizer(train_model.parameters(), cfg, lr=stage.lr)
    scheduler = make_scheduler(optimizer, cfg, len(loader), epochs=stage.epochs)
    scaler = make_scaler(cfg, info.device)
    if ckpt is not None:
        load_optim_state(ckpt, optimizer, scheduler, scaler)
    parallel = nets.parallel if trains_stn else None
    parts = {"main": 0.0, "parallel": 0.0, "n": 0}

    def loss_fn(batch):
        model = unwrap(train_model)
        # frozen parts keep their batch-norm statistics
        model.sppe.train("sppe" in stage.train)
        model.stn.train(trains_stn)
        main, par = rmpe_losses(train_model, batch, nets.spec, parallel, nets.parallel_spec)
        parts["main"] += float(main.detach())
        parts["n"] += 1
        if par is None:
            return main
        parts["parallel"] += float(par.detach())
        return main + r.parallel_weight * par

    def row_extra() -> dict:
        n = max(parts["n"], 1)
        return {"main_loss": parts["main"] / n,
                "parallel_loss": parts["parallel"] / n if parallel is not None else float("nan")}

    def checkpoint(finished: bool) -> dict:
        keep = not finished  # a finished stage's optimiser is not resumed (the next stage starts a fresh one)
        par = nets.parallel
        return dict(kind="rmpe", spec=nets.spec, config=cfg.to_dict(), model=nets.sppe,
                    stn=nets.stn if r.use_stn else None, optimizer=optimizer if keep else None,
                    scheduler=scheduler if keep else None, scaler=scaler if keep else None,
                    extra={"parallel": None if par is None else {k: v.detach().cpu() for k, v in
                                                                 par.state_dict().items()},
                           "parallel_spec": None if par is None else nets.parallel_spec.to_dict()})

    return Phase(stage.name, stage.epochs, train_model, loader, sampler, train_set, loss_fn, optimizer,
                 scheduler, scaler, checkpoint, index=index, row_extra=row_extra,
                 before_epoch=lambda: parts.update(main=0.0, parallel=0.0, n=0), desc=f"rmpe/{stage.name}",
                 seed_offset=1)


def _run(cfg: TrainConfig, info: DistInfo, resume: str | None) -> dict:
    r = cfg.rmpe
    ckpt = load_checkpoint(resume, "rmpe") if resume else None
    nets = _Networks.build(cfg, info, ckpt)
    stages = [rmpe_stage(s) for s in r.stages] if r.stages else default_stages(cfg)
    log.info("train rmpe on %s, %d process(es): %s; STN %s, parallel SPPE %s; stages: %s", describe_device(info),
             info.world_size, nets.spec.arch, "on" if r.use_stn else "off",
             "on" if r.use_stn and r.use_parallel else "off",
             ", ".join(f"{s.name} ({s.epochs} ep, lr {s.lr:g}, trains {'+'.join(s.train)})" for s in stages))
    if not r.use_stn and any("stn" in s.train for s in stages):
        raise UserError("rmpe.use_stn is false but a stage trains the stn")
    logs = RunLogs.open(cfg, info, EPOCH_FIELDS, ["stage"])
    geometry = geometry_from(cfg, context=r.context)
    proposals = load_proposals(cfg.pgpg.model, cfg.pgpg.jitter)
    val_augment = AugmentConfig.none()
    if cfg.eval.proposals == "pgpg":
        val_augment.proposal_prob = 1.0
    val_set = build_dataset(cfg, "val", info, geometry, val_augment, proposals)
    evaluate = nets.evaluator([(p, eval_loader(p, cfg, info)) for p in parts_of(val_set)], cfg, info)
    state = TrainState.from_checkpoint(ckpt)
    resumed_stage = state.stage
    if ckpt is not None:
        log.info("resumed from %s: stage %d (%s), epoch %d of it", resume, state.stage,
                 stages[min(state.stage, len(stages) - 1)].name, state.stage_epoch)
    elif cfg.eval.before:
        evaluate_initial(state, logs, evaluate, {"stage": "initial", "main_loss": float("nan"),
                                                 "parallel_loss": float("nan")})
    for si in range(state.stage, len(stages)):
        phase = _stage_phase(si, stages[si], nets, cfg, info, geometry, proposals,
                             ckpt if si == resumed_stage else None)
        fit(phase, state, cfg, info, logs, evaluate, start=state.stage_epoch, final=si == len(stages) - 1)
    return logs.result(state)
