"""Parametric pose NMS: duplicates collapse and merge, neighbours survive, both presets."""
from __future__ import annotations

import numpy as np
import pytest

from bench.reference_numpy import pose_nms_reference
from core.errors import UserError
from core.pose_nms import PRESETS, get_params, pose_nms, pose_nms_arrays
from core.poses import Poses
from core.skeleton import BLAZEPOSE33

# A standing COCO-17 person of height 1 (x centred on 0, y down from the top of the head).
TEMPLATE = np.array([(0, .07), (.02, .05), (-.02, .05), (.045, .06), (-.045, .06), (.11, .19), (-.11, .19),
                     (.14, .35), (-.14, .35), (.15, .49), (-.15, .49), (.08, .52), (-.08, .52), (.08, .74),
                     (-.08, .74), (.08, .96), (-.08, .96)])


def person(height: float, x: float, y: float = 0.0) -> np.ndarray:
    return TEMPLATE * height + [x, y]


def candidates(people_xy, copies, jitter, rng, k_conf=(0.6, 1.0), layout="coco17"):
    """Poses of jittered copies of each person (box = keypoint extent + 5 % of the height)."""
    kps, boxes, scores, who = [], [], [], []
    for p, xy in enumerate(people_xy):
        height = np.ptp(xy[:, 1]) / 0.91
        for _ in range(copies):
            c = xy + rng.normal(0, jitter * height, xy.shape)
            conf = rng.uniform(*k_conf, len(xy))
            pad = 0.05 * height
            kps.append(np.concatenate([c, conf[:, None]], 1))
            boxes.append([*(c.min(0) - pad), *(c.max(0) + pad)])
            scores.append(conf.mean())
            who.append(p)
    return Poses(np.array(boxes), np.array(kps), np.array(scores), layout=layout), np.array(who)


@pytest.mark.parametrize("preset, height, jitter", [
    ("paper", 50, 0.01), ("paper", 300, 0.01), ("paper", 2000, 0.01), ("paper", 300, 0.03),
    ("alphapose", 50, 0.01), ("alphapose", 150, 0.01),
])
def test_jittered_copies_collapse_to_one_merged_pose(preset, height, jitter, rng):
    poses, _ = candidates([person(height, 500)], 6, jitter, rng)
    out = pose_nms(poses, preset)
    assert len(out) == 1
    # The merged pose is the confidence-weighted mean of the copies' keypoints that lie within the
    # merge distance of the kept pose's keypoint; its score is Σc²/Σc.
    p = get_params(preset)
    kept = int(np.argmax(poses.scores if p.order == "score" else poses.keypoints[:, :, 2].mean(1)))
    xy, c = poses.keypoints[:, :, :2].astype(np.float64), poses.keypoints[:, :, 2].astype(np.float64)
    s = max(np.ptp(poses.boxes[kept, [0, 2]]), np.ptp(poses.boxes[kept, [1, 3]]))
    d = xy - xy[kept]
    if p.form == "paper":
        inside = (np.abs(d) <= 0.5 * p.part * s).all(-1)
    else:
        inside = np.linalg.norm(d, axis=-1) <= min(p.alpha * s, p.merge_cap)
    w = c * inside
    np.testing.assert_allclose(out.keypoints[0, :, :2], (w[..., None] * xy).sum(0) / w.sum(0)[:, None], rtol=1e-5)
    np.testing.assert_allclose(out.keypoints[0, :, 2], (w * c).sum(0) / w.sum(0), rtol=1e-5)
    # Merging copies brings the pose closer to the truth than the kept copy on its own.
    truth = person(height, 500)
    assert np.linalg.norm(out.keypoints[0, :, :2] - truth, axis=1).mean() < \
        np.linalg.norm(xy[kept] - truth, axis=1).mean()


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("gap", [0.3, 0.6])
def test_two_people_side_by_side_both_survive(preset, gap, rng):
    height = 150
    people = [person(height, 300), person(height, 300 + gap * height)]
    poses, who = candidates(people, 3, 0.01, rng)
    out = pose_nms(poses, preset)
    assert len(out) == 2
    owners = [np.argmin([np.linalg.norm(o[:, :2] - p, axis=1).mean() for p in people]) for o in out.keypoints]
    assert sorted(owners) == [0, 1]


