"""PoseEstimator: detect people (or follow last frame's ROIs) → SSTN crops → batched SPPE →
keypoint decode → SDTN back to the image.

ROI tracking (BlazePose's way, extended to many people). The detector runs on the first frame,
every ``detector.interval`` frames, whenever nobody is tracked, and after a tracked person was
lost (pose presence below ``sppe.min_pose_score``): then on every frame until as many people are
tracked again, for at most one interval (measured on the demo: a single re-detection right after
the loss missed the man in mid-flip for ~10 frames that detect-every-frame caught). On the frames in between every
person's crop comes from their own previous-frame keypoints: the landmark model's auxiliary
mid-hip and size/rotation points (33, 34) give the next square ROI exactly as the detector's
alignment points do (side 2·r·1.25, rotated upright); SPPEs without those points use the hip
centre, the farthest keypoint and the hip→shoulder direction. On a detection frame the tracked
ROIs are kept and only detections that match no tracked person are added: detections catch
people who enter, tracking keeps the finer landmark-derived crop. ``interval`` 1 is plain
top-down: ROIs come from the detector on every frame and nothing is carried over.
Default 8, measured on the demo (bench_roi_tracking.py, one CPU thread): 2.65× less CPU per frame
than detecting on every frame, 97.5 % of the per-frame poses found again (OKS ≥ 0.5, mean OKS
0.96, 7 px); 16 saves little more (2.9×) and finds 95 %; a person who walks in waits up to
``interval`` frames (0.27 s at 30 fps).

All crops of a frame go through the SPPE in one batch. A pose that repeats a better-scored one
(OKS ≥ ``DUPLICATE_OKS``, overlapping next-frame ROIs, or its nose on the other's torso) is
dropped, so tracking never follows one person twice; pose NMS proper is ``postprocess``.

Scores. Keypoint score = the SPPE's keypoint confidence (BlazePose: sigmoid of its visibility
logit; heatmap SPPEs: the heatmap maximum). Person score = pose presence × mean keypoint score
over the output layout's keypoints (presence 1 for SPPEs without a presence output).

Decoding (``sppe.decode``): ``regression`` (default) takes the landmark model's regressed points;
``dark``/``quarter``/``argmax`` decode its heatmaps. Measured on the demo (bench_roi_tracking.py,
default interval, 379 people on identical crops) DARK lands 6.4 px from the regression on average
(median 3.9; 3 px on the face, 4–5 on shoulders and hips, 7–12 on elbows, wrists, knees,
ankles). Where they differ most (backlit man, frames 133–152, up to 235 px) DARK's ankle peak
jumps to the other foot, giving a shin far longer than the thigh, while the regression keeps a
plausible raised leg; over time the regression's limb lengths are steadier overall
(coefficient of variation 0.139 vs 0.151; forearm 0.195 vs 0.262). Heatmap-only SPPEs fall back
to DARK.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

from core.detection import ROI_SCALE, Detections, alignment_rois, make_detector
from core.detection.blazepose import box_iou, face_on_torso
from core.errors import UserError
from core.heatmaps import decode_heatmaps, heatmap_to_crop
from core.models.sppe import SPPEOutput, make_sppe
from core.models.sstn import crop, crop_frame, crop_to_image, roi_to_affine
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
    from core.models.zoo import resolve_device as zoo_resolve

    requested = str(requested or "auto").lower()
    if requested not in ("auto", "cpu") and not requested.startswith("cuda"):
        raise UserError(f"unknown device {requested!r}; choose auto, cpu or cuda")
    return zoo_resolve(requested)


class PoseEstimator:
    """Frame in, poses out (image pixels, ``config.sppe.keypoint_layout``); stateful between frames."""

    def __init__(self, config, device: str = "auto", detector=None, sppe=None):
        self.config = config
        if config.sppe.decode not in DECODE_METHODS:
            raise UserError(f"unknown sppe.decode {config.sppe.decode!r}; choose one of: {', '.join(DECODE_METHODS)}")
        self.device = resolve_device(config.runtime.device if device == "auto" else device)
        self.detector = detector if detector is not None else \
            make_detector(config.detector, self.device, config.runtime)
        self.sppe = sppe if sppe is not None else make_sppe(config.sppe, self.device, config.runtime)
        self.output_layout = config.sppe.keypoint_layout
        try:
            get_skeleton(self.output_layout)
        except KeyError:
            raise UserError(f"unknown sppe.keypoint_layout {self.output_layout!r}; "
                            "choose coco17 or blazepose33") from None
        model = getattr(self.sppe, "model", None)
        self.backend = str(getattr(model, "description", None) or getattr(model, "backend", None) or "eager")
        log.info("pose estimator on %s: %s; detector %s every %d frame(s), SPPE %s, decode %s", self.device,
                 self.backend, getattr(self.detector, "name", "?"), max(1, int(config.detector.interval)),
                 config.sppe.model, config.sppe.decode)
        self._sppe_layout = get_skeleton(self.sppe.layout)
        self.reset()

    # ------------------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget tracked ROIs (seek, new source): the next frame runs the detector."""
        self._tracks = _empty_rois()
        self._since_detect = 0
        self._recover_left = 0  # frames left in which to look for a lost person on every frame
        self._recover_count = 0  # how many people were tracked before the loss
        self.frames_seen = 0  # frames since the last reset
        self.detector_runs = 0  # of which the detector ran on this many

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

        # With max_persons already tracked a periodic detection could add nobody (MediaPipe's
        # one-person behaviour): detect again only when someone is lost.
        full = len(self._tracks[1]) >= max(int(self.config.detector.max_persons), 1)
        detect = (interval == 1 or self._recover_left > 0 or len(self._tracks[0]) == 0
                  or (self._since_detect >= interval and not full))
        self.frames_seen += 1
        carried = self._tracks if interval > 1 else _empty_rois()
        if detect:
            self.detector_runs += 1
            detections = self.detector(frame_rgb)
            rois = self._merge_detections(detections, carried)
            self._since_detect = 1
        else:
            rois = carried
            self._since_detect += 1
        n_tracked = len(carried[1])  # the merged ROIs start with the carried-over ones
        clock.lap("detect")

        centres, sides, rotations = rois
        n = len(sides)
        if n == 0:
            self._tracks = _empty_rois()
            for stage in ("crop", "sppe", "decode"):
                clock.lap(stage)
            return Poses.empty(self.output_layout)

        h, w = self.sppe.input_size
        theta = roi_to_affine(centres.astype(np.float64), sides.astype(np.float64),
                              rotations.astype(np.float64), (h, w))
        if self.device.type == "cpu":  # one cv2 warp per ROI straight from the uint8 frame
            crops = crop_frame(frame_rgb, theta, (h, w), scale=1.0 / 255.0)
        else:
            crops = crop(self._image_tensor(frame_rgb), torch.from_numpy(theta).float(), (h, w))
            crops.mul_(1.0 / 255.0)  # sampling is linear: scale the few crop pixels, not the frame
        clock.lap("crop")

        out = self.sppe(crops)
        clock.lap("sppe")

        poses, presence, aux = self._decode(out, theta)
        poses = self._finish(poses, presence, aux, n_tracked)
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
        """[1, 3, H, W] float view of the frame in 0–255 on the (CUDA) device, HWC memory: the
        uint8 frame is uploaded (4× fewer bytes) and converted on the GPU."""
        image = torch.from_numpy(np.ascontiguousarray(frame_rgb)).to(self.device, non_blocking=True).float()
        return image.permute(2, 0, 1).unsqueeze(0)

    def _merge_detections(self, detections: Detections, tracks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tracked ROIs plus the detections' ROIs that match no tracked person.

        A detection matches a tracked person when their core boxes overlap (IoU > nms_iou) or
        when its face lies on the tracked person's torso (the detector's own merge rules).
        """
        d_centres, d_sides, d_rot = detections.rois(ROI_SCALE)
        if len(tracks[0]) and len(d_sides):
            known = _core_iou(d_centres, d_sides, tracks[0], tracks[1]).max(1) > self.config.detector.nms_iou
            if detections.faces is not None:
                known |= face_on_torso(detections.faces, tracks[0], tracks[1] / (2 * ROI_SCALE)).any(0)
            d_centres, d_sides, d_rot = d_centres[~known], d_sides[~known], d_rot[~known]
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
        n = out.heatmaps.shape[0]
        # one device → host copy for all the small outputs
        coords, scores, presence, aux = _to_host(out.coords if method == "regression" else None, out.scores,
                                                 out.presence, out.aux_coords)
        if method != "regression":
            hm_coords, hm_scores = decode_heatmaps(out.heatmaps, method, int(self.config.sppe.dark_kernel))
            to_crop = getattr(self.sppe, "heatmap_to_crop", None)
            coords = hm_coords.astype(np.float64)
            coords = to_crop(coords) if to_crop is not None else \
                heatmap_to_crop(coords, tuple(out.heatmaps.shape[-2:]), self.sppe.input_size)
            if scores is None:
                scores = hm_scores
        elif scores is None:
            scores = decode_heatmaps(out.heatmaps, "argmax")[1]
        presence = np.ones(n, np.float32) if presence is None else presence.reshape(n)
        xy = crop_to_image(coords.astype(np.float64), theta)
        keypoints = np.concatenate([xy, np.clip(scores, 0.0, 1.0)[..., None]], -1).astype(np.float32)
        if aux is not None and aux.shape[1] >= 2:
            aux = crop_to_image(aux.astype(np.float64), theta).astype(np.float32)
        else:
            aux = None
        return keypoints, presence, aux

    def _finish(self, keypoints: np.ndarray, presence: np.ndarray, aux, n_tracked: int) -> Poses:
        """Drop absent poses, merge duplicates, derive next-frame ROIs, build output Poses.

        The first ``n_tracked`` poses come from ROIs carried over from the previous frame; losing
        one of them triggers detection on the next frame. A fresh detection that the SPPE finds
        empty is just dropped (re-detecting would find the same false positive again).
        """
        cfg = self.config
        out_layout = self.output_layout
        sppe_layout = self.sppe.layout
        n = len(keypoints)
        to_out = Poses(np.zeros((n, 4)), keypoints, np.zeros(n), layout=sppe_layout).to_layout(out_layout) \
            if out_layout != sppe_layout else None
        out_kp = keypoints if to_out is None else to_out.keypoints
        scores = presence * out_kp[..., 2].mean(1)

        present = presence >= cfg.sppe.min_pose_score
        if aux is not None:
            rois = alignment_rois(aux[:, 0], aux[:, 1], ROI_SCALE)
        else:
            rois = _rois_from_keypoints(keypoints, self._sppe_layout)
        keep = np.flatnonzero(present & (rois[1] >= MIN_ROI_SIDE))
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        keep = self._drop_duplicates(keypoints, rois, keep)
        self._tracks = tuple(a[keep] for a in rois)
        if self._recover_left > 0:
            self._recover_left = 0 if len(keep) >= self._recover_count else self._recover_left - 1
        elif (~present[:n_tracked]).any():
            # a tracked person was lost: detect on every frame until as many people are tracked
            # again as before, for at most one detection interval
            self._recover_left = max(1, int(cfg.detector.interval))
            self._recover_count = n_tracked

        kp = out_kp[keep]
        boxes = _person_boxes(keypoints[keep])
        return Poses(boxes, kp, scores[keep], layout=out_layout)

    def _drop_duplicates(self, keypoints: np.ndarray, rois, order: np.ndarray) -> np.ndarray:
        """Walk poses best-first and drop a pose that is a kept pose's person again.

        Same person: OKS ≥ DUPLICATE_OKS, or next-frame ROI core boxes overlapping (IoU >
        nms_iou: the two crops will converge on one body), or its nose on the kept pose's torso
        (a crop that only half-saw the person and hallucinated the rest around them).
        """
        if len(order) < 2:
            return order
        kp = keypoints[order]
        coco = _as_coco(kp, self.sppe.layout)
        boxes = _person_boxes(kp)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        gt = np.concatenate([coco[..., :2], np.ones_like(coco[..., :1])], -1)
        same = compute_oks(coco[..., :2], gt, areas) >= DUPLICATE_OKS
        centres, sides = rois[0][order], rois[1][order]
        same |= _core_iou(centres, sides, centres, sides) > self.config.detector.nms_iou
        same |= face_on_torso(coco[:, 0, :2], centres, sides / (2 * ROI_SCALE)).T
        kept: list[int] = []
        for i in range(len(order)):
            if not any(same[i, j] or same[j, i] for j in kept):
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


def _to_host(*tensors):
    """numpy copies of the given tensors (None stays None) through ONE device → host transfer."""
    present = [t for t in tensors if t is not None]
    if not present:
        return tensors
    n = present[0].shape[0]
    flat = torch.cat([t.detach().float().reshape(n, -1) for t in present], 1).cpu().numpy()
    out, start = [], 0
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        width = int(np.prod(t.shape[1:], dtype=np.int64))
        out.append(flat[:, start:start + width].reshape(t.shape))
        start += width
    return out


def _empty_rois():
    return np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)


def _core_iou(c1, s1, c2, s2) -> np.ndarray:
    """IoU of the ROIs' core squares (side = body radius, centred at the ROI centre)."""
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
