"""PoseFix refinement of any estimator's poses: the refiner, the pipeline post step, offline refining.

``PoseFixRefiner(weights, device)`` loads a ``train posefix`` checkpoint and refines a frame's
``Poses``: every person with at least ``MIN_VALID`` keypoints scoring ≥ the spec's
``min_keypoint_score`` is cropped around its input pose (``core.models.posefix.pose_crop_theta``,
the crop training used), all crops of the frame in one batch (one ``grid_sample``, CPU or CUDA),
and its keypoints move to the refined positions (scores, boxes and track ids are kept; people with
fewer keypoints pass unchanged). ``RefineStep`` wraps it as a post step (name, ``__call__(poses,
timestamp, image)``, ``reset``) that runs after pose NMS and before tracking.

``refine_results(source frames, results, refiner)`` refines a results JSON offline (``python main.py
refine``); the results must match the frames (image ids = frame indices, keypoint count).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.models.posefix import KIND, PoseFixSpec, build_posefix, pose_crop_theta, refine_crops
from core.models.sstn import crop, crop_to_image
from core.poses import Poses

log = logging.getLogger("rmpe.refine")

MIN_VALID = 3  # fewer input keypoints than this give no usable crop: the person passes unchanged
METHODS = ("none", "posefix")


def read_posefix_checkpoint(path: str | Path) -> dict:
    """A ``train posefix`` checkpoint (one-line UserError when missing, foreign or another kind)."""
    from core.models.trained_sppe import read_checkpoint

    ckpt = read_checkpoint(path)
    if ckpt.get("kind") != KIND:
        raise UserError(f"{path} is a {ckpt.get('kind')} checkpoint, not a PoseFix one (train posefix writes those)")
    return ckpt


class PoseFixRefiner:
    """Refines ``Poses`` on an RGB uint8 frame; see the module docstring."""

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu", flip_test: bool = True):
        from core.models.zoo import resolve_device

        ckpt = read_posefix_checkpoint(weights)
        self.spec = PoseFixSpec.from_dict(ckpt["model_spec"])
        self.device = resolve_device(device)
        self.net = build_posefix(self.spec)
        self.net.load_state_dict(ckpt["model"])
        self.net = self.net.eval().to(self.device)
        self.flip_test = bool(flip_test)
        self.source = str(weights)
        log.info("PoseFix refiner %s: %s backbone, input %dx%d, %s on %s", Path(weights).name, self.spec.backbone,
                 *self.spec.input_size, "flip test" if flip_test else "no flip test", self.device)

    @property
    def layout(self) -> str:
        return self.spec.layout

    def refinable(self, poses: Poses) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the people refined, valid-keypoint mask [N, K])."""
        valid = poses.keypoints[..., 2] >= self.spec.min_keypoint_score
        return np.flatnonzero(valid.sum(1) >= MIN_VALID), valid

    @torch.no_grad()
    def refine(self, image: np.ndarray, poses: Poses) -> Poses:
        if poses.layout != self.spec.layout:
            raise UserError(f"the PoseFix checkpoint refines {self.spec.layout} poses, these are {poses.layout}")
        idx, valid = self.refinable(poses)
        out = poses.copy()
        if len(idx) == 0:
            return out
        xy = poses.keypoints[idx, :, :2].astype(np.float64)
        theta = pose_crop_theta(xy, valid[idx], self.spec)
        crops = self._crops(image, theta)
        mean = torch.tensor(self.spec.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=self.device).view(1, 3, 1, 1)
        from core.models.sstn import image_to_crop

        pose_xy = torch.from_numpy(image_to_crop(xy, theta).astype(np.float32)).to(self.device)
        pose_valid = torch.from_numpy(valid[idx].astype(np.float32)).to(self.device)
        refined = refine_crops(self.net, (crops - mean) / std, pose_xy, pose_valid, self.flip_test)
        out.keypoints[idx, :, :2] = crop_to_image(refined.double().cpu().numpy(), theta)
        return out


    def _crops(self, image: np.ndarray, theta: np.ndarray) -> torch.Tensor:
        """RGB crops [N, 3, h, w] in [0, 1] on the device. CPU: one small ``cv2.warpAffine`` per
        person (the frame is never converted whole); CUDA: the uint8 frame goes up once and one
        ``grid_sample`` cuts every crop."""
        size = self.spec.input_size
        if self.device.type == "cpu":
            import cv2

            out = np.stack([cv2.warpAffine(image, t, (size[1], size[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)) for t in theta])
            return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
        frame = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None]
        return crop(frame, torch.from_numpy(theta).to(self.device, torch.float32), size).float() / 255.0


