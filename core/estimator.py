"""PoseEstimator: detect people (or follow last frame's ROIs) → SSTN crops → batched SPPE →
keypoint decode → SDTN back to the image.

ROI tracking (BlazePose's way, extended to many people). The detector runs on the first frame,
every ``detector.interval`` frames, on any frame after a tracked person was lost (pose presence
below ``sppe.min_pose_score``) and whenever nobody is tracked. On the frames in between every
person's crop comes from their own previous-frame keypoints: the landmark model's auxiliary
mid-hip and size/rotation points (33, 34) give the next square ROI exactly as the detector's
alignment points do (side 2·r·1.25, rotated upright); SPPEs without those points use the hip
centre, the farthest keypoint and the hip→shoulder direction. On a detection frame the tracked
ROIs are kept and only detections that match no tracked person are added: detections catch
people who enter, tracking keeps the finer landmark-derived crop. ``interval`` 1 is plain
top-down: ROIs come from the detector on every frame and nothing is carried over.

All crops of a frame go through the SPPE in one batch. Two ROIs that converge on one person are
merged (OKS ≥ ``DUPLICATE_OKS``) so tracking never doubles its work; pose NMS proper is
``postprocess``.

Scores. Keypoint score = the SPPE's keypoint confidence (BlazePose: sigmoid of its visibility
logit; heatmap SPPEs: the heatmap maximum). Person score = pose presence × mean keypoint score
over the output layout's keypoints (presence 1 for SPPEs without a presence output).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

from core.detection import ROI_SCALE, Detections, alignment_rois, make_detector
from core.errors import UserError
from core.heatmaps import decode_heatmaps, heatmap_to_crop
from core.models.sppe import SPPEOutput, make_sppe
from core.models.sstn import crop, crop_to_image, roi_to_affine
from core.oks import compute_oks
from core.poses import Poses
from core.skeleton import COCO17, get_skeleton

log = logging.getLogger("rmpe.estimator")

DECODE_METHODS = ("regression", "dark", "quarter", "argmax")
DUPLICATE_OKS = 0.7  # two tracked poses this similar are one person
MIN_ROI_SIDE = 8.0  # px; a smaller ROI cannot hold a person the SPPE could read
BOX_MARGIN = 0.1  # person box = keypoint extent grown by this fraction of its size on each side


def resolve_device(requested: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA GPU is available (torch.cuda.is_available() is False)")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise UserError(f"unknown device {requested!r}; choose auto, cpu or cuda")
    return torch.device(requested)


class PoseEstimator:
    """Frame in, poses out (image pixels, ``config.sppe.keypoint_layout``); stateful between frames."""

    def __init__(self, config, device: str = "auto", detector=None, sppe=None):
        self.config = config
        if config.sppe.decode not in DECODE_METHODS:
            raise UserError(f"unknown sppe.decode {config.sppe.decode!r}; choose one of: {', '.join(DECODE_METHODS)}")
        self.device = resolve_device(config.runtime.device if device == "auto" else device)
        self.detector = detector if detector is not None else make_detector(config.detector, self.device)
        self.sppe = sppe if sppe is not None else make_sppe(config.sppe, self.device)
        self.output_layout = config.sppe.keypoint_layout
        get_skeleton(self.output_layout)  # unknown layout → KeyError now, not mid-stream
        model = getattr(self.sppe, "model", None)
        self.backend = str(getattr(model, "backend", "eager"))
        log.info("pose estimator on %s (backend %s, %d torch threads): detector %s every %d frame(s), SPPE %s, "
                 "decode %s", self.device, self.backend, torch.get_num_threads(), getattr(self.detector, "name", "?"),
                 max(1, int(config.detector.interval)), config.sppe.model, config.sppe.decode)
        self._sppe_layout = get_skeleton(self.sppe.layout)
        self.reset()

    # ------------------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget tracked ROIs (seek, new source): the next frame runs the detector."""
        self._tracks = _empty_rois()
        self._since_detect = 0
        self._force_detect = True

    @property
    def tracked_rois(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centres [T, 2], sides [T], rotations [T]) the next frame will crop without detecting."""
        return tuple(a.copy() for a in self._tracks)

    # ------------------------------------------------------------------------------ inference

    def infer(self, frame_rgb: np.ndarray, timings: dict | None = None) -> Poses:
        """Poses of one RGB uint8 frame [H, W, 3]; ``timings`` (if given) receives per-stage ms."""
        frame_rgb = np.asarray(frame_rgb)
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
            raise ValueError(f"frame must be RGB uint8 [H, W, 3], got {frame_rgb.dtype} {frame_rgb.shape}")
        clock = _Clock(self.device, timings)
        interval = max(1, int(self.config.detector.interval))

        detect = interval == 1 or self._force_detect or len(self._tracks[0]) == 0 or self._since_detect >= interval
        if detect:
            detections = self.detector(frame_rgb)
            rois = self._merge_detections(detections, self._tracks if interval > 1 else _empty_rois())
            self._since_detect = 1
        else:
            rois = self._tracks
            self._since_detect += 1
        self._force_detect = False
        clock.lap("detect")

        centres, sides, rotations = rois
        n = len(sides)
        if n == 0:
            self._tracks = _empty_rois()
            for stage in ("crop", "sppe", "decode"):
                clock.lap(stage)
            return Poses.empty(self.output_layout)

        h, w = self.sppe.input_size
        theta = roi_to_affine(centres.astype(np.float64), sides.astype(np.float64), rotations.astype(np.float64), (h, w))
        crops = crop(self._image_tensor(frame_rgb), torch.from_numpy(theta).float(), (h, w))
        crops.mul_(1.0 / 255.0)  # sampling is linear: scale the few crop pixels, not the frame
        clock.lap("crop")

        out = self.sppe(crops)
        clock.lap("sppe")

        poses, presence, aux = self._decode(out, theta)
        poses = self._finish(poses, presence, aux)
        clock.lap("decode")
        return poses

    def postprocess(self, poses: Poses) -> Poses:
        """Parametric pose NMS per ``config.pose_nms`` (a no-op when disabled)."""
        if not self.config.pose_nms.enabled or len(poses) < 2:
            return poses
        from core.pose_nms import pose_nms

        return pose_nms(poses, self.config.pose_nms.preset)

    # ------------------------------------------------------------------------------ steps

    def _image_tensor(self, frame_rgb: np.ndarray) -> torch.Tensor:
        """[1, 3, H, W] float view of the frame in 0–255 on the device (HWC memory, no copy).

        On CPU numpy's uint8 → float32 conversion is several times faster than torch's here
        (measured 1.1 ms vs 16 ms for 1768×994 on one thread); on CUDA the uint8 frame is
        uploaded (4× fewer bytes) and converted on the GPU.
        """
        if self.device.type == "cpu":
            image = torch.from_numpy(frame_rgb.astype(np.float32))
        else:
            image = torch.from_numpy(np.ascontiguousarray(frame_rgb)).to(self.device, non_blocking=True).float()
        return image.permute(2, 0, 1).unsqueeze(0)

    def _merge_detections(self, detections: Detections, tracks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tracked ROIs plus the detections' ROIs that match no tracked person."""
        d_centres, d_sides, d_rot = detections.rois(ROI_SCALE)
        if len(tracks[0]) and len(d_sides):
            iou = _core_iou(d_centres, d_sides, tracks[0], tracks[1])
            new = iou.max(1) <= self.config.detector.nms_iou
            d_centres, d_sides, d_rot = d_centres[new], d_sides[new], d_rot[new]
        centres = np.concatenate([tracks[0], d_centres]).astype(np.float32)
        sides = np.concatenate([tracks[1], d_sides]).astype(np.float32)
        rotations = np.concatenate([tracks[2], d_rot]).astype(np.float32)
        ok = sides >= MIN_ROI_SIDE
        limit = max(int(self.config.detector.max_persons), 0)
        return centres[ok][:limit], sides[ok][:limit], rotations[ok][:limit]

    def _decode(self, out: SPPEOutput, theta: np.ndarray):
        """SPPE output → image-space keypoints [N, K, 3] (SPPE layout), presence [N], aux points."""
        method = self.config.sppe.decode
        if method == "regression" and out.coords is None:
            method = "dark"  # heatmap-only SPPE: fall back to the sub-pixel heatmap decoder
        if method == "regression":
            coords = out.coords.float().cpu().numpy()
            scores = None
        else:
            hm_coords, scores = decode_heatmaps(out.heatmaps, method, int(self.config.sppe.dark_kernel))
            to_crop = getattr(self.sppe, "heatmap_to_crop", None)
            coords = hm_coords.astype(np.float64)
            coords = to_crop(coords) if to_crop is not None else \
                heatmap_to_crop(coords, tuple(out.heatmaps.shape[-2:]), self.sppe.input_size)
        if out.scores is not None:
            scores = out.scores.float().cpu().numpy()
        elif scores is None:
            scores = decode_heatmaps(out.heatmaps, "argmax")[1]
        n = coords.shape[0]
        presence = np.ones(n, np.float32) if out.presence is None else out.presence.float().cpu().numpy()
        xy = crop_to_image(coords.astype(np.float64), theta)
        keypoints = np.concatenate([xy, np.clip(scores, 0.0, 1.0)[..., None]], -1).astype(np.float32)
        aux = None
        if out.aux_coords is not None and out.aux_coords.shape[1] >= 2:
            aux = crop_to_image(out.aux_coords.float().cpu().numpy().astype(np.float64), theta).astype(np.float32)
        return keypoints, presence, aux

    def _finish(self, keypoints: np.ndarray, presence: np.ndarray, aux) -> Poses:
        """Drop absent poses, merge duplicates, derive next-frame ROIs, build output Poses."""
        cfg = self.config
        out_layout = self.output_layout
        sppe_layout = self.sppe.layout
        n = len(keypoints)
        to_out = Poses(np.zeros((n, 4)), keypoints, np.zeros(n), layout=sppe_layout).to_layout(out_layout) \
            if out_layout != sppe_layout else None
        out_kp = keypoints if to_out is None else to_out.keypoints
        scores = presence * out_kp[..., 2].mean(1)

        present = presence >= cfg.sppe.min_pose_score
        if (~present).any():
            self._force_detect = True  # someone was lost (or a detection was empty): look again next frame
        keep = np.flatnonzero(present)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        keep = self._drop_duplicates(keypoints, keep)

        if len(keep):
            if aux is not None:
                self._tracks = alignment_rois(aux[keep, 0], aux[keep, 1], ROI_SCALE)
            else:
                self._tracks = _rois_from_keypoints(keypoints[keep], self._sppe_layout)
            ok = self._tracks[1] >= MIN_ROI_SIDE
            self._tracks = tuple(a[ok] for a in self._tracks)
        else:
            self._tracks = _empty_rois()

        kp = out_kp[keep]
        boxes = _person_boxes(keypoints[keep])
        return Poses(boxes, kp, scores[keep], layout=out_layout)

    def _drop_duplicates(self, keypoints: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Greedy: walk poses best-first, drop any whose OKS with a kept one is ≥ DUPLICATE_OKS."""
        if len(order) < 2:
            return order
        coco = _as_coco(keypoints[order], self.sppe.layout)
        boxes = _person_boxes(keypoints[order])
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        gt = np.concatenate([coco[..., :2], np.ones_like(coco[..., :1])], -1)
        oks = compute_oks(coco[..., :2], gt, areas)
        kept: list[int] = []
        for i in range(len(order)):
            if all(oks[i, j] < DUPLICATE_OKS for j in kept):
                kept.append(i)
        return order[kept]


# ---------------------------------------------------------------------------------- helpers


class _Clock:
    """Per-stage wall time in ms; waits for the GPU first so a stage is charged its own kernels."""

    def __init__(self, device: torch.device, timings: dict | None):
        self.cuda = device.type == "cuda"
        self.timings = timings
        self.t = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.timings is None:
            return
        now = self._now()
        self.timings[stage] = (now - self.t) * 1000.0
        self.t = now


def _empty_rois():
    return np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)


def _core_iou(c1, s1, c2, s2) -> np.ndarray:
    """IoU of the ROIs' core squares (side = body radius, centred at the ROI centre)."""
    from core.detection.blazepose import box_iou

    r1 = (np.asarray(s1) / (2 * ROI_SCALE))[:, None] / 2
    r2 = (np.asarray(s2) / (2 * ROI_SCALE))[:, None] / 2
    b1 = np.concatenate([c1 - r1, c1 + r1], 1)
    b2 = np.concatenate([c2 - r2, c2 + r2], 1)
    return box_iou(b1, b2)


def _as_coco(keypoints: np.ndarray, layout: str) -> np.ndarray:
    if layout == COCO17:
        return keypoints
    return Poses(np.zeros((len(keypoints), 4)), keypoints, np.zeros(len(keypoints)), layout=layout) \
        .to_layout(COCO17).keypoints


def _person_boxes(keypoints: np.ndarray) -> np.ndarray:
    """Keypoint extent grown by BOX_MARGIN on each side (joints lie inside the body outline)."""
    if len(keypoints) == 0:
        return np.zeros((0, 4), np.float32)
    lo = keypoints[..., :2].min(1)
    hi = keypoints[..., :2].max(1)
    pad = (hi - lo) * BOX_MARGIN
    return np.concatenate([lo - pad, hi + pad], 1).astype(np.float32)


def _rois_from_keypoints(keypoints: np.ndarray, skeleton) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Next-frame ROIs for SPPEs without auxiliary points: centre at the hip centre, radius the
    farthest keypoint from it, "up" along hip centre → shoulder centre."""
    names = {n: i for i, n in enumerate(skeleton.names)}
    hips = keypoints[:, [names["left_hip"], names["right_hip"]], :2].mean(1)
    shoulders = keypoints[:, [names["left_shoulder"], names["right_shoulder"]], :2].mean(1)
    radius = np.linalg.norm(keypoints[..., :2] - hips[:, None], axis=-1).max(1)
    up = shoulders - hips
    up /= np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-6)
    return alignment_rois(hips, hips + up * radius[:, None], ROI_SCALE)
