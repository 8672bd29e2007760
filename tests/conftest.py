"""Shared fixtures. Tests that need fetched assets skip only when they are not installed;
`make test` installs them first, so CI always runs them."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see core/__init__.py

import numpy as np
import pytest

import core.jit  # noqa: F401,E402 - pins numba's cache to the real app cache before a test moves RMPE_LIVE_CACHE

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _installed(name: str) -> bool:
    from core.assets import is_installed

    return is_installed(name)


@pytest.fixture(scope="session")
def demo_video():
    """Path of the fetched demo video (Sports2D demo.mp4)."""
    if not _installed("demo_video"):
        pytest.skip("demo video not installed (python main.py models install)")
    from core.assets import artefact_path

    return artefact_path("demo_video")


@pytest.fixture(scope="session")
def blazepose_models():
    """Paths of the fetched BlazePose TFLite files, keyed by manifest name; also requires the
    default detector (NanoDet, npm) that the default configuration loads."""
    names = ("pose_detection", "pose_landmark_full")
    if not all(_installed(n) for n in names):
        pytest.skip("BlazePose models not installed (python main.py models install)")
    from core.models import npm_fetch

    if not npm_fetch.is_installed(npm_fetch.npm_model("nanodet")):
        pytest.skip("nanodet not installed (python main.py models install)")
    from core.assets import artefact_path

    return {n: artefact_path(n) for n in names}


@pytest.fixture
def rng():
    return np.random.default_rng(0)
