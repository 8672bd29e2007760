"""A detector run on a worker thread, for the real-time modes: no frame waits for a detector run.

Synchronous detection puts a whole detector run (NanoDet's views: 25–100 ms on 2 cores) into the
frames it runs on, and those frames set the real-time latency's tail and the worst frame. Here a
run starts on a copy of the frame (the renderer draws on the original) and the SPPE goes on with
the tracked people meanwhile; the people the run found join on the first frame after it finishes,
as detections of an earlier frame (``core.roi.RoiTracker.next_rois(arrived=...)``). The cost:
a new person appears a frame or two later. With nobody tracked (the start, after a seek) the
estimator still detects inline, so a frame never shows nobody only because its run is pending.
File mode keeps synchronous detection, whose results do not depend on timing.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

import numpy as np

from core.detection.detections import Detections


class BackgroundDetector:
    """Wraps a detector (``detector(frame_rgb) -> Detections``, optionally ``detect_near``).

    ``start(frame)`` / ``start_near(frame, centres, sides)`` begin a run when none is in flight
    (else do nothing: the schedule slips rather than queues); ``take()`` returns the detections
    of the run that finished since the last ``take()``, or None (``last_ms``: how long it ran).
    A run's exception is raised by ``take()``.
    """

    def __init__(self, detector):
        self.detector = detector
        self.name = getattr(detector, "name", "?")
        self.has_near = hasattr(detector, "detect_near")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rmpe-detect")
        self._future: Future | None = None
        self.started = 0  # runs started (for measurement)
        self.last_ms = 0.0  # how long the run take() returned took on its worker

    @property
    def busy(self) -> bool:
        return self._future is not None and not self._future.done()

    def start(self, frame_rgb: np.ndarray) -> None:
        self._start(self.detector, frame_rgb)

    def start_near(self, frame_rgb: np.ndarray, centres: np.ndarray, sides: np.ndarray) -> None:
        self._start(self.detector.detect_near, frame_rgb, np.array(centres, copy=True),
                    np.array(sides, copy=True))

    def _start(self, fn, frame_rgb, *args) -> None:
        if self._future is not None:  # in flight, or finished and not yet taken
            return
        self.started += 1
        self._future = self._pool.submit(_timed, fn, np.array(frame_rgb, copy=True), *args)

    def wait(self) -> None:
        """Until the run in flight (if any) has finished."""
        if self._future is not None:
            wait([self._future])

    def take(self) -> Detections | None:
        if self._future is None or not self._future.done():
            return None
        future, self._future = self._future, None
        detections, self.last_ms = future.result()
        return detections

    def reset(self) -> None:
        """Forget the run in flight (its result is dropped: a seek or a new source) and reset the
        detector's own state once it is idle."""
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result()  # a run already started finishes first (ms)
            except BaseException:  # its error belongs to a frame nobody wants any more
                pass
            self._future = None
        if hasattr(self.detector, "reset"):
            self.detector.reset()

    def close(self) -> None:
        self.reset()
        self._pool.shutdown(wait=True)


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1000.0
