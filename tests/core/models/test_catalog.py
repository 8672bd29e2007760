"""The catalog of runnable choices: every config choice is listed, every model it names exists in
the manifest, and "installed" follows the files actually in the cache."""
from __future__ import annotations

import os

import pytest

from core.assets import manifest
from core.config import choices
from core.models import catalog, npm_fetch


@pytest.mark.parametrize("section,key", [("detector", "name"), ("sppe", "model")])
def test_every_choice_lists_its_models_and_they_are_in_the_manifest(section, key):
    known = set(manifest()) | set(npm_fetch.npm_models())
    for name in choices(section, key):
        assert (section, name) in catalog.REQUIRES, f"{section} {name} missing from the catalog"
        assert set(catalog.REQUIRES[(section, name)]) <= known


def _partial_cache(tmp_path, monkeypatch, models: list[str]):
    """A cache holding only ``models`` (links to the real files)."""
    real = npm_fetch._cache()
    for name in models:
        files = ([f.file for f in npm_fetch.npm_model(name).files] if name in npm_fetch.npm_models()
                 else [manifest()[name].file])
        for file in files:
            if not (real / file).exists():
                pytest.skip(f"{file} is not installed (python main.py models install --all)")
            (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(real / file, tmp_path / file)
    monkeypatch.setenv("RMPE_LIVE_CACHE", str(tmp_path))


@pytest.mark.parametrize("models,detectors,sppes", [
    ([], ("hog",), ()),
    (["pose_detection", "pose_landmark_full"], ("blazepose", "hog"), ("blazepose", "blazepose-full")),
    (["nanodet", "pose_landmark_full", "movenet-thunder"], ("hog", "nanodet"),
     ("blazepose", "blazepose-full", "movenet-thunder")),
])
def test_installed_choices_follow_the_cache(tmp_path, monkeypatch, models, detectors, sppes):
    _partial_cache(tmp_path, monkeypatch, models)
    assert catalog.installed_choices("detector") == detectors
    assert catalog.installed_choices("sppe") == sppes
    assert catalog.installed_choices("sppe", has_checkpoint=True) == sppes + ("hourglass", "resnet")
    line = catalog.describe_choices("sppe")
    assert line.startswith(f"installed: {', '.join(sppes) or 'none'};")
    assert "blazepose-heavy" in line.split("not installed")[1]


def test_a_truncated_file_is_not_installed(tmp_path, monkeypatch):
    _partial_cache(tmp_path, monkeypatch, [])
    file = tmp_path / manifest()["pose_detection"].file
    file.parent.mkdir(parents=True)
    file.write_bytes(b"\0" * 100)
    assert catalog.missing("detector", "blazepose") == ("pose_detection",)


def test_an_optional_npm_model_missing_names_its_own_install_command(tmp_path, monkeypatch):
    _partial_cache(tmp_path, monkeypatch, [])
    from core.errors import ModelsNotInstalled

    with pytest.raises(ModelsNotInstalled, match=r"run: python main.py models install movenet-thunder$"):
        npm_fetch.model_paths("movenet-thunder")
    with pytest.raises(ModelsNotInstalled, match=r"run: python main.py models install$"):
        npm_fetch.model_paths("nanodet")  # a default model: the plain command installs it
