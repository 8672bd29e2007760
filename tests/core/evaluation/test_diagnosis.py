"""Ronchi–Perona diagnosis: hand-built keypoint cases, FP/FN/score corrections, round trip against the
synthesiser's injected labels, and the eval --diagnose outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main
from core.evaluation.coco_eval import check_results, evaluate, load_ground_truth
from core.evaluation.diagnosis import CORRECTIONS, corrected, diagnose, match_and_classify
from core.evaluation.scenes import random_scenes
from core.evaluation.synthesis import synthesize_results
from core.evaluation.taxonomy import ERROR_NAMES, displacement_for_ks
from core.oks import compute_oks
from core.skeleton import coco_sigmas

# Two overlapping people, 200 px tall; A's wrists are 76 px apart.
_TEMPLATE = np.array([
    [0.00, -0.42], [0.03, -0.44], [-0.03, -0.44], [0.07, -0.42], [-0.07, -0.42],
    [0.13, -0.28], [-0.13, -0.28], [0.17, -0.11], [-0.17, -0.11], [0.19, 0.04], [-0.19, 0.04],
    [0.09, 0.05], [-0.09, 0.05], [0.10, 0.27], [-0.10, 0.27], [0.10, 0.48], [-0.10, 0.48],
]) * 200.0
A_XY = _TEMPLATE + [200.0, 200.0]
B_XY = _TEMPLATE + [320.0, 205.0]
C_XY = _TEMPLATE + [700.0, 200.0]  # far from both
AREA = 0.55 * 90 * 220
L_WRIST, R_WRIST = 9, 10


def _gt(*people, image_id=0) -> dict:
    anns = []
    for i, xy in enumerate(people):
        kp = np.concatenate([xy, np.full((17, 1), 2.0)], 1)
        lo, hi = xy.min(0), xy.max(0)
        anns.append({"id": i + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": AREA,
                     "num_keypoints": 17, "keypoints": kp.reshape(-1).tolist(), "bbox": [*lo, *(hi - lo)]})
    return {"images": [{"id": image_id}], "annotations": anns}


def _det(xy, score=0.9, image_id=0) -> dict:
    return {"image_id": image_id, "category_id": 1, "score": score,
            "keypoints": np.concatenate([xy, np.ones((17, 1))], 1).reshape(-1).tolist()}


def _offset(ks: float, joint: int) -> np.ndarray:
    """Displacement along +x at which the KS with the joint equals ks (area AREA)."""
    return np.array([displacement_for_ks(ks, AREA, coco_sigmas()[joint]), 0.0])


CASES = [  # (name, position of A's left wrist in the detection, expected label)
    ("exact", A_XY[L_WRIST], "good"),
    ("KS 0.9", A_XY[L_WRIST] + _offset(0.9, L_WRIST), "good"),
    ("KS 0.7", A_XY[L_WRIST] + _offset(0.7, L_WRIST), "jitter"),
    ("KS 0.51", A_XY[L_WRIST] + _offset(0.51, L_WRIST), "jitter"),
    ("on own right wrist", A_XY[R_WRIST], "inversion"),
    ("near own right wrist", A_XY[R_WRIST] + _offset(0.6, R_WRIST), "inversion"),
    ("on B's left wrist", B_XY[L_WRIST], "swap"),
    ("on B's right wrist", B_XY[R_WRIST], "swap"),
    ("on C's left wrist (far person)", C_XY[L_WRIST], "swap"),
    ("KS 0.3, near nobody", A_XY[L_WRIST] + [0.0, displacement_for_ks(0.3, AREA, coco_sigmas()[L_WRIST])], "miss"),
    ("far away", A_XY[L_WRIST] + [0.0, 80.0], "miss"),
]


@pytest.mark.parametrize("name,position,expected", CASES, ids=[c[0] for c in CASES])
def test_keypoint_label(name, position, expected):
    gt = load_ground_truth(_gt(A_XY, B_XY, C_XY))
    det = A_XY.copy()
    det[L_WRIST] = position
    m = match_and_classify(gt, check_results([_det(det)], gt))
    assert m.matched_gt[0] == 1
    assert ERROR_NAMES[m.labels[0, L_WRIST]] == expected
    others = np.delete(m.labels[0], L_WRIST)
    assert (others == 0).all()  # every other keypoint is good


@pytest.mark.parametrize("name,a_rw,b_lw,expected", [
    # own-joint similarity beats the counterpart: the right wrist 10 px away, the detection on it
    ("jitter beats inversion", A_XY[L_WRIST] + [10.0, 0.0], B_XY[L_WRIST], "jitter"),
    # the counterpart beats another person: B's left wrist on A's right wrist
    ("inversion beats swap", A_XY[R_WRIST], A_XY[R_WRIST], "inversion"),
])
def test_label_precedence(name, a_rw, b_lw, expected):
    a, b = A_XY.copy(), B_XY.copy()
    a[R_WRIST], b[L_WRIST] = a_rw, b_lw
    gt = load_ground_truth(_gt(a, b))
    det = a.copy()
    det[L_WRIST] = a[R_WRIST]
    m = match_and_classify(gt, check_results([_det(det)], gt))
    assert ERROR_NAMES[m.labels[0, L_WRIST]] == expected


def test_greedy_matching_by_score_and_background_fp():
    gt = load_ground_truth(_gt(A_XY, B_XY))
    near_a = A_XY + [6.0, 0.0]
    results = check_results([_det(near_a, 0.5), _det(A_XY, 0.9), _det(A_XY + [0, 600.0], 0.95)], gt)
    m = match_and_classify(gt, results)
    # The highest-scoring detection on A takes A; the lower one may only take B (if OKS >= 0.1).
    oks_b = compute_oks(near_a[None], np.concatenate([B_XY, np.full((17, 1), 2.0)], 1)[None], [AREA])[0, 0]
    assert m.matched_gt[1] == 1
    assert m.matched_gt[0] == (2 if oks_b >= 0.1 else -1)
    assert m.matched_gt[2] == -1  # nowhere near anybody: background false positive
    assert m.optimal_scores[1] == pytest.approx(1.0)


def test_fp_fn_and_score_corrections():
    gt = load_ground_truth(_gt(A_XY, B_XY, C_XY))
    sloppy_b = B_XY + np.random.default_rng(0).normal(0, 9, B_XY.shape)
    results = check_results([
        _det(A_XY, 0.3),  # perfect but low score
        _det(sloppy_b, 0.9),  # sloppy with a high score
        _det(A_XY + [0, 700.0], 0.95),  # background
    ], gt)  # nobody detected C: a false negative
    d = diagnose(gt, results)
    c = d.summary_counts()
    assert (c["matched_detections"], c["background_fp"], c["false_negatives"]) == (2, 1, 1)
    assert d.matching.false_negatives.tolist() == [3]
    # Optimal score = best OKS with any GT.
    np.testing.assert_allclose(d.matching.optimal_scores[:2], [1.0, d.matching.match_oks[1]])
    assert d.ap("score") > d.ap("original")
    assert d.ap("background_fp") > d.ap("original")
    assert d.ap("false_negative") > d.ap("original")
    # Removing FNs equals scoring against the GT without C.
    ref = evaluate(load_ground_truth(_gt(A_XY, B_XY)), results)
    assert d.evaluations["false_negative"].stats == ref.stats
    # The corrected sets are what the docstring says.
    _, no_bg = corrected(gt, results, d.matching, "background_fp")
    assert len(no_bg) == 2
    _, rescored = corrected(gt, results, d.matching, "score")
    assert [r["score"] for r in rescored] == pytest.approx(d.matching.optimal_scores.tolist())


def _round_trip(seed=11, num_images=120):
    rng = np.random.default_rng(seed)
    gt = load_ground_truth(random_scenes(rng, num_images, people=(2, 5), overlap=0.5))
    results, injected, _ = synthesize_results(gt.dataset, rng)
    m = match_and_classify(gt, check_results(results, gt))
    return injected, m.labels


def test_round_trip_agrees_with_injected_labels():
    injected, found = _round_trip()
    annotated = injected >= 0
    agreement = (injected[annotated] == found[annotated]).mean()
    # Confusion matrix: rows injected, columns diagnosed (+ "unmatched" when the detection found no GT).
    cm = np.zeros((5, 6), np.int64)
    np.add.at(cm, (injected[annotated], np.where(found[annotated] >= 0, found[annotated], 5)), 1)
    header = "injected \\ diagnosed " + " ".join(f"{n:>9}" for n in (*ERROR_NAMES, "unmatched"))
    print("\n" + header + "\n" + "\n".join(f"{n:>20} " + " ".join(f"{v:>9}" for v in row)
                                           for n, row in zip(ERROR_NAMES, cm)))
    print(f"people {len(injected)}, keypoints {annotated.sum()}, agreement {agreement:.4f}")
    assert len(injected) >= 300
    assert cm.sum(1).min() >= 40  # every error type was injected often enough to be checked
    assert agreement >= 0.98
    assert (np.diag(cm) / cm.sum(1)).min() >= 0.95  # and per type


def test_correcting_every_keypoint_error_gives_ap_one():
    rng = np.random.default_rng(3)
    gt = load_ground_truth(random_scenes(rng, 60, people=(2, 4), overlap=0.5, profiles=(1.0, 0.0, 0.0)))
    results, injected, _ = synthesize_results(gt.dataset, rng, score_noise=0.3, exact_good=True)
    d = diagnose(gt, check_results(results, gt))
    assert (injected > 0).sum() > 300
    assert d.ap("original") < 0.8
    np.testing.assert_array_equal(d.evaluations["all_keypoints"].ap_per_threshold, 1.0)
    np.testing.assert_array_equal(d.evaluations["all"].ap_per_threshold, 1.0)
    for single in ("miss", "swap", "inversion", "jitter"):  # no single type is enough on its own
        assert d.ap("original") <= d.ap(single) < 1.0


def test_eval_diagnose_writes_report_json_and_plots(benchmark_files, tmp_path, capsys):
    gt_path, dt_path = benchmark_files
    out = tmp_path / "out"
    assert main(["eval", "--gt", str(gt_path), "--dt", str(dt_path), "--diagnose", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed and "all_keypoints" in printed
    diag = json.loads((out / "diagnosis.json").read_text())
    assert set(diag["ap"]) == {"original", *CORRECTIONS}
    assert all(len(v["gain_per_threshold"]) == 10 for v in diag["ap"].values())
    assert diag["ap"]["original"]["AP"] == json.loads((out / "eval.json").read_text())["stats"]["AP"]
    assert diag["counts"]["background_fp"] > 0 and diag["counts"]["false_negatives"] > 0
    report = (out / "report.md").read_text()
    assert "AP gained by correcting each error class alone" in report
    for name in ("error_frequencies", "ap_improvement", "pr_curves"):
        png = out / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert f"](plots/{name}.png)" in report


def test_eval_baseline_side_by_side(benchmark_files, tmp_path, capsys):
    """--baseline: the results with their keypoint errors fixed (the diagnosis's own correction)
    against the original: jitter/inversion/swap/miss counts drop to 0 and AP rises."""
    gt_path, dt_path = benchmark_files
    gt = load_ground_truth(str(gt_path))
    results = check_results(json.loads(dt_path.read_text()), gt)
    _, fixed = corrected(gt, results, match_and_classify(gt, results), "all_keypoints")
    fixed_path = tmp_path / "fixed.json"
    fixed_path.write_text(json.dumps(fixed))
    out = tmp_path / "out"
    assert main(["eval", "--gt", str(gt_path), "--dt", str(fixed_path), "--baseline", str(dt_path), "--diagnose",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "fix jitter gain" in printed
    comp = json.loads((out / "comparison.json").read_text())
    before, after = comp["counts"]["baseline"]["keypoints"], comp["counts"]["results"]["keypoints"]
    assert all(before[n] > 0 and after[n] == 0 for n in ("jitter", "inversion", "swap", "miss"))
    assert comp["AP"]["results"] > comp["AP"]["baseline"]
    assert main(["eval", "--gt", str(gt_path), "--dt", str(dt_path), "--baseline", str(dt_path),
                 "--out", str(out)]) == 2
