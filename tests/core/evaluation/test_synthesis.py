"""PoseFix error synthesiser: the probability table, conditions, feasibility, displacement rule and the
empirical frequencies over a large sample."""
from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.scenes import random_people
from core.evaluation.synthesis import ErrorSynthesizer, table_probabilities
from core.evaluation.taxonomy import ERROR_NAMES, GOOD, INVERSION, JITTER, MISS, SWAP, displacement_for_ks
from core.skeleton import COCO17, get_skeleton

NAMES = get_skeleton(COCO17).names
SIGMAS = get_skeleton(COCO17).sigmas
FLIP = get_skeleton(COCO17).flip_index

# FACTS.md, transcribed independently of the implementation: (type, condition) -> groups A/B/C.
FACE = {"nose", "left_eye", "right_eye", "left_ear", "right_ear"}
UPPER = {"left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist"}
LOWER = {"left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"}
FACT_GROUPS = {
    "jitter": [{"nose", "left_knee", "right_knee", "left_ankle", "right_ankle"}, (FACE - {"nose"}) | UPPER,
               {"left_hip", "right_hip"}],
    "miss": [FACE, {"left_shoulder", "right_shoulder", "left_ankle", "right_ankle"},
             set(NAMES) - FACE - {"left_shoulder", "right_shoulder", "left_ankle", "right_ankle"}],
    "inversion": [FACE, UPPER, LOWER],
    "swap": [FACE, UPPER, LOWER],
}
FACT_TABLE = {
    ("jitter", "<=10 valid"): (0.15, 0.20, 0.25), ("jitter", "otherwise"): (0.10, 0.15, 0.20),
    ("miss", "<=5 valid"): (0.15, 0.20, 0.25), ("miss", "<=10 valid"): (0.10, 0.13, 0.15),
    ("miss", "otherwise"): (0.02, 0.05, 0.10),
    ("inversion", "always"): (0.01, 0.03, 0.06),
    ("swap", "crowded"): (0.02, 0.15, 0.10), ("swap", "otherwise"): (0.01, 0.06, 0.03),
}
CODES = {"jitter": JITTER, "inversion": INVERSION, "swap": SWAP, "miss": MISS}


def fact_condition(error: str, num_valid, crowded):
    num_valid, crowded = np.asarray(num_valid), np.asarray(crowded, bool)
    if error == "jitter":
        return np.where(num_valid <= 10, "<=10 valid", "otherwise")
    if error == "miss":
        return np.where(num_valid <= 5, "<=5 valid", np.where(num_valid <= 10, "<=10 valid", "otherwise"))
    if error == "inversion":
        return np.full(num_valid.shape, "always")
    return np.where(crowded, "crowded", "otherwise")


def fact_group(error: str, joint: int) -> int:
    return next(g for g, members in enumerate(FACT_GROUPS[error]) if NAMES[joint] in members)


def fact_probability(error: str, joint: int, num_valid: int, crowded: bool) -> float:
    return FACT_TABLE[error, str(fact_condition(error, num_valid, crowded))][fact_group(error, joint)]


TABLE_ROWS = [  # (error, joint, valid joints, crowded)
    ("jitter", "nose", 17, False), ("jitter", "nose", 10, False), ("jitter", "left_knee", 4, True),
    ("jitter", "left_eye", 17, False), ("jitter", "right_ear", 9, False), ("jitter", "right_wrist", 12, True),
    ("jitter", "left_hip", 8, False), ("jitter", "right_hip", 11, False),
    ("miss", "nose", 5, False), ("miss", "left_ear", 8, False), ("miss", "right_eye", 11, False),
    ("miss", "left_shoulder", 4, False), ("miss", "right_ankle", 9, False), ("miss", "left_ankle", 17, False),
    ("miss", "left_elbow", 3, False), ("miss", "right_knee", 10, False), ("miss", "left_hip", 17, False),
    ("inversion", "left_ear", 17, False), ("inversion", "left_wrist", 3, True), ("inversion", "right_knee", 12, False),
    ("swap", "nose", 8, True), ("swap", "left_elbow", 8, True), ("swap", "left_ankle", 8, True),
    ("swap", "nose", 17, False), ("swap", "left_shoulder", 17, False), ("swap", "left_hip", 17, False),
]


