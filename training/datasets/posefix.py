"""PoseFix training samples: a ground-truth person, an erroneous input pose made on the fly, the crop.

Once per epoch the PoseFix error synthesiser (``core.evaluation.synthesis``) draws a label and a
position for every annotated joint of *every* person of every image, so swaps reach the other
people's joints and the crowded condition comes from the real overlaps (as in the paper); a
sample (one annotated person) takes its synthesised pose as the input. The crop is the box of the input pose
(``core.models.posefix.pose_crop_theta``, what the refiner crops at inference) with the paper's
augmentation: scale, rotation and horizontal flip (plus colour jitter when configured). The target
is the ground-truth pose in heatmap px; joints unannotated or outside the crop weigh 0.

The person score of the input is its OKS with the ground truth + N(0, ``score_noise``) (as
``synthesize_results`` scores its detections), so AP ranks inputs like an estimator's confidence
would; the refined pose keeps that score. Randomness: ``default_rng([seed, epoch, index])``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.evaluation.synthesis import ErrorSynthesizer, pad_by_image
from core.heatmaps import crop_to_heatmap
from core.models.posefix import PoseFixSpec, pose_crop_theta
from core.models.sstn import image_to_crop
from core.oks import compute_oks
from training.datasets.coco_keypoints import AugmentConfig, CocoKeypoints, SampleGeometry, warp


def posefix_geometry(spec: PoseFixSpec) -> SampleGeometry:
    return SampleGeometry(input_size=tuple(spec.input_size), heatmap_size=spec.heatmap_size, layout=spec.layout,
                          mean=tuple(spec.mean), std=tuple(spec.std), box_scale=spec.box_scale)


class PoseFixSamples(CocoKeypoints):
    """Samples: ``image`` [3, H, W] normalised crop, ``pose_xy`` [K, 2] input pose in crop px,
    ``pose_valid`` [K], ``target_xy`` [K, 2] GT in heatmap px, ``target_weight`` [K], ``theta`` crop
    px → image px, ``input_keypoints`` [K, 3] input pose in image px (v = valid), ``labels`` [K]
    injected error labels, ``score``, ``image_id``, ``ann_id``."""

    def __init__(self, images_dir: str | Path, annotations: str | Path, spec: PoseFixSpec,
                 augment: AugmentConfig | None = None, min_keypoints: int = 3, cache_images: bool = True,
                 seed: int = 0, score_noise: float = 0.1):
        super().__init__(images_dir, annotations, posefix_geometry(spec), augment, None, min_keypoints,
                         cache_images, seed)
        if spec.layout != "coco17":
            raise ValueError("the PoseFix error synthesiser is defined for coco17")
        self.spec = spec
        self.score_noise = float(score_noise)
        self.synth = ErrorSynthesizer()
        image_ids, ann_index, self.kp, self.areas, self.boxes, self.present = pad_by_image(self.data)
        anns = self.data["annotations"]
        self.where = {anns[j]["id"]: (i, p) for i, p in zip(*np.nonzero(ann_index >= 0))
                      for j in [ann_index[i, p]]}
        self._inputs: tuple[int, object] | None = None

    def synthesised(self):
        """This epoch's input poses for every person of every image (one vectorised draw per epoch,
        seeded by (seed, epoch): the same in every process and worker)."""
        if self._inputs is None or self._inputs[0] != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch, 1 << 20])
            self._inputs = (self.epoch, self.synth(self.kp, self.areas, rng, boxes=self.boxes, present=self.present))
        return self._inputs[1]

    def _augmentation(self, rng: np.random.Generator) -> tuple[float, float, bool]:
        a = self.augment
        scale = float(np.clip(rng.normal(1.0, a.scale), 1 - a.scale, 1 + a.scale)) if a.scale > 0 else 1.0
        rotation = 0.0
        if a.rotation > 0 and rng.random() < a.rotation_prob:
            rotation = float(np.deg2rad(np.clip(rng.normal(0.0, a.rotation), -2 * a.rotation, 2 * a.rotation)))
        return scale, rotation, bool(a.flip and rng.random() < 0.5)

    def __getitem__(self, index: int) -> dict:
        ann = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        i, p = self.where[ann["id"]]
        syn = self.synthesised()
        gt = self.kp[i, p]
        in_xy, labels = syn.keypoints[i, p], syn.labels[i, p]
        in_valid = labels >= 0
        oks = compute_oks(np.concatenate([in_xy, in_valid[:, None]], 1)[None], gt[None],
                          np.asarray([self.areas[i, p]]), self.boxes[i, p][None])[0, 0]
        score = float(np.clip(oks + rng.normal(0.0, self.score_noise), 0.01, 1.0)) if self.score_noise > 0 \
            else float(oks)
        scale, rotation, flip = self._augmentation(rng)
        spec = self.spec
        theta = pose_crop_theta(in_xy[None], in_valid[None], spec, [scale], [rotation], [flip])[0]
        pose_xy = image_to_crop(in_xy[None], theta[None])[0]
        gt_xy = image_to_crop(gt[None, :, :2], theta[None])[0]
        gt_vis, pose_valid = gt[:, 2] > 0, in_valid
        if flip:
            perm = self.skeleton.flip_index
            pose_xy, pose_valid, gt_xy, gt_vis = pose_xy[perm], pose_valid[perm], gt_xy[perm], gt_vis[perm]
        h, w = spec.input_size
        inside = (gt_xy[:, 0] >= -0.5) & (gt_xy[:, 0] <= w - 0.5) & (gt_xy[:, 1] >= -0.5) & (gt_xy[:, 1] <= h - 0.5)
        image = self.load_image(ann["image_id"])
        jitter = rng if self.augment.colour > 0 or self.augment.grey_prob > 0 else None
        return {
            "image": self._to_tensor(warp(image, theta, spec.input_size), jitter),
            "pose_xy": torch.from_numpy(pose_xy.astype(np.float32)),
            "pose_valid": torch.from_numpy(pose_valid.astype(np.float32)),
            "target_xy": torch.from_numpy(crop_to_heatmap(gt_xy, spec.input_size, spec.heatmap_size).astype(np.float32)),
            "target_weight": torch.from_numpy((gt_vis & inside).astype(np.float32)),
            "theta": torch.from_numpy(theta),
            "input_keypoints": torch.from_numpy(np.concatenate([in_xy, in_valid[:, None]], 1)),
            "labels": torch.from_numpy(labels.astype(np.int64)),
            "score": score, "image_id": ann["image_id"], "ann_id": ann["id"],
        }
