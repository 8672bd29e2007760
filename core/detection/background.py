"""Detector runners: how scheduled detector runs reach the frames while people are tracked.

Both run a scheduled run on a worker thread, on a copy of the frame (the renderer draws on the
original), while the SPPE reads the tracked people, and hand its people over on a later frame
than the one it was due on, as detections of an earlier frame
(``core.roi.RoiTracker.next_rois(arrived=...)``), so the frame that pays for a run never also
pays for reading the new people it found (a frame merging arrivals starts no scheduled run).
With nobody tracked (the start, after a seek) the estimator still detects inline and merges at
once, so a frame never shows nobody only because a run is pending.

- ``DeferredDetector`` (file mode): the next frame waits for the run, so its people join on
  exactly the next frame and results do not depend on timing; the run overlaps its own frame's
  SPPE on the second core. Recovery runs (``detect_near``) stay inline: they read only the views
  around the lost people and find a flickering small person again on the frame itself.
- ``BackgroundDetector`` (real-time modes): recovery runs go to the worker too, and the people
  of a run join on the first frame after it finishes, so no frame waits for a run. A new person
  appears a frame or two later.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from core.detection.detections import Detections


class _Runner:
    """A detector (``detector(frame_rgb) -> Detections``) run on a thread of its own per run, on a
    copy of the frame: one run in flight at most, and no thread outlives its run (a pipeline that
    ends leaves none behind). ``start(frame)`` begins a run when none is pending (else nothing
    happens: the schedule slips rather than queues); ``take()`` returns the detections of the
    run once (``last_ms``: how long it ran), or None; a run's exception is raised there."""

    inline_recovery: bool  # whether the estimator runs ``detect_near`` on the calling thread
    waits_at_take: bool  # take() waits for a run in flight (else returns None until it is done)
    thread_name: str

    def __init__(self, detector):
        self.detector = detector
        self._thread: threading.Thread | None = None
        self._outcome: list = []  # [(detections, ms)] or [exception], filled by the run's thread
        self.started = 0  # runs started (for measurement)
        self.last_ms = 0.0  # how long the run take() returned took on its thread

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, frame_rgb: np.ndarray) -> None:
        self._start(self.detector, frame_rgb)

    def _start(self, fn, frame_rgb, *args) -> None:
        if self._thread is not None:  # in flight, or finished and not yet taken
            return
        self.started += 1
        frame, outcome = np.array(frame_rgb, copy=True), []

        def run() -> None:
            try:
                outcome.append(_timed(fn, frame, *args))
            except BaseException as error:  # handed to the frame that takes the run
                outcome.append(error)

        self._outcome = outcome
        # not a daemon: an exit mid-run waits for it (ms) instead of tearing down the runtime under it
        self._thread = threading.Thread(target=run, name=self.thread_name)
        self._thread.start()

    def wait(self) -> None:
        """Until the run in flight (if any) has finished."""
        if self._thread is not None:
            self._thread.join()

    def take(self) -> Detections | None:
        if self._thread is None or (self._thread.is_alive() and not self.waits_at_take):
            return None
        self._thread.join()
        self._thread = None
        (outcome,) = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        detections, self.last_ms = outcome
        return detections

    def reset(self) -> None:
        """Drop the run not yet taken (a seek, a new source: it finishes first, ms, and its result
        or error is dropped) and reset the detector's own state."""
        self.wait()
        self._thread = None
        if hasattr(self.detector, "reset"):
            self.detector.reset()

    def close(self) -> None:
        self.reset()


class DeferredDetector(_Runner):
    """File mode: ``take()`` on the next frame waits for the run, so its people join on exactly
    that frame whatever the timing; recovery runs stay inline (the estimator's ``detect_near``).

    At width 640 a NanoDet run costs ~1.5 median frames and each new person's SPPE read ~0.45
    more; on one frame together they made the worst frames. Run inline and read a frame later,
    the run's frame still paid for all of it (worst / median frame 2.6-3.3 over 7 runs, loaded
    host); overlapped with that frame's SPPE and joined on the next, 2.4-2.9 (docs/roi_tracking.md).
    """

    inline_recovery = True
    waits_at_take = True
    thread_name = "rmpe-detect-next"


class BackgroundDetector(_Runner):
    """Real-time modes: ``take()`` returns a run only once it has finished, and recovery runs go
    to a thread too, through ``start_near(frame, centres, sides)`` (the detector's
    ``detect_near``)."""

    inline_recovery = False
    waits_at_take = False
    thread_name = "rmpe-detect"

    def start_near(self, frame_rgb: np.ndarray, centres: np.ndarray, sides: np.ndarray) -> None:
        self._start(self.detector.detect_near, frame_rgb, np.array(centres, copy=True),
                    np.array(sides, copy=True))


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1000.0
