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


@pytest.fixture(scope="session")
def demo_run(blazepose_models, demo_video):
    """The whole 230-frame demo through one PoseEstimator with the default configuration on the
    CPU, once per session (~50 s on 2 shared cores): tests/core/test_estimator.py reads the raw
    poses, stage timings and detector runs, tests/trackers/test_demo_ids.py tracks the pose-NMS'd
    poses. Both ran this same clip through the same configuration in their own module fixtures.

    Returns a namespace: ``estimator`` (reset it before reuse), ``fps``, and per frame ``poses``
    (``infer``), ``kept`` (``postprocess`` of those: pose NMS), ``timings`` (ms per stage) and
    ``times`` (s); ``detector_runs`` after the clip."""
    from types import SimpleNamespace

    import av

    from core.config import Config
    from core.estimator import PoseEstimator

    estimator = PoseEstimator(Config.load(), "cpu")
    run = SimpleNamespace(estimator=estimator, poses=[], kept=[], timings=[], times=[])
    with av.open(str(demo_video)) as container:
        stream = container.streams.video[0]
        run.fps = float(stream.average_rate)
        for frame in container.decode(stream):
            timings = {}
            poses = estimator.infer(frame.to_ndarray(format="rgb24"), timings)
            run.poses.append(poses)
            run.kept.append(estimator.postprocess(poses))
            run.timings.append(timings)
            run.times.append(float(frame.time))
    run.detector_runs = estimator.detector_runs
    return run
