"""Post steps: a new step plugs into the composed list without touching the thread code; steps
see the frame, run in order, are timed, reset on a seek, and follow live config."""
from __future__ import annotations

import numpy as np
import pytest

from core.cli import build_post_steps
from core.config import Config
from core.io import PatternSource, pattern_index
from core.pipeline import Pipeline
from core.pipeline.steps import PoseNMSStep, PostStep, SectionStep
from core.poses import Poses


class StandInRefiner:
    """Moves every keypoint 3 px right and records the frame index it was given with the poses."""

    name = "refine"

    def __init__(self):
        self.calls: list[tuple[int, int]] = []  # (frame index read from the image, box x1)
        self.seen_x: dict[int, np.ndarray] = {}  # frame index -> keypoint x it was given
        self.resets = 0

    def __call__(self, poses: Poses, timestamp: float, image: np.ndarray) -> Poses:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.calls.append((pattern_index(image), int(round(poses.boxes[0, 0]))))
        self.seen_x[pattern_index(image)] = poses.keypoints[0, :, 0].copy()
        out = poses.copy()
        out.keypoints[:, :, 0] += 3.0
        return out

    def reset(self) -> None:
        self.resets += 1


def _config() -> Config:
    cfg = Config.load()
    cfg.smoothing.enabled = False  # keypoints as the steps made them
    return cfg


def test_composed_chain_order_and_protocol():
    steps = build_post_steps(_config(), 30.0)
    assert [s.name for s in steps] == ["nms", "track", "smooth"]
    assert all(isinstance(s, PostStep) for s in steps)


def test_inserted_refiner_runs_between_nms_and_tracking(pattern_estimator):
    cfg = _config()
    source = PatternSource(64, 48, num_frames=40)
    refiner = StandInRefiner()
    steps = build_post_steps(cfg, source.fps)
    steps.insert(1, refiner)  # after pose NMS, before tracking: where PoseFix goes
    results = []
    p = Pipeline(source, cfg, estimator=pattern_estimator(), render=False, profile=True,
                 post_steps=steps, on_result=results.append)
    p.start()
    p.wait()
    assert [r.index for r in results] == list(range(40))
    # the refiner got each frame's own image together with that frame's poses
    assert refiner.calls == [(i, i % 24) for i in range(40)]
    for r in results:
        np.testing.assert_allclose(r.poses.keypoints[0, :, 0], refiner.seen_x[r.index] + 3.0, atol=1e-4)
        assert r.poses.track_ids[0] >= 0  # tracking ran after the refiner
        assert "post.refine" in r.timings
    assert {"post.nms", "post.refine", "post.track", "post.smooth"} <= set(p.stats()["substages"])


def test_every_step_resets_on_seek(pattern_estimator):
    cfg = _config()
    refiner = StandInRefiner()
    source = PatternSource(64, 48, num_frames=100)
    p = Pipeline(source, cfg, estimator=pattern_estimator(delay_s=0.002), render=False,
                 post_steps=[*build_post_steps(cfg, source.fps), refiner])
    p.pause()
    p.step()
    p.start()
    p.seek(60)
    p.resume()
    p.wait()
    assert refiner.resets >= 1
    assert refiner.calls[-1][0] == 99


def test_default_pipeline_runs_only_core_steps(pattern_estimator):
    p = Pipeline(PatternSource(64, 48, num_frames=5), _config(), estimator=pattern_estimator(), render=False)
    assert [s.name for s in p.post_steps] == ["nms"]
    assert isinstance(p.post_steps[0], PoseNMSStep)


def test_duplicate_step_names_are_refused(pattern_estimator):
    cfg = _config()
    with pytest.raises(ValueError, match="unique"):
        Pipeline(PatternSource(64, 48, num_frames=5), cfg, estimator=pattern_estimator(),
                 post_steps=[PoseNMSStep(cfg.pose_nms), PoseNMSStep(cfg.pose_nms)])


def test_section_step_resets_when_switched_back_on():
    cfg = _config().tracking
    log = []
    step = SectionStep("x", cfg, lambda poses, t: log.append(("call", cfg.enabled)) or poses,
                       lambda: log.append(("reset", cfg.enabled)))
    poses = Poses.empty()
    image = np.zeros((4, 4, 3), np.uint8)
    step(poses, 0.0, image)
    cfg.enabled = False
    step(poses, 0.1, image)
    cfg.enabled = True
    step(poses, 0.2, image)
    step(poses, 0.3, image)
    assert log == [("call", True), ("call", False), ("reset", True), ("call", True), ("call", True)]


def test_nms_step_follows_live_config():
    cfg = _config().pose_nms
    kp = np.tile(np.stack([np.linspace(10, 50, 17), np.linspace(10, 90, 17), np.full(17, 0.9)], -1), (2, 1, 1))
    kp[1, :, :2] += 0.5  # a near-duplicate of the first person
    poses = Poses(np.array([[10, 10, 50, 90], [10.5, 10.5, 50.5, 90.5]], float), kp, np.array([0.9, 0.8]))
    step = PoseNMSStep(cfg)
    image = np.zeros((4, 4, 3), np.uint8)
    assert len(step(poses, 0.0, image)) == 1
    cfg.enabled = False
    assert len(step(poses, 0.0, image)) == 2