def test_paper_preset_is_scale_invariant_and_alphapose_is_not(rng):
    poses, _ = candidates([person(200, 400), person(200, 480), person(200, 900)], 4, 0.02, rng)
    base = pose_nms(poses, "paper")
    assert len(base) == 3
    for factor in (0.25, 8.0):
        scaled = Poses(poses.boxes * factor, poses.keypoints * [factor, factor, 1], poses.scores)
        out = pose_nms(scaled, "paper")
        np.testing.assert_allclose(out.keypoints[..., :2], base.keypoints[..., :2] * factor, rtol=1e-5)
        np.testing.assert_allclose(out.keypoints[..., 2], base.keypoints[..., 2], rtol=1e-6)
    # The port's raw-pixel constants keep duplicates of large people (2 % jitter = 32 px at 1600 px).
    big = Poses(poses.boxes * 8, poses.keypoints * [8, 8, 1], poses.scores)
    assert len(pose_nms(big, "alphapose")) > 3


@pytest.mark.parametrize("preset", list(PRESETS))
def test_deterministic_and_independent_of_input_order(preset, rng):
    people = [person(120, x) for x in (100, 160, 400, 700)]
    poses, _ = candidates(people, 4, 0.02, rng)
    first, second = pose_nms(poses, preset), pose_nms(poses, preset)
    np.testing.assert_array_equal(first.keypoints, second.keypoints)
    np.testing.assert_array_equal(first.scores, second.scores)
    perm = rng.permutation(len(poses))
    shuffled = pose_nms(poses.select(perm), preset)
    np.testing.assert_array_equal(shuffled.keypoints, first.keypoints)
    np.testing.assert_array_equal(shuffled.boxes, first.boxes)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_empty_input(preset):
    out = pose_nms(Poses.empty(), preset)
    assert len(out) == 0 and out.keypoints.shape == (0, 17, 3)
    out = pose_nms(Poses.empty(BLAZEPOSE33), preset)
    assert out.layout == BLAZEPOSE33 and out.keypoints.shape == (0, 33, 3)


def test_final_score_filter_and_person_scores(rng):
    poses, _ = candidates([person(150, 100), person(150, 600)], 1, 0.0, rng)
    poses.keypoints[1, :, 2] = 0.2  # every keypoint below scoreThreds = 0.3
    poses.scores[:] = [0.9, 0.95]
    out = pose_nms(poses, "paper")
    assert len(out) == 1 and out.scores[0] == np.float32(0.9)
    out = pose_nms(poses, "alphapose")
    kp = out.keypoints[0, :, 2]
    np.testing.assert_allclose(out.scores[0], (kp.mean() + 0.9 + 1.25 * kp.max()) / 3.25, rtol=1e-6)
    assert len(pose_nms(poses, "paper", score_threshold=0.1)) == 2


def test_zero_score_keypoints_merge_without_nan(rng):
    poses, _ = candidates([person(150, 100)], 3, 0.002, rng)
    poses.keypoints[:, 4, 2] = 0.0
    out = pose_nms(poses, "paper")
    assert len(out) == 1 and np.isfinite(out.keypoints).all()
    assert out.keypoints[0, 4, 2] == 0.0


