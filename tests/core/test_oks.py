"""core.oks.compute_oks against pycocotools' COCOeval.computeOks (the oracle), to 1e-12."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from core.oks import compute_oks, keypoint_similarity
from core.skeleton import coco_sigmas

K = 17


def random_gt(rng, n: int):
    """n ground truths: keypoints [n, K, 3] with v ∈ {0, 1, 2} (v=0 at x=y=0, as COCO stores them),
    the last one with no labelled keypoint at all; boxes [n, 4] xywh; areas [n]."""
    xy = rng.uniform(50, 450, (n, K, 2))
    v = rng.choice([0, 1, 2], (n, K), p=[0.3, 0.2, 0.5]).astype(np.float64)
    v[-1] = 0
    xy[v == 0] = 0
    boxes = np.concatenate([rng.uniform(20, 300, (n, 2)), rng.uniform(30, 200, (n, 2))], 1)
    areas = boxes[:, 2] * boxes[:, 3] * rng.uniform(0.4, 0.9, n)
    return np.concatenate([xy, v[..., None]], -1), boxes, areas


def coco_oks(gt_kp, gt_boxes, gt_areas, dt_kp, dt_scores) -> np.ndarray:
    """OKS [D, G] from pycocotools on a real in-memory COCO object (detections sorted by score)."""
    dataset = {
        "images": [{"id": 1, "width": 640, "height": 480}],
        "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(K)], "skeleton": []}],
        "annotations": [
            {"id": g + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [float(x) for x in gt_boxes[g]],
             "area": float(gt_areas[g]), "keypoints": [float(x) for x in gt_kp[g].reshape(-1)],
             "num_keypoints": int((gt_kp[g, :, 2] > 0).sum())}
            for g in range(len(gt_kp))],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "score": float(s),
                          "keypoints": [float(x) for x in kp.reshape(-1)]} for kp, s in zip(dt_kp, dt_scores)])
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.imgIds = [1]
        ev._prepare()
        return np.asarray(ev.computeOks(1, 1))


@pytest.mark.parametrize("seed", range(6))
def test_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    gt_kp, gt_boxes, gt_areas = random_gt(rng, int(rng.integers(2, 6)))
    d = int(rng.integers(1, 12))
    dt_xy = rng.uniform(0, 500, (d, K, 2))
    near = rng.integers(0, len(gt_kp), d)  # most detections near a GT, so OKS spans (0, 1)
    close = rng.random(d) < 0.7
    dt_xy[close] = gt_kp[near[close], :, :2] + rng.normal(0, 8, (close.sum(), K, 2))
    dt_scores = np.sort(rng.uniform(0.1, 1.0, d))[::-1]
    dt_kp = np.concatenate([dt_xy, rng.uniform(0, 1, (d, K, 1))], -1)
    expected = coco_oks(gt_kp, gt_boxes, gt_areas, dt_kp, dt_scores)
    got = compute_oks(dt_kp, gt_kp, gt_areas, gt_boxes)
    assert got.shape == expected.shape == (d, len(gt_kp))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert got[:, -1].max() > 0  # the no-keypoint GT took the 3×-box branch
    np.testing.assert_allclose(compute_oks(dt_xy, gt_kp, gt_areas, gt_boxes), expected, rtol=0, atol=1e-12)


def test_empty_and_missing_boxes(rng):
    gt_kp, gt_boxes, gt_areas = random_gt(rng, 3)
    assert compute_oks(np.zeros((0, K, 3)), gt_kp, gt_areas, gt_boxes).shape == (0, 3)
    assert compute_oks(np.zeros((2, K, 3)), gt_kp[:0], gt_areas[:0]).shape == (2, 0)
    with pytest.raises(ValueError):
        compute_oks(np.zeros((2, K, 3)), gt_kp, gt_areas)  # last GT has no visible keypoint
    self_oks = compute_oks(gt_kp[:2, :, :2], gt_kp[:2], gt_areas[:2])
    np.testing.assert_allclose(np.diag(self_oks), 1.0, rtol=0, atol=1e-15)


def test_keypoint_similarity_formula():
    d2 = np.array([[0.0, 100.0]])
    ks = keypoint_similarity(np.pad(d2, ((0, 0), (0, K - 2))), np.array([400.0]))
    var = (2 * coco_sigmas()[:2]) ** 2
    np.testing.assert_allclose(ks[0, :2], np.exp(-d2[0] / var / (400 + np.spacing(1)) / 2), rtol=1e-15)