@pytest.mark.parametrize("error,joint,num_valid,crowded", TABLE_ROWS)
def test_table_probability(error, joint, num_valid, crowded):
    k = NAMES.index(joint)
    p = table_probabilities(np.asarray(num_valid), np.asarray(crowded))
    assert p[k, CODES[error]] == pytest.approx(fact_probability(error, k, num_valid, crowded), abs=1e-15)
    others = sum(fact_probability(e, k, num_valid, crowded) for e in CODES)
    assert p[k, GOOD] == pytest.approx(1.0 - others, abs=1e-12)


def _person(xy_offset, visible=17):
    base = np.array([
        [0.00, -0.42], [0.03, -0.44], [-0.03, -0.44], [0.07, -0.42], [-0.07, -0.42],
        [0.13, -0.28], [-0.13, -0.28], [0.17, -0.11], [-0.17, -0.11], [0.19, 0.04], [-0.19, 0.04],
        [0.09, 0.05], [-0.09, 0.05], [0.10, 0.27], [-0.10, 0.27], [0.10, 0.48], [-0.10, 0.48],
    ]) * 200.0 + xy_offset
    kp = np.concatenate([base, np.full((17, 1), 2.0)], 1)
    kp[visible:] = 0.0
    return kp


@pytest.mark.parametrize("num_valid,num_overlap,crowded", [
    (10, 1, True), (10, 0, False), (11, 1, False), (11, 2, False), (15, 3, True), (15, 2, False),
    (16, 3, False), (5, 1, True), (17, 4, False),
])
def test_crowded_condition(num_valid, num_overlap, crowded):
    offsets = [(300.0, 300.0)] + [(300.0 + 25.0 * (i + 1), 310.0) for i in range(num_overlap)]
    offsets += [(1500.0 + 300.0 * i, 300.0) for i in range(2)]  # far away: no overlap
    kp = np.stack([_person(offsets[0], num_valid)] + [_person(o) for o in offsets[1:]])
    full = np.stack([_person(o)[:, :2] for o in offsets])  # whole-body boxes, as a GT bbox would be
    boxes = np.concatenate([full.min(1), full.max(1) - full.min(1)], -1)
    g = ErrorSynthesizer().geometry(kp[None], np.full((1, len(offsets)), 0.55 * 90 * 220), boxes[None])
    assert g.num_valid[0, 0] == num_valid
    assert bool(g.crowded[0, 0]) is crowded


def test_infeasible_types_are_zeroed_and_renormalised():
    """An isolated, fully annotated person: no swap anywhere, no inversion for the nose."""
    syn = ErrorSynthesizer()
    kp = _person((300.0, 300.0))[None]
    r = syn(kp, [0.55 * 90 * 220], np.random.default_rng(0))
    assert not r.feasible[:, :, SWAP].any()
    assert not r.feasible[0, NAMES.index("nose"), INVERSION]
    for k in range(17):
        raw = {e: fact_probability(e, k, 17, False) for e in CODES}
        raw["good"] = 1.0 - sum(raw.values())
        kept = {e: v for e, v in raw.items() if e != "swap" and (e != "inversion" or k != 0)}
        total = sum(kept.values())
        for e in ERROR_NAMES:
            assert r.probabilities[0, k, ERROR_NAMES.index(e)] == pytest.approx(kept.get(e, 0.0) / total, abs=1e-12)
    # And a side view, where each left joint sits on its right counterpart, has no inversion at all.
    side = _person((300.0, 300.0))
    side[:, 0] = 300.0 + (side[:, 0] - 300.0) * 0.01
    g = syn.geometry(side[None, None], [[0.55 * 90 * 220]])
    assert not g.feasible[..., INVERSION].any()


