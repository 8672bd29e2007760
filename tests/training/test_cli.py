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
