"""SPPE training learns (held-out OKS AP through pycocotools), logs, checkpoints and resumes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.models.trained_sppe import load_trained_sppe, read_checkpoint
from training.config import load_config
from training.metrics import read_csv

# assets/train_sppe_ci.yaml reaches 0.511 held-out AP, AP50 0.897 in its 12 epochs (untrained: 0.000;
# 16 epochs reached 0.529, 0.885 in 35 % more time).
SPPE_MIN_AP = 0.45
EPOCHS = 12


def test_learning_is_real(sppe_run):
    rows = sppe_run["metrics"]
    before, after = rows[0], rows[-1]
    assert before["epoch"] == 0 and before["AP"] < 0.02  # untrained: no pose is right
    assert after["epoch"] == EPOCHS and after["AP"] >= SPPE_MIN_AP, rows
    assert after["AP50"] >= 0.75
    losses = np.array([r["loss"] for r in sppe_run["steps"]])
    assert losses[-5:].mean() < 0.8 * losses[:5].mean()


def test_checkpoint_embeds_config_and_resumes_fields(sppe_run):
    ckpt = read_checkpoint(sppe_run["last"])
    assert ckpt["kind"] == "sppe" and ckpt["epoch"] == EPOCHS
    assert ckpt["model_spec"]["arch"] == "hourglass" and ckpt["model_spec"]["input_size"] == [128, 96]
    cfg = load_config(None, ckpt["config"])  # the embedded config is a complete, valid training config
    assert cfg.optim.epochs == EPOCHS and cfg.model.loss == "softmax"
    for key in ("optimizer", "scheduler", "best_ap", "metrics"):
        assert ckpt[key] is not None
    assert ckpt["best_ap"] == pytest.approx(sppe_run["metrics"][-1]["AP"])
    assert len(ckpt["metrics"]["history"]) == len(sppe_run["metrics"])


def test_best_checkpoint_loads_as_an_sppe(sppe_run):
    sppe = load_trained_sppe(sppe_run["best"], "cpu")
    assert sppe.input_size == (128, 96) and sppe.layout == "coco17"
    out = sppe(torch.rand(3, 3, 128, 96))
    assert out.heatmaps.shape == (3, 17, 32, 24) and out.coords is None and out.presence is None
    assert (out.heatmaps >= 0).all()


TINY = {
    "model": {"arch": "hourglass", "input_size": [64, 48], "stacks": 2, "features": 8, "depth": 2, "sigma": 1.0},
    "data": {"train": [{"synthetic": {"num_images": 10, "seed": 41, "image_size": [96, 128], "people": [1, 2]}}],
             "val": [{"synthetic": {"num_images": 3, "seed": 42, "image_size": [96, 128], "people": [1, 2]}}]},
    "optim": {"lr": 0.001, "epochs": 2, "batch_size": 4, "schedule": "step", "milestones": [0.5], "gamma": 0.5},
    "run": {"threads": 1, "log_every": 1, "progress": False},
}


@pytest.fixture
def tiny(tmp_path, one_thread):
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(dict(TINY, data=dict(TINY["data"], synthetic_dir=str(tmp_path / "data")))))
    return path


def test_resume_continues_the_same_run(tiny, tmp_path, cli):
    """Resuming from the epoch-1 checkpoint of a 2-epoch run reproduces its epoch 2 step for step
    (weights, optimiser moments, LR schedule position and data order all restored)."""
    keep = ["--set", "run.keep_checkpoints=true"]
    assert cli(["train", "sppe", "--config", str(tiny), "--out", str(tmp_path / "straight"), *keep]) == 0
    assert (tmp_path / "straight" / "epoch_002.pt").is_file()
    assert cli(["train", "sppe", "--config", str(tiny), "--out", str(tmp_path / "resumed"),
                     "--resume", str(tmp_path / "straight" / "epoch_001.pt")]) == 0
    straight = [r for r in read_csv(tmp_path / "straight" / "steps.csv") if r["epoch"] == 2]
    resumed = read_csv(tmp_path / "resumed" / "steps.csv")
    assert [r["step"] for r in resumed] == [r["step"] for r in straight] == [4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in resumed], [r["loss"] for r in straight], rtol=1e-5)
    np.testing.assert_allclose([r["lr"] for r in resumed], [r["lr"] for r in straight])
    assert [r["epoch"] for r in read_csv(tmp_path / "resumed" / "metrics.csv")] == [2]
    assert [r["lr"] for r in read_csv(tmp_path / "straight" / "steps.csv")] == [0.001] * 3 + [0.0005] * 3


def test_resnet_arch_trains_and_loads(tiny, tmp_path, cli):
    sets = []
    for s in ("model.arch=resnet", "model.resnet_depth=18", "model.width=8", "model.deconv_channels=16",
              "model.loss=softmax", "optim.optimizer=adam", "model.input_size=[64, 64]"):
        sets += ["--set", s]
    sets += ["--epochs", "1"]
    assert cli(["train", "sppe", "--config", str(tiny), "--out", str(tmp_path / "rn"), *sets]) == 0
    sppe = load_trained_sppe(tmp_path / "rn" / "last.pt")
    assert sppe.spec.arch == "resnet" and sppe(torch.rand(1, 3, 64, 64)).heatmaps.shape == (1, 17, 16, 16)


@pytest.mark.parametrize("sets, message", [
    (["optim.optimizer=lbfgs"], "optim.optimizer"),
    (["optim.batch_size=1000"], "fewer than one batch"),
    (["model.colour=3"], "unknown key"),
    (["data.train=[{images: /nonexistent}]"], "needs 'annotations'"),
    (["eval.proposals=detector"], "eval.proposals"),
])
def test_bad_configs_are_one_line_errors(tiny, tmp_path, capsys, sets, message, cli):
    args = ["train", "sppe", "--config", str(tiny), "--out", str(tmp_path / "bad")]
    for s in sets:
        args += ["--set", s]
    assert cli(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_missing_config_file(tmp_path, capsys, cli):
    assert cli(["train", "sppe", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_trains_on_pgpg_proposals(tiny, tmp_path, cli):
    """train pgpg (jitter box source: no detector fires on 10 tiny images) → train sppe sampling its
    proposals instead of the GT boxes."""
    assert cli(["train", "pgpg", "--config", str(tiny), "--out", str(tmp_path / "pgpg"), "--set", "pgpg.atoms=2",
                "--set", "pgpg.box_source=jitter", "--set", "pgpg.jitter=[0, -0.1, 0, 0.1, 0.05, 0.05, 0.05, 0.05]",
                "--set", "pgpg.components=1"]) == 0
    model = tmp_path / "pgpg" / "pgpg.json"
    assert cli(["train", "sppe", "--config", str(tiny), "--out", str(tmp_path / "s"), "--epochs", "1",
                "--set", f"pgpg.model={model}", "--set", "augment.proposal_prob=1.0"]) == 0
    from training.datasets.coco_keypoints import AugmentConfig, CocoKeypoints, SampleGeometry, box_to_centre_size
    from training.pgpg import PGPGModel

    pgpg = PGPGModel.load(model)
    for a in range(2):  # the jitter's vertical offsets, recovered per atom (a handful of people each)
        assert np.abs(pgpg.mean_offset(a)[[1, 3]] - [-0.1, 0.1]).max() < 0.05
    root = tmp_path / "data" / "train_0_seed41"
    augment = AugmentConfig.none()
    augment.proposal_prob = 1.0
    ds = CocoKeypoints(root / "images", root / "annotations.json",
                       SampleGeometry(input_size=(64, 48), heatmap_size=(16, 12)), augment, proposals=pgpg)
    gt_scale = [box_to_centre_size(ds.samples[i]["bbox"], 0.75, 1.25)[1][1] / 64 for i in range(len(ds))]
    scale = [np.linalg.norm(ds[i]["theta"].numpy()[:, 1]) for i in range(len(ds))]
    assert np.mean(np.asarray(scale) / np.asarray(gt_scale)) > 1.1  # proposals 20% taller than the GT boxes
