"""Issue 13 end to end (subprocess): nothing lost, nothing silently wrong. One table of bad cases that
must stop before any work with one line and a non-zero exit and leave every input untouched; then a
full disk mid-run, a damaged byte in each kind of cached model file, and checkpoints that decide
their own architecture."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]


def _main(*args: str, env: dict | None = None, timeout: float = 120, preexec=None) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    e.pop("RMPE_DEBUG", None)
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=e, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec)


def _video(path: Path, frames: int = 6, width: int = 64, height: int = 48) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(30))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.full((height, width, 3), i * 30, np.uint8),
                                                           format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def _checkpoint(path: Path, arch: str = "hourglass") -> Path:
    from core.models.trained_sppe import SPPEModelSpec, build_sppe_model
    from training.checkpoint import save_checkpoint

    spec = SPPEModelSpec(arch=arch, input_size=(64, 64) if arch == "resnet" else (64, 48), stacks=1, features=16,
                         depth=2, resnet_depth=18, width=8, deconv_channels=16, deconv_layers=3).validate()
    return save_checkpoint(path, kind="sppe", spec=spec, config={}, model=build_sppe_model(spec), epoch=1)


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _case(kind: str, t: Path) -> tuple[list[str], str]:
    v = str(_video(t / "in.mp4"))
    if kind == "out_is_input_via_symlink":
        (t / "link.mp4").symlink_to(t / "in.mp4")
        return ["--video", v, "--out", str(t / "link.mp4")], "--out {t}/link.mp4 would overwrite the input --video"
    if kind == "json_is_input":
        return ["--video", v, "--json", v], "--json {t}/in.mp4 would overwrite the input --video"
    if kind == "csv_is_input_via_symlinked_folder":
        (t / "dir").symlink_to(t)
        return ["--video", v, "--csv", str(t / "dir" / "in.mp4")], "would overwrite the input --video"
    if kind == "out_is_config":
        (t / "c.yaml").write_text("detector:\n  interval: 2\n")
        return ["--video", v, "--config", str(t / "c.yaml"), "--json", str(t / "c.yaml")], \
            "would overwrite the input --config"
    if kind == "out_is_an_input_image":
        (t / "imgs").mkdir()
        Image.new("RGB", (32, 24)).save(t / "imgs" / "a.png")
        return ["--images", str(t / "imgs"), "--csv", str(t / "imgs" / "a.png")], "would overwrite the input --images"
    if kind == "two_outputs_one_path":
        return ["--video", v, "--json", str(t / "x"), "--csv", str(t / "x")], "--json {t}/x and --csv {t}/x are the same"
    if kind == "video_and_json_one_path":
        return ["--video", v, "--out", str(t / "x.mp4"), "--json", str(t / "x.mp4")], "are the same file"
    if kind == "profile_json_is_json":
        return ["--video", v, "--json", str(t / "p.json"), "--profile-json", str(t / "p.json")], "are the same file"
    if kind == "avi_output":
        return ["--video", v, "--out", str(t / "z.avi")], "the video is H.264 in an MP4 container; name it .mp4"
    if kind == "mixed_sizes_to_one_video":
        (t / "imgs").mkdir()
        Image.new("RGB", (64, 48)).save(t / "imgs" / "a.png")
        Image.new("RGB", (48, 64)).save(t / "imgs" / "b.png")
        return ["--images", str(t / "imgs"), "--out", str(t / "o.mp4")], "the images have 2 different sizes"
    if kind == "strict_images_non_image":
        (t / "imgs").mkdir()
        Image.new("RGB", (64, 48)).save(t / "imgs" / "a.png")
        (t / "imgs" / "b.jpg").write_text("not an image")
        return ["--images", str(t / "imgs"), "--json", str(t / "o.json"), "--strict-images"], \
            "image {t}/imgs/b.jpg: not a readable image"
    if kind == "sppe_contradicts_checkpoint":
        return ["--video", v, "--weights", str(_checkpoint(t / "hg.pt")), "--sppe", "resnet",
                "--json", str(t / "o.json")], "--sppe resnet contradicts the checkpoint {t}/hg.pt, which holds a hourglass"
    if kind == "blazepose_with_checkpoint":
        return ["--video", v, "--weights", str(_checkpoint(t / "hg.pt")), "--sppe", "blazepose",
                "--json", str(t / "o.json")], "--sppe blazepose takes no checkpoint"
    if kind == "unknown_checkpoint":
        import torch

        torch.save({"state_dict": {}}, t / "other.pt")
        return ["--video", v, "--weights", str(t / "other.pt"), "--json", str(t / "o.json")], \
            "is not an RMPE-Live training checkpoint"
    if kind == "eval_out_is_dt":
        (t / "ev").mkdir()
        (t / "gt.json").write_text("{}")
        (t / "ev" / "eval.json").write_text("[]")
        return ["eval", "--gt", str(t / "gt.json"), "--dt", str(t / "ev" / "eval.json"), "--out", str(t / "ev")], \
            "would overwrite the input --dt"
    if kind == "pseudo_label_onto_its_images":
        (t / "lab" / "images").mkdir(parents=True)
        Image.new("RGB", (32, 24)).save(t / "lab" / "images" / "000000.jpg")
        return ["train", "pseudo-label", "--images", str(t / "lab" / "images"), "--out", str(t / "lab")], \
            "would overwrite the input --images"
    if kind == "train_epochs_0":
        return ["train", "sppe", "--config", "assets/train_sppe_ci.yaml", "--epochs", "0", "--out",
                str(t / "run")], "--epochs 0: give at least 1"
    if kind == "train_data_missing_before_synthesis":
        (t / "c.yaml").write_text(
            "data:\n  train: [{synthetic: {num_images: 50, seed: 1}}]\n"
            f"  val: [{{images: {t}/coco/val2017, annotations: {t}/coco/annotations/person_keypoints_val2017.json}}]\n")
        return ["train", "sppe", "--config", str(t / "c.yaml"), "--out", str(t / "run")], \
            "data.val[0]: annotations not found"
    raise AssertionError(kind)


CASES = ["out_is_input_via_symlink", "json_is_input", "csv_is_input_via_symlinked_folder", "out_is_config",
         "out_is_an_input_image", "two_outputs_one_path", "video_and_json_one_path", "profile_json_is_json",
         "avi_output", "mixed_sizes_to_one_video", "strict_images_non_image", "sppe_contradicts_checkpoint",
         "blazepose_with_checkpoint", "unknown_checkpoint", "eval_out_is_dt", "pseudo_label_onto_its_images",
         "train_epochs_0", "train_data_missing_before_synthesis"]


@pytest.mark.parametrize("kind", CASES)
def test_refused_before_any_work_with_one_line(tmp_path, kind):
    args, message = _case(kind, tmp_path)
    before = _digest(tmp_path)
    t0 = time.perf_counter()
    proc = _main(*args, *(["--no-progress"] if args[0] not in ("eval", "train") else []))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("rmpe: ")]
    print(f"{kind}: exit {proc.returncode}: {lines}")  # the case table of the report (pytest -s)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message.format(t=tmp_path) in lines[0], proc.stderr
    assert _digest(tmp_path) == before  # every input untouched, nothing written
    assert not (tmp_path / "run" / "data").exists()  # no synthesis before the missing data was noticed
    assert time.perf_counter() - t0 < 60


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG, as a full disk with ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_mid_run_names_the_file_and_never_says_wrote(tmp_path, blazepose_models, demo_video):
    out, js = tmp_path / "o.mp4", tmp_path / "o.json"
    proc = _main("--video", "demo", "--out", str(out), "--json", str(js), "--max-frames", "40", "--no-progress",
                 preexec=_limit_file_size(150_000), timeout=300)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    print(f"full disk: exit {proc.returncode}: {errors}")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(errors) == 1 and f"could not write video {out}: File too large" in errors[0]
    assert f"wrote {out}" not in proc.stderr and f"{out}," not in proc.stderr.split("wrote")[-1]
    assert not out.exists() and not list(tmp_path.glob(".rmpe-tmp-*"))
    entries = json.loads(js.read_text())  # the other output is finished and valid
    assert all(e["image_id"] < 40 for e in entries)


MODEL_FILES = ["models/pose_detection.tflite", "models/pose_landmark_full.tflite",
               "models/pose_landmark_full.safetensors", "models/pose_detection.onnx", "videos/demo.mp4",
               "models/nanodet.json", "models/nanodet.bin"]  # the default detector's npm files


@pytest.fixture
def cache_copy(tmp_path, blazepose_models, demo_video):
    """A private copy of the model cache (never the user's), verified once so every file is stamped."""
    from core.assets import cache_dir, manifest

    src, dst = cache_dir(), tmp_path / "cache"
    onnx_exports = [p.relative_to(src).as_posix() for p in (src / "models").glob("nanodet.*.onnx")]
    for rel in MODEL_FILES + ["models/pose_detection.safetensors", "models/pose_landmark_full.onnx"] + onnx_exports:
        if not (src / rel).exists():
            pytest.skip(f"{rel} not in the cache (python main.py models install)")
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    from core.models.verify import check_file, check_model

    for art in manifest().values():
        path = dst / art.file
        (check_model if art.kind == "model" else check_file)(path, art.sha256)
    return dst


@pytest.mark.parametrize("rel", MODEL_FILES)
def test_a_flipped_byte_in_a_cached_file_is_named_with_the_repair(tmp_path, cache_copy, rel):
    path = cache_copy / rel
    with open(path, "r+b") as f:  # one bit, mid-file: size unchanged
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    env = {"RMPE_LIVE_CACHE": str(cache_copy)}
    video = "demo" if rel.startswith("videos") else str(_video(tmp_path / "in.mp4"))
    # the face-anchored detector's files are read only when it is the one chosen
    detector = ["--detector", "blazepose"] if "pose_detection" in rel else []
    proc = _main("--video", video, "--json", str(tmp_path / "o.json"), "--no-progress", *detector, env=env)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    print(f"flipped byte in {rel}: exit {proc.returncode}: {errors}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and str(path) in errors[0] and "corrupted or was modified" in errors[0]
    assert errors[0].endswith("repair: python main.py models install")
    assert not (tmp_path / "o.json").exists()
    listing = _main("models", "list", env=env)
    assert listing.returncode == 0
    line = next(ln for ln in listing.stdout.splitlines() if Path(rel).stem in ln or
                (rel.startswith("videos") and ln.startswith("demo_video")))
    assert "DAMAGED" in line and Path(rel).name in line and " installed " not in line, listing.stdout


def test_a_checkpoint_decides_its_architecture_and_the_log_names_the_decode(tmp_path, blazepose_models):
    """--weights alone loads what the checkpoint is (here an hourglass); the log says which decode runs."""
    ck = _checkpoint(tmp_path / "hg.pt")
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "imgs" / "a.png")
    proc = _main("--images", str(tmp_path / "imgs"), "--weights", str(ck), "--json", str(tmp_path / "o.json"),
                 "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "SPPE hourglass, decode dark (heatmap SPPE" in proc.stderr
    assert "decode regression" not in proc.stderr
    assert json.loads((tmp_path / "o.json").read_text()) == []


def test_gitignore_keeps_training_runs_out():
    assert "runs/" in (ROOT / ".gitignore").read_text().split()
