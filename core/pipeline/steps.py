"""Post-processing steps: what the pipeline's post stage runs, in order, on each frame's poses.

A step is any object with

    name: str                                   timing key (``post.<name>`` in ``--profile``)
    __call__(poses, timestamp, image) -> Poses   ``timestamp`` in seconds (source clock);
                                                 ``image`` the frame, RGB uint8 [H, W, 3]
    reset() -> None                              forget per-sequence state (seek, new source)

``Pipeline(post_steps=[...])`` runs them in list order on the post thread; the thread code knows
nothing about what a step does, so a new one (a refiner, a filter) is one more list entry.
Steps read their config section on every call, so ``Pipeline.update_config`` changes apply on
the next frame without rebuilding the list.

The list the CLI and the app use is built by ``core.cli.build_post_steps(config, fps)``, the
composition root (it alone may name ``trackers``); this module holds only what ``core`` owns:
the protocol, pose NMS as a step, and an adapter for ``fn(poses, timestamp)`` objects.
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from core.config import PoseNMSConfig
from core.pose_nms import pose_nms  # kernels warmed before frames flow (core.jit), not here
from core.poses import Poses


@runtime_checkable
class PostStep(Protocol):
    name: str

    def __call__(self, poses: Poses, timestamp: float, image: np.ndarray) -> Poses: ...

    def reset(self) -> None: ...


class PoseNMSStep:
    """Parametric pose NMS (``core.pose_nms``) per ``cfg.preset``; a pass-through when disabled."""

    name = "nms"

    def __init__(self, cfg: PoseNMSConfig):
        self.cfg = cfg

    def __call__(self, poses: Poses, timestamp: float, image: np.ndarray) -> Poses:
        if not self.cfg.enabled or len(poses) < 2:
            return poses
        return pose_nms(poses, self.cfg.preset)

    def reset(self) -> None:
        """Stateless."""


class SectionStep:
    """A ``fn(poses, timestamp) -> Poses`` with state, driven by a config section.

    ``fn`` handles ``section.enabled`` itself (e.g. the tracker marks ids -1 when off); this
    adapter adds one rule: when ``section.enabled`` turns back on, the state is reset first, so
    a filter switched on live starts from scratch rather than from stale tracks.
    """

    def __init__(self, name: str, section, fn: Callable[[Poses, float], Poses], reset: Callable[[], None]):
        self.name, self.section, self._fn, self._reset = name, section, fn, reset
        self._was_on = bool(getattr(section, "enabled", True))

    def __call__(self, poses: Poses, timestamp: float, image: np.ndarray) -> Poses:
        on = bool(getattr(self.section, "enabled", True))
        if on and not self._was_on:
            self._reset()
        self._was_on = on
        return self._fn(poses, timestamp)

    def reset(self) -> None:
        self._reset()


def core_post_steps(config) -> list[PostStep]:
    """The steps ``core`` can build on its own (pose NMS): a Pipeline's default when no list is given."""
    return [PoseNMSStep(config.pose_nms)]