class RefineStep:
    """Post step: PoseFix after pose NMS, before tracking; ``config.enabled`` is read on every call
    (the app's on/off switch)."""

    name = "refine"

    def __init__(self, refiner: PoseFixRefiner, config=None):
        self.refiner = refiner
        self.config = config

    def __call__(self, poses: Poses, timestamp: float, image: np.ndarray) -> Poses:
        if self.config is not None and not getattr(self.config, "enabled", True):
            return poses
        return self.refiner.refine(image, poses)

    def reset(self) -> None:
        """Stateless: nothing carries between frames."""


def build_refine_step(config, device="auto") -> RefineStep | None:
    """The refine post step of ``config.refine`` (None when ``method`` is none or no weights)."""
    r = config.refine
    if r.method == "none":
        return None
    if not r.weights:
        raise UserError("refine.method posefix needs refine.weights (a train posefix checkpoint)")
    refiner = PoseFixRefiner(r.weights, device, flip_test=r.flip_test)
    layout = config.sppe.keypoint_layout
    if layout != refiner.layout:
        raise UserError(f"refine: {r.weights} refines {refiner.layout} poses but sppe.keypoint_layout is {layout}")
    return RefineStep(refiner, r)


# ---------------------------------------------------------------------------------- offline

def results_by_frame(results: list, num_keypoints: int, name: str) -> dict[int, list[int]]:
    """Indices of ``results`` per image id; UserError when an entry's keypoints do not hold
    ``num_keypoints`` × 3 numbers."""
    out: dict[int, list[int]] = {}
    for i, r in enumerate(results):
        if not isinstance(r, dict) or "image_id" not in r or "keypoints" not in r:
            raise UserError(f"{name}: entry {i} is not a keypoint result (needs image_id and keypoints)")
        if len(r["keypoints"]) != 3 * num_keypoints:
            raise UserError(f"{name}: entry {i} has {len(r['keypoints']) // 3} keypoints; the refiner expects "
                            f"{num_keypoints}")
        try:
            out.setdefault(int(r["image_id"]), []).append(i)
        except (TypeError, ValueError):
            raise UserError(f"{name}: entry {i} has a non-integer image_id {r['image_id']!r}") from None
    return out


def refine_results(frames, num_frames: int | None, results: list, refiner: PoseFixRefiner, name: str = "results",
                   progress=None) -> list[dict]:
    """Refined copies of keypoint ``results`` (image_id = frame index of ``frames``, an iterable of
    (index, RGB frame)); every other field is kept. UserError when an image id names no frame."""
    k = Poses.empty(refiner.layout).num_keypoints
    per_frame = results_by_frame(results, k, name)
    if num_frames is not None:
        bad = sorted(i for i in per_frame if not 0 <= i < num_frames)
        if bad:
            raise UserError(f"{name}: image_id {bad[0]} is not a frame of the source ({num_frames} frames; "
                            f"{len(bad)} such id(s))")
    out = [dict(r) for r in results]
    seen = set()
    for index, frame in frames:
        ids = per_frame.get(index)
        if ids:
            kp = np.asarray([results[i]["keypoints"] for i in ids], np.float32).reshape(len(ids), k, 3)
            poses = Poses(np.zeros((len(ids), 4)), kp, np.zeros(len(ids)), layout=refiner.layout)
            refined = refiner.refine(frame, poses).keypoints
            for j, i in enumerate(ids):
                out[i]["keypoints"] = [round(float(v), 3) for v in refined[j].reshape(-1)]
        seen.add(index)
        if progress is not None:
            progress(index)
    missing = sorted(set(per_frame) - seen)
    if missing:
        raise UserError(f"{name}: image_id {missing[0]} is not a frame of the source ({len(missing)} such id(s))")
    return out
