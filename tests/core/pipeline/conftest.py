"""A cheap, deterministic estimator for exercising the real Pipeline threads without the models.

The Pipeline accepts any object with the estimator interface (``infer``, ``postprocess``,
``reset``, ``device``, ``backend``); this one reads the frame index that ``PatternSource`` stores
in pixel (0, 0) and returns one person whose box and keypoints encode that index, so tests can
check exactly which frames were processed and in what order.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.config import Config
from core.io import PatternSource, pattern_index
from core.poses import Poses


class PatternEstimator:
    device = "cpu"
    backend = "pattern"

    def __init__(self, delay_s: float = 0.0, fail_at: int | None = None, jitter_s: float = 0.0):
        self.delay_s, self.fail_at, self.jitter_s = delay_s, fail_at, jitter_s
        self.seen: list[int] = []
        self.resets = 0
        self.thread_names: set[str] = set()
        self._rng = np.random.default_rng(0)

    def infer(self, frame: np.ndarray, timings: dict | None = None) -> Poses:
        index = pattern_index(frame)
        self.thread_names.add(threading.current_thread().name)
        if self.fail_at is not None and index >= self.fail_at:
            raise RuntimeError(f"synthetic failure at frame {index}")
        delay = self.delay_s + (self._rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0)
        if delay:
            time.sleep(delay)
        self.seen.append(index)
        if timings is not None:
            timings["work"] = delay * 1000
        return pose_for_index(index, frame.shape[1], frame.shape[0])

    def postprocess(self, poses: Poses) -> Poses:
        return poses

    def reset(self) -> None:
        self.resets += 1


def pose_for_index(index: int, width: int, height: int) -> Poses:
    """One upright stick person; x1 of the box is ``index`` (mod the width) so it can be read back."""
    x0 = float(index % max(width - 40, 1))
    ys = np.linspace(5, height - 5, 17)
    kp = np.stack([x0 + 20 + 10 * np.sin(np.arange(17)), ys, np.full(17, 0.9)], -1)
    box = [x0, 0.0, x0 + 40.0, float(height)]
    return Poses([box], kp[None], [0.9])


def box_index(poses: Poses) -> int:
    return int(round(poses.boxes[0, 0]))


@pytest.fixture
def pattern_estimator():
    return PatternEstimator


@pytest.fixture
def quiet_config():
    """Default config with tracking and smoothing as shipped."""
    return Config.load()


@pytest.fixture
def pattern_video():
    """Write ``n`` PatternSource frames to an H.264 MP4 with our VideoWriter; returns the path."""
    from core.io import VideoWriter
    from core.io.writers import SourceInfo

    def make(path, n: int, width: int = 96, height: int = 64, fps: float = 30.0):
        source = PatternSource(width, height, fps, num_frames=n)
        writer = VideoWriter(path)
        writer.open(SourceInfo("pattern", fps, width, height, n, False), Config.load())
        while (item := source.read()) is not None:
            writer.write(_Frame(item.index, item.timestamp, item.image))
        writer.close()
        return path

    return make


class _Frame:
    def __init__(self, index, timestamp, frame):
        self.index, self.timestamp, self.frame, self.rendered = index, timestamp, frame, None
