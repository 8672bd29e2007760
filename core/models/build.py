"""Build the SPPE a config names (the embedded BlazePose model or a trained checkpoint)."""
from __future__ import annotations

import logging

import typing
from typing import TYPE_CHECKING

from core.config import SPPEModel
from core.errors import UserError

if TYPE_CHECKING:
    from core.models.sppe import SPPE

SPPE_MODELS = typing.get_args(SPPEModel)


def make_sppe(cfg, device="cpu", runtime=None) -> "SPPE":
    """The SPPE ``cfg.model`` names (``SPPEConfig``) on ``device`` (``runtime``: the
    ``RuntimeConfig`` choosing the embedded model's backend and precision; defaults if None).

    ``blazepose`` (= ``blazepose-full``), ``blazepose-lite``/``-heavy`` are the BlazePose landmark
    ladder; ``movenet-lightning``/``-thunder`` MoveNet (COCO-17, heatmaps decoded by the codec);
    ``hourglass`` and ``resnet`` load a trained checkpoint (``cfg.weights``) through
    ``core.models.trained_sppe`` (imported only then).
    """
    if cfg.model == "blazepose" or cfg.model.startswith("blazepose-"):
        from core.models.blazepose_sppe import BlazePoseSPPE

        if cfg.weights:
            logging.getLogger("rmpe.sppe").warning(
                "sppe.weights %s is not used: sppe.model is blazepose (the checkpoint's own architecture runs "
                "when sppe.model names it, or with --weights alone)", cfg.weights)

        variant = cfg.model.partition("-")[2] or "full"
        return BlazePoseSPPE(device, runtime=runtime, variant=variant)
    if cfg.model.startswith("movenet-"):
        from core.models.movenet import MoveNetSPPE

        return MoveNetSPPE(cfg.model, device, runtime)
    if cfg.model in ("hourglass", "resnet"):
        if not cfg.weights:
            raise UserError(f"sppe.model {cfg.model!r} needs a checkpoint: set sppe.weights (--weights PATH)")
        from core.models.trained_sppe import load_trained_sppe

        return load_trained_sppe(cfg.weights, device, arch=cfg.model)  # a contradiction is a UserError
    raise UserError(f"unknown SPPE model {cfg.model!r}; choose one of: {', '.join(SPPE_MODELS)}")
