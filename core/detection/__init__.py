"""Person detectors: BlazePose (SSD anchors, tiling, weighted NMS) and OpenCV's pedestrian HOG.

Every detector is a callable ``detector(frame_rgb uint8 [H, W, 3]) -> Detections`` with a
``name``; ``make_detector(cfg, device)`` builds the one ``cfg.name`` asks for. A detection also
says where the SPPE should look: ``Detections.rois()`` turns it into square, rotated regions of
interest (``core.roi.Rois``) for the spatial transformer crop.
"""
from __future__ import annotations

from core.detection.detections import Detections
from core.errors import UserError

__all__ = ["DETECTORS", "Detections", "make_detector"]

DETECTORS = ("blazepose", "hog")


def make_detector(cfg, device="cpu", runtime=None):
    """The detector ``cfg.name`` names (``DetectorConfig``), its model on ``device``
    (``runtime``: the ``RuntimeConfig`` choosing backend and precision; defaults if None)."""
    if cfg.name == "blazepose":
        from core.detection.blazepose import BlazePoseDetector

        return BlazePoseDetector(cfg, device, runtime=runtime)
    if cfg.name == "hog":
        from core.detection.hog import HOGDetector

        return HOGDetector(cfg)
    raise UserError(f"unknown detector {cfg.name!r}; choose one of: {', '.join(DETECTORS)}")
