"""A checkpoint trained in the tests runs in the app: PoseEstimator on a synthetic video, and the
headless command line ``main.py --video X --sppe hourglass --weights CKPT``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main as cli_main
from core.config import Config
from core.estimator import PoseEstimator
from core.evaluation.coco_eval import evaluate, load_ground_truth
from core.io.sources import open_source
from training.datasets.synthetic import SyntheticSpec, generate_video


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory):
    """30 frames, two people moving; the person sizes of the CI training data."""
    spec = SyntheticSpec(image_size=(192, 256), people=(2, 2), pose_variation=0.8, seed=3)
    return generate_video(tmp_path_factory.mktemp("video") / "people.mp4", spec, num_frames=30, fps=15)


def test_estimator_runs_the_trained_sppe(sppe_run, synthetic_video, blazepose_models, one_thread):
    """The BlazePose detector finds the drawn people; the trained hourglass estimates their poses
    and its keypoints carry the ROIs between detector frames."""
    cfg = Config.load(overrides={"sppe": {"model": "hourglass", "weights": str(sppe_run["last"])}})
    estimator = PoseEstimator(cfg, device="cpu")
    assert estimator.sppe.input_size == (128, 96) and estimator.sppe.layout == "coco17"
    source = open_source(video=str(synthetic_video))
    results, found = [], []
    while (frame := source.read()) is not None:
        poses = estimator.postprocess(estimator.infer(frame.image))
        found.append(len(poses))
        results += poses.to_coco_results(frame.index)
    source.close()
    assert len(found) == 30 and sum(found) >= 0.8 * 60  # two people per frame
    ap = evaluate(load_ground_truth(str(synthetic_video.with_suffix(".json"))), results).stats["AP"]
    assert ap >= 0.3  # measured 0.58 (GT-box evaluation of the same model: ~0.5)


def test_command_line_with_trained_weights(sppe_run, synthetic_video, blazepose_models, tmp_path, one_thread):
    out = tmp_path / "poses.json"
    rc = cli_main(["--video", str(synthetic_video), "--sppe", "hourglass", "--weights", str(sppe_run["last"]),
                   "--json", str(out), "--no-progress", "--threads", "1"])
    assert rc == 0
    data = json.loads(out.read_text())
    entries = data if isinstance(data, list) else data.get("annotations", [])
    assert len({e["image_id"] for e in entries}) >= 24
    kp = np.asarray(entries[0]["keypoints"]).reshape(-1, 3)
    assert kp.shape == (17, 3)


def test_wrong_checkpoint_is_a_user_error(tmp_path, capsys, synthetic_video):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc = cli_main(["--video", str(synthetic_video), "--sppe", "hourglass", "--weights", str(bad),
                   "--json", str(tmp_path / "o.json"), "--no-progress"])
    assert rc == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
