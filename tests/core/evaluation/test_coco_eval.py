"""AP/AR and OKS against pycocotools itself, and the eval command's handling of bad input."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from core import PROJECT_ROOT
from core.cli import main
from core.evaluation.coco_eval import STAT_NAMES, evaluate, load_ground_truth, load_results
from core.evaluation.scenes import random_scenes, synthetic_benchmark
from core.evaluation.synthesis import synthesize_results
from core.oks import compute_oks
from core.poses import Poses


def pycocotools_stats(gt_path, dt_path) -> dict:
    """The oracle: pycocotools straight on the files, exactly as its own example does."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
        ev = COCOeval(coco, coco.loadRes(str(dt_path)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STAT_NAMES, map(float, ev.stats)))


def _with_ignored_people(gt: dict) -> dict:
    """Add a crowd region and a person without keypoints (both ignored by pycocotools)."""
    anns = gt["annotations"]
    crowd = dict(anns[0], id=10_001, iscrowd=1)
    empty = dict(anns[1], id=10_002, keypoints=[0] * 51, num_keypoints=0)
    return dict(gt, annotations=anns + [crowd, empty])


def _as_poses_results(gt: dict, results: list[dict]) -> list[dict]:
    """The same detections exported through Poses.to_coco_results (our results format: box, idx)."""
    out = []
    for r in results:
        kp = np.asarray(r["keypoints"], np.float32).reshape(1, 17, 3)
        xy = kp[0, :, :2]
        poses = Poses(np.r_[xy.min(0), xy.max(0)][None], kp, [r["score"]], track_ids=[len(out) % 3 - 1])
        out += poses.to_coco_results(r["image_id"])
    return out


@pytest.mark.parametrize("variant", ["plain", "ignored_gt", "poses_format", "no_background"])
def test_ap_equals_pycocotools(tmp_path, variant):
    rng = np.random.default_rng({"plain": 1, "ignored_gt": 2, "poses_format": 3, "no_background": 4}[variant])
    gt, results, _ = synthetic_benchmark(rng, num_images=30,
                                         background_per_image=0.0 if variant == "no_background" else 0.4)
    if variant == "ignored_gt":
        gt = _with_ignored_people(gt)
    if variant == "poses_format":
        results = _as_poses_results(gt, results)
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(results))

    coco = load_ground_truth(gt_path)
    ours = evaluate(coco, load_results(dt_path, coco))
    oracle = pycocotools_stats(gt_path, dt_path)
    assert ours.stats == oracle  # identical numbers, not merely close
    assert 0.2 < ours.stats["AP"] < 0.95  # a set with real errors
    # The per-threshold AP averages to the summary AP.
    assert ours.ap_per_threshold.mean() == pytest.approx(ours.stats["AP"], abs=1e-12)

    # The command reports the same numbers.
    assert main(["eval", "--gt", str(gt_path), "--dt", str(dt_path), "--out", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert saved["stats"] == oracle


def test_oks_equals_compute_oks_of_pycocotools():
    rng = np.random.default_rng(5)
    gt = _with_ignored_people(random_scenes(rng, 12, people=(2, 5), overlap=0.6))
    coco = load_ground_truth(gt)
    results, _, _ = synthesize_results(coco.dataset, rng)
    # Some detections far off, so OKS spans the whole range.
    for r in results[::4]:
        r["keypoints"] = (np.asarray(r["keypoints"]) + np.tile([rng.normal(0, 30), rng.normal(0, 30), 0], 17)).tolist()
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        ev.evaluate()
    compared = 0
    for (img, cat), ref in ev.ious.items():
        if len(ref) == 0:
            continue
        dts = sorted(ev._dts[img, cat], key=lambda d: -d["score"])[:20]
        gts = ev._gts[img, cat]
        ours = compute_oks(np.asarray([d["keypoints"] for d in dts]).reshape(-1, 17, 3),
                           np.asarray([g["keypoints"] for g in gts]).reshape(-1, 17, 3),
                           np.asarray([g["area"] for g in gts]), np.asarray([g["bbox"] for g in gts]))
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
        compared += ref.size
    assert compared > 100


# ---------------------------------------------------------------- bad input: one line, non-zero exit
def _write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def _bad_cases():
    rng = np.random.default_rng(0)
    gt, results, _ = synthetic_benchmark(rng, num_images=4, background_per_image=0.0)
    short = [dict(results[0], keypoints=results[0]["keypoints"][:48])] + results[1:]
    bad_gt = dict(gt, annotations=[dict(gt["annotations"][0], keypoints=[1, 2, 2] * 16)] + gt["annotations"][1:])
    unknown = results + [dict(results[0], image_id=999), dict(results[0], image_id=1000)]
    return [  # (name, GT, DT, extra arguments, expected message)
        ("missing GT", None, results, (), "GT file not found"),
        ("missing DT", gt, None, (), "DT file not found"),
        ("malformed GT", '{"images": [', results, (), "is not valid JSON"),
        ("malformed DT", gt, '[{"image_id": 0,,}]', (), "is not valid JSON"),
        ("unknown image ids", gt, unknown, (), "results for 2 image id(s) not in the ground truth: 999, 1000"),
        ("wrong DT keypoint count", gt, short, (), "48 keypoint values, expected 51"),
        ("wrong GT keypoint count", bad_gt, results, (), "48 keypoint values, expected 51"),
        ("DT not a list", gt, {"image_id": 0}, (), "expected a list of keypoint results"),
        ("DT without score", gt, [{k: v for k, v in results[0].items() if k != "score"}], (), "'score' must be"),
        ("GT without annotations", {"images": gt["images"]}, results, (), "expected a COCO keypoints object"),
        ("bad --match-oks", gt, results, ("--match-oks", "1.5"), "--match-oks must lie in (0, 1)"),
    ]


@pytest.mark.parametrize("name,gt,dt,extra,message", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_is_one_line(tmp_path, capsys, name, gt, dt, extra, message):
    gt_path = tmp_path / "gt.json" if gt is None else _write(tmp_path / "gt.json", gt)
    dt_path = tmp_path / "dt.json" if dt is None else _write(tmp_path / "dt.json", dt)
    rc = main(["eval", "--gt", str(gt_path), "--dt", str(dt_path), "--diagnose", "--out", str(tmp_path / "out"),
               *extra])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err


def test_bad_input_through_main_py_has_no_traceback(tmp_path):
    gt, results, _ = synthetic_benchmark(np.random.default_rng(0), num_images=3, background_per_image=0.0)
    gt_path = _write(tmp_path / "gt.json", gt)
    dt_path = _write(tmp_path / "dt.json", [dict(results[0], image_id=12345)])
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "main.py"), "eval", "--gt", str(gt_path),
                           "--dt", str(dt_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: dt.json: results for 1 image id(s) not in the ground truth: 12345"], proc.stderr
