"""Top-down COCO keypoint samples: one person crop per annotation, augmented, with DARK targets.

Geometry uses the conventions of ``core.models.sstn`` (pixel centres at integers; θ maps crop
pixels to image pixels), so training crops are the crops the estimator makes at inference.
A person box is centred, grown to the SPPE's aspect ratio and scaled by ``box_scale``; training
augmentation then jitters it (scale, shift, rotation), mirrors it (with the left/right joint swap
of the layout's ``flip_index``), sometimes narrows it to the upper or lower body, swaps it for a
PGPG proposal, and jitters colour. Targets are unbiased Gaussians (``SampleGeometry.codec``): joints
are mapped to heatmap pixels without rounding.

Each sample's randomness comes from ``default_rng([seed, epoch, index])``, so a sample is the
same whichever process, worker or world size draws it (needed for comparable DDP runs).

RMPE samples (``context > 1``) also carry a larger context crop around the proposal for the
learned spatial transformer, and the *centre-located* targets of the parallel SPPE branch: the
pose as it appears in the ideal crop of the ground-truth box.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from core.errors import UserError
from core.geometry import affine_compose
from core.heatmaps import HeatmapCodec
from core.models.sstn import image_to_crop, invert_affine, roi_to_affine
from core.skeleton import get_skeleton

UPPER_BODY_COCO = np.arange(0, 11)  # face, shoulders, elbows, wrists
LOWER_BODY_COCO = np.arange(11, 17)


@dataclass
class AugmentConfig:
    """Training augmentation (all off for evaluation)."""

    scale: float = 0.25  # box size × clip(N(1, scale), 1 - scale, 1 + scale)
    shift: float = 0.05  # centre shift ~ N(0, shift) × box size, clipped to ±2σ
    rotation: float = 30.0  # degrees, N(0, rotation) clipped to ±2σ ...
    rotation_prob: float = 0.6  # ... applied with this probability
    flip: bool = True
    half_body_prob: float = 0.3
    half_body_min_keypoints: int = 8
    colour: float = 0.3  # brightness/contrast/saturation jitter amplitude
    grey_prob: float = 0.05
    proposal_prob: float = 0.0  # chance to replace the GT box by a PGPG proposal (needs a sampler)

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(scale=0.0, shift=0.0, rotation=0.0, rotation_prob=0.0, flip=False, half_body_prob=0.0,
                   colour=0.0, grey_prob=0.0, proposal_prob=0.0)


@dataclass
class SampleGeometry:
    """Crop geometry shared by SPPE and RMPE datasets."""

    input_size: tuple[int, int]  # (h, w)
    heatmap_size: tuple[int, int]  # (h, w)
    sigma: float = 1.0  # target σ in heatmap pixels
    box_scale: float = 1.25
    layout: str = "coco17"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    context: float = 1.0  # RMPE: context crop = proposal × context, at input_size × context

    @property
    def codec(self) -> HeatmapCodec:
        """Target encoding (half-pixel centres, the trained SPPEs' mapping; ``SPPEModelSpec.codec``)."""
        return HeatmapCodec(tuple(self.input_size), tuple(self.heatmap_size), float(self.sigma))

    @property
    def aspect(self) -> float:
        return self.input_size[1] / self.input_size[0]

    @property
    def context_size(self) -> tuple[int, int]:
        return (int(round(self.input_size[0] * self.context)), int(round(self.input_size[1] * self.context)))


def load_coco(path: str | Path) -> dict:
    """Parsed COCO keypoints JSON (UserError when missing or malformed)."""
    from core.evaluation.coco_eval import read_json

    data = read_json(path, "annotations")
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise UserError(f"{path}: not a COCO keypoints file (needs 'images' and 'annotations')")
    return data


def box_to_centre_size(box_xywh, aspect: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) and (w, h) of a person box grown to ``aspect`` (w/h) and scaled.

    Box edges are pixel edges (COCO), so the centre in pixel-centre coordinates is x + w/2 − ½.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    centre = np.array([x + w / 2 - 0.5, y + h / 2 - 0.5])
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return centre, np.array([w, h]) * scale


def crop_theta(centre, size_wh, rotation_rad: float, out_size, flip: bool = False) -> np.ndarray:
    """θ [2, 3] crop px → image px for a (w, h) box at ``centre`` rotated by ``rotation_rad``;
    ``flip`` mirrors the crop (u → w − 1 − u)."""
    theta = roi_to_affine(np.asarray(centre, np.float64)[None], np.asarray(size_wh, np.float64)[None],
                          np.array([rotation_rad]), out_size)[0]
    if flip:
        w = out_size[1]
        mirror = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        theta = theta @ mirror
    return theta


compose = affine_compose  # a ∘ b for affine [2, 3] maps (core/geometry.py)


def warp(image: np.ndarray, theta: np.ndarray, out_size) -> np.ndarray:
    """Crop ``image`` through θ (crop px → image px) with bilinear sampling and zero padding."""
    h, w = out_size
    return cv2.warpAffine(image, theta.astype(np.float64), (int(w), int(h)),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


def colour_jitter(crop: np.ndarray, rng: np.random.Generator, amount: float, grey_prob: float) -> np.ndarray:
    """Brightness, contrast and saturation jitter (float RGB in [0, 1])."""
    if amount > 0:
        b, c, s = rng.uniform(1 - amount, 1 + amount, 3)
        grey = crop.mean(axis=2, keepdims=True)
        crop = grey + (crop - grey) * s
        crop = (crop - crop.mean()) * c + crop.mean()
        crop = crop * b
    if grey_prob > 0 and rng.random() < grey_prob:
        crop = np.repeat(crop.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(crop, 0.0, 1.0)


class CocoKeypoints(Dataset):
    """Person samples of a COCO keypoints file.

    images_dir    folder the ``file_name`` entries are relative to
    annotations   COCO keypoints JSON path
    geometry      crop / heatmap geometry
    augment       AugmentConfig (``AugmentConfig.none()`` for evaluation)
    proposals     optional PGPG sampler (``.sample(keypoints [K, 3], box_xywh, rng) -> box_xywh``)
    cache_images  keep decoded images in memory (small datasets)
    """

    def __init__(self, images_dir: str | Path, annotations: str | Path, geometry: SampleGeometry,
                 augment: AugmentConfig | None = None, proposals=None, min_keypoints: int = 1,
                 cache_images: bool = True, seed: int = 0):
        self.images_dir = Path(images_dir)
        self.annotation_path = Path(annotations)
        self.data = load_coco(annotations)
        self.geometry = geometry
        self.augment = augment or AugmentConfig.none()
        self.proposals = proposals
        self.cache_images = cache_images
        self.seed = int(seed)
        self.epoch = 0
        self.skeleton = get_skeleton(geometry.layout)
        self.num_keypoints = self.skeleton.num_keypoints
        self.images = {img["id"]: img for img in self.data["images"]}
        self.samples = []
        for ann in self.data["annotations"]:
            kp = np.asarray(ann.get("keypoints", []), dtype=np.float64)
            if ann.get("iscrowd", 0) or kp.size != 3 * self.num_keypoints:
                continue
            kp = kp.reshape(self.num_keypoints, 3)
            if int((kp[:, 2] > 0).sum()) < min_keypoints or ann["bbox"][2] < 2 or ann["bbox"][3] < 2:
                continue
            if ann["image_id"] not in self.images:
                raise UserError(f"{annotations}: annotation {ann.get('id')} refers to a missing image")
            self.samples.append(ann)
        if not self.samples:
            raise UserError(f"{annotations}: no person with at least {min_keypoints} labelled keypoints")
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def load_image(self, image_id: int) -> np.ndarray:
        """RGB uint8 image (cached when ``cache_images``)."""
        if image_id in self._cache:
            return self._cache[image_id]
        info = self.images[image_id]
        path = self.images_dir / info["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise UserError(f"cannot read image {path}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.cache_images:
            self._cache[image_id] = image
        return image

    # ------------------------------------------------------------------------------ geometry

    def _person_box(self, ann: dict, kp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        box = np.asarray(ann["bbox"], dtype=np.float64)
        a = self.augment
        if self.proposals is not None and a.proposal_prob > 0 and rng.random() < a.proposal_prob:
            box = np.asarray(self.proposals.sample(kp, box, rng), dtype=np.float64)
        return box

    def _half_body(self, kp: np.ndarray, rng: np.random.Generator):
        """(centre, (w, h)) of the upper or lower body's visible joints, or None."""
        vis = kp[:, 2] > 0
        if self.geometry.layout != "coco17" or vis.sum() < self.augment.half_body_min_keypoints:
            return None
        upper = [i for i in UPPER_BODY_COCO if vis[i]]
        lower = [i for i in LOWER_BODY_COCO if vis[i]]
        part = upper if (rng.random() < 0.5 and len(upper) > 2) or len(lower) <= 2 else lower
        if len(part) < 2:
            return None
        pts = kp[part, :2]
        lo, hi = pts.min(0), pts.max(0)
        centre = (lo + hi) / 2
        w, h = hi - lo
        aspect = self.geometry.aspect
        if w > aspect * h:
            h = w / aspect
        else:
            w = h * aspect
        return centre, np.array([w, h]) * 1.5

    def _augmented_box(self, ann, kp, rng):
        """(centre, size_wh, rotation, flip) of the training crop, and the proposal box used."""
        g, a = self.geometry, self.augment
        box = self._person_box(ann, kp, rng)
        centre, size = box_to_centre_size(box, g.aspect, g.box_scale)
        if a.half_body_prob > 0 and rng.random() < a.half_body_prob:
            half = self._half_body(kp, rng)
            if half is not None:
                centre, size = half
        if a.scale > 0:
            size = size * float(np.clip(rng.normal(1.0, a.scale), 1 - a.scale, 1 + a.scale))
        if a.shift > 0:
            centre = centre + np.clip(rng.normal(0.0, a.shift, 2), -2 * a.shift, 2 * a.shift) * size
        rotation = 0.0
        if a.rotation > 0 and rng.random() < a.rotation_prob:
            rotation = float(np.deg2rad(np.clip(rng.normal(0.0, a.rotation), -2 * a.rotation, 2 * a.rotation)))
        flip = bool(a.flip and rng.random() < 0.5)
        return centre, size, rotation, flip

    def _keypoints_in(self, kp: np.ndarray, theta: np.ndarray, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints in the crop of θ (joint order swapped when mirrored) and their labelled flag."""
        xy = image_to_crop(kp[None, :, :2], theta[None])[0]
        vis = kp[:, 2] > 0
        if flip:
            perm = self.skeleton.flip_index
            xy, vis = xy[perm], vis[perm]
        return xy, vis

    def _targets(self, xy_crop: np.ndarray, vis: np.ndarray):
        g = self.geometry
        h, w = g.input_size
        inside = vis & (xy_crop[:, 0] >= -0.5) & (xy_crop[:, 0] <= w - 0.5) & (xy_crop[:, 1] >= -0.5) \
            & (xy_crop[:, 1] <= h - 0.5)
        return g.codec.encode(xy_crop, inside)

    def _to_tensor(self, crop_uint8: np.ndarray, rng: np.random.Generator | None,
                   normalise: bool = True) -> torch.Tensor:
        crop = crop_uint8.astype(np.float32) * (1.0 / 255.0)
        if rng is not None and (self.augment.colour > 0 or self.augment.grey_prob > 0):
            crop = colour_jitter(crop, rng, self.augment.colour, self.augment.grey_prob)
        if normalise:
            crop = (crop - np.asarray(self.geometry.mean, np.float32)) / np.asarray(self.geometry.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32))

    # ------------------------------------------------------------------------------ samples

    def __getitem__(self, index: int) -> dict:
        ann = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        kp = np.asarray(ann["keypoints"], np.float64).reshape(self.num_keypoints, 3)
        image = self.load_image(ann["image_id"])
        g = self.geometry
        centre, size, rotation, flip = self._augmented_box(ann, kp, rng)
        theta = crop_theta(centre, size, rotation, g.input_size, flip)
        xy, vis = self._keypoints_in(kp, theta, flip)
        targets, weights = self._targets(xy, vis)
        sample = {
            "theta": torch.from_numpy(theta),  # crop px → image px (float64)
            "target": torch.from_numpy(targets), "target_weight": torch.from_numpy(weights),
            "image_id": ann["image_id"], "ann_id": ann["id"], "flip": flip,
            "box_score": float(ann.get("score", 1.0)),
        }
        jitter_rng = rng if self.augment.colour > 0 or self.augment.grey_prob > 0 else None
        if g.context <= 1.0:
            sample["image"] = self._to_tensor(warp(image, theta, g.input_size), jitter_rng)
            return sample
        # RMPE: context crop around the proposal, STN box θ inside it, centre-located targets.
        ctx_size = g.context_size
        theta_ctx = crop_theta(centre, size * g.context, rotation, ctx_size, flip)
        theta_box = compose(invert_affine(theta_ctx[None])[0], theta)  # crop px → context px
        gt_centre, gt_size = box_to_centre_size(ann["bbox"], g.aspect, g.box_scale)
        theta_ideal = crop_theta(gt_centre, gt_size, rotation, g.input_size, flip)
        xy_c, vis_c = self._keypoints_in(kp, theta_ideal, flip)
        centred, centred_w = self._targets(xy_c, vis_c)
        sample.update({
            # RGB in [0, 1]: the STN crops it, then the crop is normalised (zero padding = black,
            # as in the estimator's crops)
            "image": self._to_tensor(warp(image, theta_ctx, ctx_size), jitter_rng, normalise=False),
            "theta": torch.from_numpy(theta_ctx),  # context px → image px
            "theta_box": torch.from_numpy(theta_box),
            "centred_target": torch.from_numpy(centred), "centred_weight": torch.from_numpy(centred_w),
            # the ideal crop (GT box) in context px: what a perfect STN would produce
            "theta_centred": torch.from_numpy(compose(invert_affine(theta_ctx[None])[0], theta_ideal)),
        })
        return sample


def collate(samples: list[dict]) -> dict:
    """Stack tensors, keep the rest as lists."""
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out