def test_labels_positions_and_determinism():
    kp, areas, boxes, present = random_people(np.random.default_rng(1), 300, people=(2, 4), overlap=0.6)
    syn = ErrorSynthesizer()
    a = syn(kp, areas, np.random.default_rng(9), boxes=boxes, present=present)
    b = syn(kp, areas, np.random.default_rng(9), boxes=boxes, present=present)
    c = syn(kp, areas, np.random.default_rng(10), boxes=boxes, present=present)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (a.labels != c.labels).any()
    vis = (kp[..., 2] > 0) & present[..., None]
    np.testing.assert_array_equal(a.labels >= 0, vis)  # every annotated joint labelled, nothing else
    # Displacement rule: distance from the own joint in the ring of each label.
    dist = np.linalg.norm(a.keypoints - kp[..., :2], axis=-1)
    area = np.broadcast_to(areas[..., None], dist.shape)
    sig = np.broadcast_to(SIGMAS, dist.shape)

    def d(ks):
        return displacement_for_ks(ks, area, sig)

    for code, lo, hi in ((GOOD, 0.0, d(0.85)), (JITTER, d(0.85), d(0.5)), (MISS, d(0.5), d(0.1))):
        m = a.labels == code
        assert m.sum() > 50
        assert (dist[m] >= np.asarray(lo if np.isscalar(lo) else lo[m]) - 1e-9).all()
        assert (dist[m] <= hi[m] + 1e-9).all()
    # Inversions lie within d.50 of the counterpart, swaps within d.50 of some other person's joint.
    m = a.labels == INVERSION
    cp = np.take_along_axis(kp[..., :2], np.broadcast_to(FLIP[None, None, :, None], kp[..., :2].shape), axis=2)
    assert m.sum() > 20
    assert (np.linalg.norm(a.keypoints - cp, axis=-1)[m] <= d(0.5)[m] + 1e-9).all()
    assert (dist[m] > d(0.5)[m]).all()
    assert (dist[a.labels == SWAP] > d(0.5)[a.labels == SWAP]).all()


def test_frequencies_follow_the_table():
    """Large vectorised sample: empirical rate of each type per joint group and condition is within
    ±0.02 of the table after the renormalisation rule."""
    rng = np.random.default_rng(2024)
    syn = ErrorSynthesizer()
    rows = []
    for _ in range(3):
        kp, areas, boxes, present = random_people(rng, 4000, people=(2, 4), overlap=0.6,
                                                  profiles=(0.34, 0.33, 0.33))
        r = syn(kp, areas, rng, boxes=boxes, present=present)
        m = r.labels >= 0
        joint = np.broadcast_to(np.arange(17), m.shape)[m]
        nv = np.broadcast_to(r.num_valid[..., None], m.shape)[m]
        cr = np.broadcast_to(r.crowded[..., None], m.shape)[m]
        rows.append((r.labels[m], joint, nv, cr, r.feasible[m]))
    labels, joint, nv, cr, feasible = (np.concatenate(x) for x in zip(*rows))
    # Expected probability of every keypoint: the independent table, infeasible types zeroed, renormalised.
    raw = np.zeros((len(labels), 5))
    for e, code in CODES.items():
        cond = fact_condition(e, nv, cr)
        grp = np.asarray([fact_group(e, k) for k in range(17)])[joint]
        raw[:, code] = [FACT_TABLE[e, c][g] for c, g in zip(cond, grp)]
    raw[:, GOOD] = 1.0 - raw.sum(1)
    expected = np.where(feasible, raw, 0.0)
    expected /= expected.sum(1, keepdims=True)

    report, worst = [], 0.0
    for e, code in CODES.items():
        cond = fact_condition(e, nv, cr)
        grp = np.asarray([fact_group(e, k) for k in range(17)])[joint]
        for (err, c), values in FACT_TABLE.items():
            if err != e:
                continue
            for g in range(3):
                s = (cond == c) & (grp == g)
                assert s.sum() >= 2000, (e, c, g, s.sum())
                rate, exp = (labels[s] == code).mean(), expected[s, code].mean()
                worst = max(worst, abs(rate - exp))
                report.append(f"{e:9s} {c:11s} {'ABC'[g]}  table {values[g]:.2f}  expected {exp:.4f}  "
                              f"empirical {rate:.4f}  diff {rate - exp:+.4f}  n {s.sum()}")
                assert abs(rate - exp) <= 0.02, report[-1]
    print("\n" + "\n".join(report) + f"\nworst |diff| {worst:.4f} over {len(labels)} keypoints")
