"""Every config value is typed and checked where it enters (YAML, overrides, CLI flags, live
updates): one UserError line naming the key and what is allowed, before any work starts."""
from __future__ import annotations

import subprocess
import sys
import typing

import pytest

from core import PROJECT_ROOT, cli
from core.config import Config, DecodeMethod, choices
from core.errors import UserError

# (section, key, bad value, words the one-line message must hold)
BAD_VALUES = [
    ("detector", "score_threshold", "high", ["detector.score_threshold", "must be a number", "'high'"]),
    ("detector", "score_threshold", -0.1, ["detector.score_threshold", ">= 0", "<= 1"]),
    ("detector", "score_threshold", 1.5, ["detector.score_threshold", "<= 1"]),
    ("detector", "nms_iou", -1, ["detector.nms_iou", ">= 0"]),
    ("detector", "interval", 0, ["detector.interval", ">= 1"]),
    ("detector", "interval", 2.5, ["detector.interval", "whole number"]),
    ("detector", "max_persons", 0, ["detector.max_persons", ">= 1"]),
    ("detector", "name", "yolo", ["detector.name", "one of blazepose, hog", "'yolo'"]),
    ("detector", "tiling", "yes", ["detector.tiling", "true or false"]),
    ("sppe", "decode", "soft-argmax", ["sppe.decode", "one of regression, dark, quarter, argmax"]),
    ("sppe", "model", "movenet", ["sppe.model", "movenet-thunder, hourglass, resnet"]),
    ("sppe", "weights", 3, ["sppe.weights", "must be a string"]),
    ("sppe", "min_pose_score", -0.5, ["sppe.min_pose_score", ">= 0"]),
    ("pose_nms", "preset", "fast", ["pose_nms.preset", "paper, alphapose"]),
    ("tracking", "max_age_s", -1, ["tracking.max_age_s", ">= 0"]),
    ("tracking", "min_hits", 0, ["tracking.min_hits", ">= 1"]),
    ("tracking", "distance", "cosine", ["tracking.distance", "oks_iou, oks, iou, l2"]),
    ("tracking", "process_noise", 0, ["tracking.process_noise", "> 0"]),
    ("smoothing", "method", "ema", ["smoothing.method", "one_euro, kalman"]),
    ("smoothing", "strength", 0, ["smoothing.strength", "> 0"]),
    ("smoothing", "score_alpha", 0, ["smoothing.score_alpha", "> 0"]),
    ("smoothing", "max_gap_s", -0.1, ["smoothing.max_gap_s", ">= 0"]),
    ("render", "keypoint_threshold", "x", ["render.keypoint_threshold", "number"]),
    ("runtime", "device", "tpu", ["runtime.device", "auto, cpu, cuda"]),
    ("runtime", "backend", "tensorrt", ["runtime.backend", "onnxruntime", "jit"]),
    ("runtime", "threads", -1, ["runtime.threads", ">= 0"]),
    ("pipeline", "mode", "fast", ["pipeline.mode", "auto, file, realtime, live"]),
    ("pipeline", "queue_size", 0, ["pipeline.queue_size", ">= 1"]),
]
IDS = [f"{s}.{k}={v!r}" for s, k, v, _ in BAD_VALUES]


@pytest.mark.parametrize("section, key, value, words", BAD_VALUES, ids=IDS)
def test_bad_override_is_one_line_naming_key_and_allowed(section, key, value, words):
    with pytest.raises(UserError) as info:
        Config.load(overrides={section: {key: value}})
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


@pytest.mark.parametrize("section, key, value, words", BAD_VALUES[:8], ids=IDS[:8])
def test_bad_yaml_value_fails_at_load_naming_the_file(tmp_path, section, key, value, words):
    path = tmp_path / "bad.yaml"
    path.write_text(f"{section}:\n  {key}: {value}\n")
    with pytest.raises(UserError) as info:
        Config.load(path)
    message = str(info.value)
    assert str(path) in message and all(w in message for w in words), message


def test_a_bad_value_leaves_the_section_unchanged():
    cfg = Config.load()
    with pytest.raises(UserError):
        cfg.update({"detector": {"interval": 3, "score_threshold": "high"}})
    assert cfg.detector.interval == 6 and cfg.detector.score_threshold == 0.5


def test_values_are_normalised_and_defaults_are_valid():
    cfg = Config.load(overrides={"tracking": {"max_age_s": 2}, "sppe": {"weights": None}})
    assert cfg.tracking.max_age_s == 2.0 and isinstance(cfg.tracking.max_age_s, float)
    Config().update(Config.load().to_dict())  # every shipped default passes its own checks


def test_choices_are_the_config_types():
    assert choices("sppe", "decode") == typing.get_args(DecodeMethod)
    assert choices("runtime", "device") == ("auto", "cpu", "cuda")
    with pytest.raises(KeyError):
        choices("detector", "score_threshold")


@pytest.mark.parametrize("argv, words", [
    (["run", "--images", "x", "--fps", "0"], ["--fps must be > 0"]),
    (["run", "--images", "x", "--fps", "-5"], ["--fps must be > 0"]),
    (["run", "--images", "x", "--interval", "0"], ["--interval must be >= 1"]),
], ids=["fps0", "fps-neg", "interval0"])
def test_bad_run_flags_are_one_line(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words), err


def test_bad_yaml_value_through_run_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("detector:\n  score_threshold: high\n")
    assert cli.main(["run", "--images", str(tmp_path), "--config", str(path), "--json", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "detector.score_threshold must be a number" in err[0], err
    assert not (tmp_path / "o.json").exists()


def test_live_update_is_checked_too():
    from core.io import PatternSource
    from core.pipeline import Pipeline

    class Idle:
        device, backend = "cpu", "none"

        def reset(self):
            pass

    p = Pipeline(PatternSource(32, 32, num_frames=1), Config.load(), estimator=Idle())
    with pytest.raises(UserError, match="detector.score_threshold must be a number"):
        p.update_config("detector", score_threshold="high")
    p.update_config("detector", score_threshold=1)
    assert p.config.detector.score_threshold == 1.0


# (`refine` and `batch` were the examples in issue 13; they become commands, so other words here)
@pytest.mark.parametrize("argv", [["frobnicate", "--help"], ["modles", "list"], ["train2"]])
def test_unknown_command_is_an_error_listing_the_commands(argv):
    proc = subprocess.run([sys.executable, "main.py", *argv], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: unknown command {argv[0]!r}"), err
    assert all(name in err[0] for name in cli.COMMANDS)
