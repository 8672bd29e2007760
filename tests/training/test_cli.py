"""The ``train`` command: subcommands, overrides, shipped configs."""
from __future__ import annotations

import json

import pytest

from core import ASSETS_DIR
from core.errors import UserError
from training.config import load_config, parse_overrides


def test_synthetic_command_writes_images_annotations_and_video(tmp_path, capsys, cli):
    rc = cli(["train", "synthetic", "--out", str(tmp_path), "--num-images", "3", "--size", "96", "128",
                   "--video", "4", "--seed", "2"])
    assert rc == 0
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert len(data["images"]) == 3 and len(list((tmp_path / "images").glob("*.jpg"))) == 3
    assert data["images"][0]["height"] == 96 and data["images"][0]["width"] == 128
    assert (tmp_path / "video.mp4").stat().st_size > 0
    assert len(json.loads((tmp_path / "video.json").read_text())["images"]) == 4
    assert "wrote 3 images" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["train_sppe.yaml", "train_sppe_ci.yaml", "train_sppe_synthetic.yaml",
                                  "train_rmpe.yaml", "train_rmpe_ci.yaml", "train_pgpg.yaml", "train_pgpg_ci.yaml",
                                  "train_posefix.yaml", "train_posefix_ci.yaml", "train_posefix_footage.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(ASSETS_DIR / name)
    assert cfg.optim.batch_size >= 1 and cfg.data.train
    assert cfg.to_dict()["model"]["input_size"] == list(cfg.model.input_size)
    assert cfg.to_dict()["posefix"]["input_size"] == list(cfg.posefix.input_size)


def test_overrides_are_yaml_values():
    assert parse_overrides(["optim.lr=0.01", "model.input_size=[64, 48]", "run.progress=false"]) == {
        "optim": {"lr": 0.01}, "model": {"input_size": [64, 48]}, "run": {"progress": False}}
    with pytest.raises(UserError, match="section.key=value"):
        parse_overrides(["lr=0.1"])


def test_help_lists_the_tasks(capsys, cli):
    with pytest.raises(SystemExit) as exc:
        cli(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for task in ("sppe", "rmpe", "pgpg", "posefix", "synthetic", "pseudo-label", "posefix-data"):
        assert task in out


def test_pseudo_label_needs_an_input(capsys, cli):
    with pytest.raises(SystemExit) as exc:
        cli(["train", "pseudo-label", "--out", "x"])
    assert exc.value.code == 2


@pytest.mark.parametrize("sets, words", [
    (["optim.lr=abc"], ["optim.lr must be a number", "'abc'"]),
    (["optim.lr=-0.1"], ["optim.lr must be > 0"]),
    (["optim.epochs=-1"], ["optim.epochs must be >= 0"]),
    (["optim.batch_size=0"], ["optim.batch_size must be >= 1"]),
    (["optim.schedule=linear"], ["optim.schedule must be one of cosine, step"]),
    (["eval.every=0"], ["eval.every must be >= 1"]),
    (["eval.decode=regression"], ["eval.decode must be one of dark, quarter, argmax"]),
    (["run.progress=maybe"], ["run.progress must be true or false"]),
    (["run.threads=-2"], ["run.threads must be >= 0"]),
    (["pgpg.iou_threshold=2"], ["pgpg.iou_threshold must be >= 0 and <= 1"]),
    (["pgpg.box_source=gt"], ["pgpg.box_source must be one of detector, file, jitter"]),
    (["rmpe.stages=[{name: a, lr: abc}]"], ["rmpe.stages: lr must be a number"]),
    (["optim.milestones=[a, b]"], ["optim.milestones must be a list of numbers"]),
], ids=lambda v: v[0] if isinstance(v, list) else None)
def test_bad_set_values_are_one_line_errors_before_any_work(tmp_path, capsys, cli, sets, words):
    args = ["train", "sppe", "--config", str(ASSETS_DIR / "train_sppe_ci.yaml"), "--out", str(tmp_path / "o")]
    for s in sets:
        args += ["--set", s]
    assert cli(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, words", [
    (["--num-images", "0"], ["--num-images must be >= 1"]),
    (["--size", "0", "128"], ["--size H W must each lie in [32, 8192]"]),
    (["--size", "96", "-5"], ["--size H W"]),
    (["--size", "100000", "128"], ["--size H W"]),
    (["--people", "3", "1"], ["--people MIN MAX"]),
    (["--people", "-1", "2"], ["--people MIN MAX"]),
    (["--video", "-1"], ["--video must be >= 0"]),
])
def test_bad_synthetic_sizes_are_one_line_errors(tmp_path, capsys, cli, flags, words):
    assert cli(["train", "synthetic", "--out", str(tmp_path / "syn"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert not (tmp_path / "syn").exists()
