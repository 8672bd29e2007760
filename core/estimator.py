"""PoseEstimator: frame in, poses out. ROIs (``core.roi.RoiTracker``: detect, or follow last frame's
people) → SSTN crops → one batched SPPE call → decode (``sppe.codec``) → SDTN back to the image →
next frame's ROIs → ``Poses``.

Next-frame ROIs come from the landmark model's auxiliary mid-hip and size/rotation points (33, 34),
exactly as the detector's alignment points give them; SPPEs without those points derive them from
the keypoints (``Rois.from_keypoints``). A pose that repeats a better-scored one is dropped
(``core.roi.same_person``), so tracking never follows one person twice; pose NMS proper is
``postprocess``.

Scores. Keypoint score = the SPPE's keypoint confidence (BlazePose: sigmoid of its visibility
logit; heatmap SPPEs: the heatmap maximum). Person score = pose presence × mean keypoint score
over the output layout's keypoints (presence 1 for SPPEs without a presence output).

Decoding (``sppe.decode``): ``regression`` (default) takes the landmark model's regressed points,
which keep limb lengths steadier over time than DARK on its heatmaps (DARK lands 6.4 px from them
on average; figures in docs/roi_tracking.md); ``dark``/``quarter``/``argmax`` decode the heatmaps.
Heatmap-only SPPEs fall back to DARK.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

from core.detection import make_detector
from core.detection.background import BackgroundDetector, DeferredDetector
from core.errors import UserError
from core.heatmaps import DECODE_METHODS
from core.models.build import make_sppe
from core.models.zoo import resolve_device
from core.models.sppe import SPPEOutput, run_sppe
from core.models.sstn import crop, crop_frame, crop_to_image, roi_to_affine
from core.poses import Poses
from core.roi import Rois, RoiTracker
from core.skeleton import COCO17, get_skeleton

log = logging.getLogger("rmpe.estimator")

# A crop is poor when the pose's own ROI is off it by more than: centre shift / side, side ratio,
# rotation (radians). Box crops of upright people give shifts of ~0.1 and ratios near 1.
POOR_CROP = (0.15, 1.25, np.radians(20.0))
BOX_MARGIN = 0.1  # person box = keypoint extent grown by this fraction of its size on each side


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
        decode = config.sppe.decode
        if decode == "regression" and not getattr(self.sppe, "regresses", True):
            decode = "dark (heatmap SPPE: it has no regression output)"  # what _decode falls back to
        log.info("pose estimator on %s: %s; detector %s every %d frame(s), SPPE %s, decode %s", self.device,
                 self.backend, getattr(self.detector, "name", "?"), max(1, int(config.detector.interval)),
                 config.sppe.model, decode)
        self._sppe_layout = get_skeleton(self.sppe.layout)
        self.rois = RoiTracker(config.detector)
        # how scheduled runs reach the frames while people are tracked (core.detection.background)
        self._runner: DeferredDetector | BackgroundDetector = DeferredDetector(self.detector)
        self._prepared: set[tuple[int, int]] = set()  # frame sizes prepare() has run for

    @property
    def codec(self):
        """The SPPE's heatmap codec with this config's decoder (read per frame: live changes apply)."""
        return self.sppe.codec.with_decode(self.config.sppe.decode, int(self.config.sppe.dark_kernel))

    # ------------------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget tracked ROIs (seek, new source): the next frame runs the detector (from its
        first state, for detectors that have one: NanoDet's alternating tiles)."""
        self.rois.reset()
        self._runner.reset()  # drops a run not yet merged, then resets the detector

    @property
    def tracked_rois(self) -> Rois:
        """The ROIs the next frame will crop without detecting (a copy)."""
        return self.rois.tracked

    @property
    def frames_seen(self) -> int:
        """Frames since the last reset."""
        return self.rois.frames_seen

    @property
    def detector_runs(self) -> int:
        """Of ``frames_seen``, the frames on which the detector ran."""
        return self.rois.detector_runs

    # ------------------------------------------------------------------------------ inference

    def infer(self, frame_rgb: np.ndarray, timings: dict | None = None) -> Poses:
        """Poses of one RGB uint8 frame [H, W, 3]; ``timings`` (if given) receives per-stage ms."""
        frame_rgb = np.asarray(frame_rgb)
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
            raise ValueError(f"frame must be RGB uint8 [H, W, 3], got {frame_rgb.dtype} {frame_rgb.shape}")
        clock = _Clock(self.device, timings)

        rois = self._next_rois(frame_rgb, timings)
        clock.lap("detect")
        if len(rois) == 0:
            self.rois.update(rois, np.zeros(0, bool), np.zeros(0))
            for stage in ("crop", "sppe", "decode"):
                clock.lap(stage)
            return Poses.empty(self.output_layout)

        theta = roi_to_affine(rois.centres.astype(np.float64), rois.sides.astype(np.float64),
                              rois.rotations.astype(np.float64), self.sppe.input_size)
        crops = self._crops(frame_rgb, theta)
        clock.lap("crop")

        out = run_sppe(self.sppe, crops, self.config.sppe.decode)
        clock.lap("sppe")

        keypoints, presence, aux = self._decode(out, theta)
        if self.config.sppe.second_pass:
            keypoints, presence, aux = self._refine(frame_rgb, rois, keypoints, presence, aux)
        poses = self._track(keypoints, presence, aux)
        clock.lap("decode")
        return poses

    def postprocess(self, poses: Poses) -> Poses:
        """Parametric pose NMS per ``config.pose_nms`` (a no-op when disabled)."""
        if not self.config.pose_nms.enabled or len(poses) < 2:
            return poses
        from core.pose_nms import pose_nms

        return pose_nms(poses, self.config.pose_nms.preset)

    def prepare(self, height: int, width: int) -> None:
        """Load and run every model for frames of this size, before frames flow: sessions that are
        built or first run lazily (NanoDet's canvas for this aspect, ONNX Runtime's first calls
        at each batch size) would otherwise cost the first frames several times the median. Each
        shape runs twice: ONNX Runtime's second run at a new shape still cost ~1.5x its later
        ones (SPPE batch 3 right after one warm-up run: 28 ms against 19). Batches 1-4 cover the
        demo's frames (tracked people plus a run's new ones). Once per size; the tracking state
        is left as it was."""
        if (height, width) in self._prepared or height <= 0 or width <= 0:
            return
        self._prepared.add((height, width))
        if hasattr(self.detector, "prepare"):
            self.detector.prepare(height, width)
        h, w = self.sppe.input_size
        for batch in (1, 2, 3, 4) * 2:
            run_sppe(self.sppe, torch.zeros(batch, 3, h, w, device=self.device), self.config.sppe.decode)

    def set_background_detection(self, enabled: bool) -> None:
        """Run scheduled detector runs on a worker whose people join once it finishes (real-time
        modes: no frame waits for a run) or on a worker the next frame waits for (file mode, the
        default: results independent of timing); ``core.detection.background``. Either way a
        run in flight finishes first (a pipeline ending hands back an idle estimator)."""
        self._runner.wait()
        if enabled != isinstance(self._runner, BackgroundDetector):
            self._runner.close()
            self._runner = BackgroundDetector(self.detector) if enabled else DeferredDetector(self.detector)

    # ------------------------------------------------------------------------------ steps

    def _next_rois(self, frame_rgb: np.ndarray, timings: dict | None = None) -> Rois:
        """This frame's ROIs (``RoiTracker.next_rois``). While people are tracked, scheduled runs
        go through the runner and their people join on a later frame; recovery runs (looking
        where a tracked person was lost) run inline, except on the background runner. With
        nobody to follow (the start, a seek, an empty scene) or nothing carried (``interval`` 1,
        plain top-down) the detector runs inline and its people show at once. A scheduled run's
        own time on its worker goes to ``timings["detect_background"]`` on the frame it arrives
        in; ``detect`` holds starting it on its own frame and, in file mode, waiting for it on
        the next."""
        runner = self._runner
        detect_near = getattr(self.detector, "detect_near", None)
        near = None if detect_near is None else lambda c, s: detect_near(frame_rgb, c, s)
        if len(self.rois.tracked) == 0 or self.rois.interval == 1:
            runner.wait()  # the detector is not re-entrant: a run in flight finishes first
            return self.rois.next_rois(lambda: self.detector(frame_rgb), near, runner.take())
        arrived = runner.take()  # before starting another run: a finished one frees the worker
        if arrived is not None and timings is not None:
            timings["detect_background"] = runner.last_ms
        if near is not None and not runner.inline_recovery:
            near = lambda c, s: runner.start_near(frame_rgb, c, s)  # noqa: E731
        # else inline: a recovery run reads little and finds the lost person on the frame itself
        return self.rois.next_rois(lambda: runner.start(frame_rgb), near, arrived)

    def _crops(self, frame_rgb: np.ndarray, theta: np.ndarray) -> torch.Tensor:
        """[N, 3, h, w] SPPE input in [0, 1] for the ROIs' image → crop affines θ [N, 2, 3]: on CPU one
        cv2 warp per ROI straight from the uint8 frame, on CUDA one ``grid_sample`` of the uploaded frame."""
        if self.device.type == "cpu":
            return crop_frame(frame_rgb, theta, self.sppe.input_size, scale=1.0 / 255.0)
        crops = crop(self._image_tensor(frame_rgb), torch.from_numpy(theta).float(), self.sppe.input_size)
        return crops.mul_(1.0 / 255.0)  # sampling is linear: scale the few crop pixels, not the frame

    def _image_tensor(self, frame_rgb: np.ndarray) -> torch.Tensor:
        """[1, 3, H, W] float view of the frame in 0–255 on the (CUDA) device, HWC memory: the
        uint8 frame is uploaded (4× fewer bytes) and converted on the GPU."""
        image = torch.from_numpy(np.ascontiguousarray(frame_rgb)).to(self.device, non_blocking=True).float()
        return image.permute(2, 0, 1).unsqueeze(0)

    def _decode(self, out: SPPEOutput, theta: np.ndarray):
        """SPPE output → image-space keypoints [N, K, 3] (SPPE layout), presence [N], aux points."""
        codec = self.codec
        n = (out.heatmaps if out.heatmaps is not None else out.coords).shape[0]
        regress = codec.method == "regression" and out.coords is not None
        # one device → host copy for all the small outputs
        coords, scores, presence, aux = _to_host(out.coords if regress else None, out.scores,
                                                 out.presence, out.aux_coords)
        coords, scores = codec.decode(out.heatmaps, coords, scores)
        presence = np.ones(n, np.float32) if presence is None else presence.reshape(n)
        xy = crop_to_image(coords.astype(np.float64), theta)
        keypoints = np.concatenate([xy, np.clip(scores, 0.0, 1.0)[..., None]], -1).astype(np.float32)
        if aux is not None and aux.shape[1] >= 2:
            aux = crop_to_image(aux.astype(np.float64), theta).astype(np.float32)
        else:
            aux = None
        return keypoints, presence, aux

    def _aligned_rois(self, keypoints: np.ndarray, aux) -> Rois:
        """The ROI each pose itself gives (alignment points, else keypoints): next frame's ROI."""
        if aux is not None:
            return Rois.from_alignment_points(aux[:, 0], aux[:, 1])
        return Rois.from_keypoints(keypoints, self._sppe_layout)

    def _refine(self, frame_rgb, rois: Rois, keypoints, presence, aux):
        """Second pass for poor crops: where a found person's own ROI is off the crop's ROI by
        more than ``POOR_CROP`` (centre shift / side, side ratio, rotation), crop again on the
        pose's ROI and read them once more. A body box's upright crop is what this repairs (the
        SSTN's job done by the pose itself); carried ROIs are already aligned and rarely qualify.
        Counts go to ``self.refined`` (crops re-read) for measurement."""
        aligned = self._aligned_rois(keypoints, aux)
        shift = np.linalg.norm(aligned.centres - rois.centres, axis=1) / np.maximum(rois.sides, 1)
        ratio = aligned.sides / np.maximum(rois.sides, 1e-6)
        turn = np.abs((aligned.rotations - rois.rotations + np.pi) % (2 * np.pi) - np.pi)
        max_shift, max_ratio, max_turn = POOR_CROP
        poor = (shift > max_shift) | (ratio > max_ratio) | (ratio < 1 / max_ratio) | (turn > max_turn)
        redo = np.flatnonzero(poor & (presence >= self.config.sppe.min_pose_score)
                              & (aligned.sides >= 8.0))
        self.refined = getattr(self, "refined", 0) + len(redo)
        if not len(redo):
            return keypoints, presence, aux
        again = aligned.select(redo)
        theta = roi_to_affine(again.centres.astype(np.float64), again.sides.astype(np.float64),
                              again.rotations.astype(np.float64), self.sppe.input_size)
        kp2, pr2, aux2 = self._decode(run_sppe(self.sppe, self._crops(frame_rgb, theta),
                                               self.config.sppe.decode), theta)
        keypoints, presence = keypoints.copy(), presence.copy()
        keypoints[redo], presence[redo] = kp2, pr2
        if aux is not None and aux2 is not None:
            aux = aux.copy()
            aux[redo] = aux2
        return keypoints, presence, aux

    def _track(self, keypoints: np.ndarray, presence: np.ndarray, aux) -> Poses:
        """Hand the poses' next-frame ROIs to the tracker; the kept poses (best first) as ``Poses``."""
        sppe_layout = self.sppe.layout
        out_kp = _convert(keypoints, sppe_layout, self.output_layout)
        scores = presence * out_kp[..., 2].mean(1)
        next_rois = self._aligned_rois(keypoints, aux)
        boxes = _person_boxes(keypoints)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        present = self.rois.present(presence, self.config.sppe.min_pose_score)
        keep = self.rois.update(next_rois, present, scores,
                                _convert(keypoints, sppe_layout, COCO17), areas)
        return Poses(boxes[keep], out_kp[keep], scores[keep], layout=self.output_layout)


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


def _convert(keypoints: np.ndarray, layout: str, to_layout: str) -> np.ndarray:
    """Keypoints [N, K, 3] from ``layout`` to ``to_layout`` (unchanged when they are the same)."""
    if layout == to_layout:
        return keypoints
    n = len(keypoints)
    return Poses(np.zeros((n, 4)), keypoints, np.zeros(n), layout=layout).to_layout(to_layout).keypoints


def _person_boxes(keypoints: np.ndarray) -> np.ndarray:
    """Keypoint extent grown by BOX_MARGIN on each side (joints lie inside the body outline)."""
    if len(keypoints) == 0:
        return np.zeros((0, 4), np.float32)
    lo = keypoints[..., :2].min(1)
    hi = keypoints[..., :2].max(1)
    pad = (hi - lo) * BOX_MARGIN
    return np.concatenate([lo - pad, hi + pad], 1).astype(np.float32)
