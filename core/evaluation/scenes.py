"""Synthetic COCO keypoint ground truth: several people per image, some overlapping, some partly
annotated. For tests, demos and synthesiser statistics; no image pixels are involved."""
from __future__ import annotations

import numpy as np

from core.evaluation.coco_eval import person_category
from core.evaluation.synthesis import synthesize_results

# Standing person facing the camera, unit height, y down; the person's left is image +x.
_TEMPLATE = np.array([
    [0.00, -0.42], [0.03, -0.44], [-0.03, -0.44], [0.07, -0.42], [-0.07, -0.42],
    [0.13, -0.28], [-0.13, -0.28], [0.17, -0.11], [-0.17, -0.11], [0.19, 0.04], [-0.19, 0.04],
    [0.09, 0.05], [-0.09, 0.05], [0.10, 0.27], [-0.10, 0.27], [0.10, 0.48], [-0.10, 0.48],
])
_ARMS = (7, 8, 9, 10)  # elbows, wrists


def _poses(rng: np.random.Generator, heights: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """[..., 17, 2] random people: front, back (mirrored) or side (squeezed) views, some with raised arms."""
    shape = heights.shape
    pts = np.broadcast_to(_TEMPLATE, shape + _TEMPLATE.shape).copy()
    view = rng.choice(3, size=shape, p=(0.45, 0.35, 0.2))
    side = rng.choice((-0.3, 0.3), size=shape)
    pts[..., 0] *= np.select([view == 0, view == 1], [1.0, -1.0], side)[..., None]
    raised = rng.random(shape) < 0.5  # wrists more than elbows
    pts[..., _ARMS, 1] -= raised[..., None] * rng.uniform(0.0, 0.35, shape + (4,)) * np.array([0.5, 0.5, 1.0, 1.0])
    pts += rng.normal(0.0, 0.02, size=pts.shape)
    return pts * heights[..., None, None] + centres[..., None, :]


def random_people(rng: np.random.Generator, num_images: int, people=(1, 5), overlap: float = 0.35,
                  image_size=(640, 480), heights=(90.0, 300.0), profiles=(0.7, 0.15, 0.15)):
    """Padded arrays of random people (vectorised; see :func:`random_scenes` for the parameters).

    Returns keypoints [I, P, 17, 3] (v = 2 or 0, x = y = 0 where not annotated), areas [I, P],
    boxes [I, P, 4] x, y, w, h and present [I, P].
    """
    W, H = image_size
    I, P = num_images, people[1]
    present = np.arange(P)[None] < rng.integers(people[0], people[1] + 1, I)[:, None]
    h = rng.uniform(*heights, (I, P))
    cx, cy = rng.uniform(0.1 * W, 0.9 * W, (I, P)), rng.uniform(0.3 * H, 0.7 * H, (I, P))
    rows = np.arange(I)
    for p in range(1, P):  # next to someone already placed, with chance `overlap`
        near = rng.random(I) < overlap
        a = rng.integers(0, p, I)
        hn = np.clip(h[rows, a] * rng.uniform(0.8, 1.2, I), *heights)
        h[:, p] = np.where(near, hn, h[:, p])
        cx[:, p] = np.where(near, cx[rows, a] + rng.choice((-1, 1), I) * rng.uniform(0.12, 0.45, I) * hn, cx[:, p])
        cy[:, p] = np.where(near, cy[rows, a] + rng.uniform(-0.1, 0.1, I) * hn, cy[:, p])
    xy = np.round(_poses(rng, h, np.stack([cx, cy], -1)), 2)
    profile = rng.choice(3, size=(I, P), p=profiles)
    keep = np.select([profile == 1, profile == 2], [rng.integers(6, 11, (I, P)), rng.integers(1, 6, (I, P))], 17)
    rank = rng.random((I, P, 17)).argsort(-1).argsort(-1)  # a random permutation rank per joint
    vis = np.where((profile == 0)[..., None], rng.random((I, P, 17)) < 0.95, rank < keep[..., None])
    vis &= present[..., None]
    lo, hi = xy.min(-2) - 0.08 * h[..., None], xy.max(-2) + 0.08 * h[..., None]
    boxes = np.round(np.concatenate([lo, hi - lo], -1), 2)
    areas = np.round(0.55 * (hi - lo).prod(-1), 2)
    kp = np.where(vis[..., None], np.concatenate([xy, np.full(xy.shape[:-1] + (1,), 2.0)], -1), 0.0)
    return kp, areas, boxes, present


def random_scenes(rng: np.random.Generator, num_images: int, people=(1, 5), overlap: float = 0.35,
                  image_size=(640, 480), heights=(90.0, 300.0), profiles=(0.7, 0.15, 0.15),
                  first_image_id: int = 0) -> dict:
    """A COCO keypoints dataset of random scenes (image ids = frame indices from ``first_image_id``).

    ``people``: min and max people per image; ``overlap``: chance that a person stands next to
    someone already placed; ``profiles``: chances that a person is mostly annotated (each joint
    with p 0.95), has 6–10 or 1–5 annotated joints.
    """
    W, H = image_size
    kp, areas, boxes, present = random_people(rng, num_images, people, overlap, image_size, heights, profiles)
    images = [{"id": first_image_id + i, "width": W, "height": H, "file_name": f"{first_image_id + i:06d}.jpg"}
              for i in range(num_images)]
    anns = []
    for i, p in zip(*np.nonzero(present)):
        anns.append({"id": len(anns) + 1, "image_id": first_image_id + int(i), "category_id": 1, "iscrowd": 0,
                     "keypoints": kp[i, p].reshape(-1).tolist(), "num_keypoints": int((kp[i, p, :, 2] > 0).sum()),
                     "bbox": boxes[i, p].tolist(), "area": float(areas[i, p])})
    return {"info": {"description": "RMPE-Live synthetic scenes"}, "images": images, "annotations": anns,
            "categories": [person_category()]}


def synthetic_benchmark(rng: np.random.Generator, num_images: int = 100, miss_people: float = 0.05,
                        background_per_image: float = 0.3, score_noise: float = 0.15, **scene_kw):
    """GT scenes plus results with every error class: keypoint errors (PoseFix synthesiser), noisy
    scores, missed people (false negatives) and background detections (false positives).

    Returns (gt dataset, results list, injected labels [N, K] with -1 rows for background detections).
    """
    gt = random_scenes(rng, num_images, **scene_kw)
    results, labels, _ = synthesize_results(gt, rng, score_noise=score_noise)
    keep = rng.random(len(results)) >= miss_people
    results = [r for r, k in zip(results, keep) if k]
    labels = labels[keep]
    W, H = scene_kw.get("image_size", (640, 480))
    extra = []
    for img in gt["images"]:
        for _ in range(int(rng.poisson(background_per_image))):
            # Background detections sit in a band below the people region, clear of every person.
            xy = _poses(rng, np.asarray(rng.uniform(40, 90)), np.asarray([rng.uniform(0.1 * W, 0.9 * W), 1.4 * H]))
            kp = np.concatenate([xy, rng.uniform(0.2, 0.9, (17, 1))], 1)
            extra.append({"image_id": img["id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                          "score": float(rng.uniform(0.05, 0.8))})
    labels = np.concatenate([labels, np.full((len(extra), labels.shape[1]), -1, np.int8)])
    return gt, results + extra, labels
