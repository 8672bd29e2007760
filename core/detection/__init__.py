"""Person detectors: BlazePose (SSD anchors, tiling, weighted NMS), OpenCV's pedestrian HOG,
NanoDet (a COCO body detector: finds people from behind) and NanoDet + BlazePose combined.

Every detector is a callable ``detector(frame_rgb uint8 [H, W, 3]) -> Detections`` with a
``name``; ``make_detector(cfg, device)`` builds the one ``cfg.name`` asks for. A detection also
says where the SPPE should look: ``Detections.rois()`` turns it into square, rotated regions of
interest (``core.roi.Rois``) for the spatial transformer crop.
"""
from __future__ import annotations

import typing

from core.config import DetectorName
from core.detection.detections import Detections
from core.errors import UserError

__all__ = ["DETECTORS", "Detections", "make_detector"]

DETECTORS = typing.get_args(DetectorName)


def make_detector(cfg, device="cpu", runtime=None):
    """The detector ``cfg.name`` names (``DetectorConfig``), its model on ``device``
    (``runtime``: the ``RuntimeConfig`` choosing backend and precision; defaults if None)."""
    if cfg.name == "blazepose":
        from core.detection.blazepose import BlazePoseDetector

        return BlazePoseDetector(cfg, device, runtime=runtime)
    if cfg.name == "hog":
        from core.detection.hog import HOGDetector

        return HOGDetector(cfg)
    if cfg.name in ("nanodet", "nanodet+blazepose"):
        from core.detection.nanodet import NanoDetDetector

        body = NanoDetDetector(cfg, device, runtime=runtime,
                               input_size=(int(cfg.nanodet_height), int(cfg.nanodet_width)),
                               score_threshold=float(cfg.nanodet_score))
        if cfg.name == "nanodet":
            return body
        from core.detection.blazepose import BlazePoseDetector
        from core.detection.combined import CombinedDetector

        return CombinedDetector(body, BlazePoseDetector(cfg, device, runtime=runtime),
                                int(cfg.max_persons))
    raise UserError(f"unknown detector {cfg.name!r}; choose one of: {', '.join(DETECTORS)}")
