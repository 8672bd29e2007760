"""Similarity functions against oracles: pycocotools' box IoU and core.oks.compute_oks."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from core.errors import UserError
from core.oks import compute_oks
from core.skeleton import BLAZEPOSE33, COCO17, get_skeleton
from trackers.distances import (DISTANCES, PoseSet, iou_similarity, l2_similarity, layout_sigmas,
                                make_similarity, oks_similarity)


def random_set(rng, n, k=17, var=0.0):
    lo = rng.uniform(0, 400, (n, 2))
    boxes = np.concatenate([lo, lo + rng.uniform(40, 200, (n, 2))], 1)
    xy = lo[:, None] + rng.uniform(0, 1, (n, k, 2)) * (boxes[:, None, 2:] - lo[:, None])
    return PoseSet(boxes, xy, np.ones((n, k), bool), np.full(n, var))


def test_iou_matches_pycocotools(rng):
    det, trk = random_set(rng, 7), random_set(rng, 5)
    xywh = lambda b: np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)  # noqa: E731
    expected = mask_utils.iou(xywh(det.boxes), xywh(trk.boxes), np.zeros(5, np.uint8))
    np.testing.assert_allclose(iou_similarity(det, trk), expected, atol=1e-12)


def test_oks_matches_compute_oks_with_track_area(rng):
    """Without position uncertainty, the OKS is pycocotools' with the track as ground truth and
    its box area as the area."""
    det, trk = random_set(rng, 6), random_set(rng, 4)
    gt = np.concatenate([trk.xy, np.full(trk.xy.shape[:2] + (1,), 2.0)], -1)
    expected = compute_oks(det.xy, gt, trk.areas)
    np.testing.assert_allclose(oks_similarity(det, trk, layout_sigmas(COCO17)), expected, atol=1e-12)


def test_oks_uses_only_keypoints_valid_in_both(rng):
    det, trk = random_set(rng, 1), random_set(rng, 1)
    trk = trk._replace(xy=det.xy.copy())
    far = det.xy.copy()
    far[0, :5] += 500  # five keypoints way off ...
    valid = np.ones((1, 17), bool)
    valid[0, :5] = False  # ... but flagged unusable
    det2 = det._replace(xy=far, valid=valid)
    assert oks_similarity(det2, trk, layout_sigmas(COCO17))[0, 0] == pytest.approx(1.0)
    assert oks_similarity(det2._replace(valid=np.ones((1, 17), bool)), trk, layout_sigmas(COCO17))[0, 0] < 0.75


@pytest.mark.parametrize("fn", [lambda d, t: oks_similarity(d, t, layout_sigmas(COCO17)), l2_similarity])
def test_position_uncertainty_widens_the_match(rng, fn):
    det, trk = random_set(rng, 1), random_set(rng, 1)
    trk = trk._replace(xy=det.xy + 40.0)
    sure = fn(det, trk)[0, 0]
    unsure = fn(det, trk._replace(var=np.array([60.0 ** 2])))[0, 0]
    assert unsure > sure + 0.1


@pytest.mark.parametrize("name", DISTANCES)
@pytest.mark.parametrize("layout", [COCO17, BLAZEPOSE33])
def test_similarities_rank_the_right_pose_first(rng, name, layout):
    k = get_skeleton(layout).num_keypoints
    trk = random_set(rng, 4, k)
    noisy = trk.xy + rng.normal(0, 2, trk.xy.shape)
    det = PoseSet(trk.boxes + rng.normal(0, 2, trk.boxes.shape), noisy, trk.valid, np.zeros(4))
    sim = make_similarity(name, layout)(det, trk)
    assert sim.shape == (4, 4)
    assert np.all((sim >= 0) & (sim <= 1))
    assert np.all(np.argmax(sim, axis=1) == np.arange(4))


def test_no_shared_keypoint_falls_back_to_iou(rng):
    det, trk = random_set(rng, 3), random_set(rng, 2)
    det = det._replace(valid=np.zeros_like(det.valid))
    np.testing.assert_allclose(oks_similarity(det, trk, layout_sigmas(COCO17)), iou_similarity(det, trk))


def test_blazepose_sigmas_borrow_coco_values():
    s = layout_sigmas(BLAZEPOSE33)
    names = get_skeleton(BLAZEPOSE33).names
    coco = dict(zip(get_skeleton(COCO17).names, get_skeleton(COCO17).sigmas))
    assert s[names.index("left_hip")] == coco["left_hip"]
    assert s[names.index("left_heel")] == coco["left_ankle"]
    assert s[names.index("right_pinky")] == coco["right_wrist"]
    assert s[names.index("left_eye_inner")] == coco["left_eye"]
    assert np.all(s > 0)


def test_unknown_distance_is_a_user_error():
    with pytest.raises(UserError, match="tracking.distance"):
        make_similarity("cosine", COCO17)