def test_other_layouts_scale_the_threshold(rng):
    """With 33 keypoints η is scaled by 33/17, so two close people (17 % of the height apart) decide
    as they would with 17 keypoints; the unscaled threshold would merge them."""
    kp33 = np.concatenate([TEMPLATE, TEMPLATE[:16] + 0.01], 0)
    for layout, base in ((BLAZEPOSE33, kp33), ("coco17", TEMPLATE)):
        people = [base * 150 + [100, 0], base * 150 + [125.5, 0]]
        poses, _ = candidates(people, 3, 0.003, rng, layout=layout)
        out = pose_nms(poses, "paper")
        assert len(out) == 2 and out.layout == layout
    people = [kp33 * 150 + [100, 0], kp33 * 150 + [125.5, 0]]
    poses, _ = candidates(people, 3, 0.003, rng, layout=BLAZEPOSE33)
    assert len(pose_nms(poses, "paper", eta=22.48 * 17 / 33)) == 1


def test_overrides_and_bad_presets(rng):
    poses, _ = candidates([person(150, 100)], 3, 0.01, rng)
    assert len(pose_nms(poses, "paper", eta=1e9)) == 3  # never similar enough: nothing eliminated
    with pytest.raises(UserError):
        pose_nms(poses, "soft")
    with pytest.raises(ValueError):
        pose_nms(poses, "paper", gamma=3.0)
    with pytest.raises(ValueError):
        get_params("paper", form="lua")


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("seed", range(4))
def test_matches_python_reference(preset, seed):
    """The numba implementation equals a plain NumPy/Python greedy loop on crowded random scenes."""
    rng = np.random.default_rng(seed)
    people = [person(rng.uniform(60, 400), rng.uniform(0, 800), rng.uniform(0, 300)) for _ in range(6)]
    poses, _ = candidates(people, 5, 0.03, rng, k_conf=(0.0, 1.0))
    params = get_params(preset, min_area=500.0 if seed % 2 else 0.0)
    kept, kp, sc = pose_nms_arrays(poses.keypoints, poses.boxes, poses.scores, params)
    ref_kept, ref_kp, ref_sc = pose_nms_reference(poses.keypoints, poses.boxes, poses.scores, params)
    np.testing.assert_array_equal(kept, ref_kept)
    np.testing.assert_allclose(kp, ref_kp, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(sc, ref_sc, rtol=1e-12)


def test_paper_match_rule_override_is_scale_normalised(rng):
    """match_count > 0 in the paper form counts keypoints within alpha·S (no pixel cap)."""
    a = person(1000, 0)
    b = a.copy()
    b[:8] += 300  # 9 keypoints identical, 8 far: the similarity stays below η
    poses = Poses(np.array([[*a.min(0), *a.max(0)]] * 2), np.stack([np.c_[a, np.ones(17)], np.c_[b, np.ones(17)]]),
                  np.array([0.9, 0.8]))
    assert len(pose_nms(poses, "paper")) == 2
    assert len(pose_nms(poses, "paper", match_count=9)) == 1
    assert len(pose_nms(poses, "paper", match_count=10)) == 2
    small = Poses(poses.boxes / 100, poses.keypoints * [0.01, 0.01, 1], poses.scores)
    assert len(pose_nms(small, "paper", match_count=9)) == 1


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("k_conf", [(0.6, 1.0), (0.99, 1.0)])
def test_person_scores_stay_in_unit_range(preset, k_conf, rng):
    """Person scores are [0, 1] whatever the preset: the app's NMS preset control once turned
    'alphapose' scores of 0.97 (one person, NMS skipped) into ~3 as soon as a second person came
    into view (the port's mean + box + 1.25·max, unscaled)."""
    poses, _ = candidates([person(150, 100), person(150, 600), person(150, 1100)], 3, 0.005, rng, k_conf=k_conf)
    poses.scores[:] = 1.0  # the largest box score a detector can give
    out = pose_nms(poses, preset)
    assert len(out) == 3
    assert ((out.scores >= 0) & (out.scores <= 1)).all(), out.scores
    if preset == "alphapose" and k_conf[0] > 0.9:  # near-perfect people score near 1, not 3
        assert out.scores.min() > 0.95
