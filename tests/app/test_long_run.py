"""Long run: 2,000 frames through the whole GUI path with the real pose models, flat memory and no
object growth.

The source is a 40-frame 320×240 clip played in a loop (core.io LoopSource over an ImageSource):
8 frames of the demo's jumping man (cropped around him and scaled down), then 32 synthetic
frames without anybody (core.io PatternSource). So every loop a person appears, is detected,
tracked (a new track id), smoothed, drawn and shown, then leaves and his track dies — the state
churn that leaks show up in — while most frames cost only a detector pass. Everything is real:
PoseEstimator (ONNX Runtime / torch on CPU), Pipeline threads, tracker, smoother, renderer,
session mailbox, video view and performance panel. Memory is compared between result 500
(everything warmed up) and result 2,000.
"""
from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc

import cv2
import numpy as np
import pytest

from core.config import Config

pytestmark = [pytest.mark.gui, pytest.mark.assets]

FRAMES = 2000
WARM = 500
MID = 1250
PERSON_FRAMES, EMPTY_FRAMES = 8, 32
SIZE = (320, 240)
MAN_REGION = (slice(0, 540), slice(280, 1000))  # demo frames (1768×994): the man on the roof, 4:3


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _qobjects(window) -> int:
    """Qt objects under the window, less style animations (Fusion starts and ends them at will)."""
    from PySide6 import QtCore

    return sum(not isinstance(o, QtCore.QAbstractAnimation) for o in window.findChildren(QtCore.QObject))


@pytest.fixture
def clip(tmp_path, demo_video):
    """Folder of the 40 PNG frames: the man from the demo's first frames, then nobody."""
    from core.io import PatternSource, open_source

    folder = tmp_path / "clip"
    folder.mkdir()
    frames = []
    with open_source(video=str(demo_video)) as video:
        for _ in range(PERSON_FRAMES):
            frames.append(cv2.resize(video.read().image[MAN_REGION], SIZE, interpolation=cv2.INTER_AREA))
    pattern = PatternSource(*SIZE, num_frames=EMPTY_FRAMES)
    frames += [pattern.read().image for _ in range(EMPTY_FRAMES)]
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


def test_two_thousand_frames_keep_memory_flat(qapp, wait, clip, blazepose_models, tmp_path):
    from app.main_window import MainWindow
    from app.sources_dialog import SourceSpec
    from app.settings import Settings
    from core.io import ImageSource, LoopSource

    settings = Settings(tmp_path / "app.yaml")
    # the clip is one 320×240 tile anyway; the default interval: tracked frames skip the detector
    window = MainWindow(Config.load(overrides={"detector": {"tiling": False}}), settings)
    window.show()
    people_shown = []  # people on each shown frame (the slot runs after the window's own)
    window.session.frame_ready.connect(lambda: people_shown.append(len(window._last_result.poses))
                                       if window._last_result is not None else None)
    window.open_source(SourceSpec("images", str(clip)), source=LoopSource(ImageSource(clip), FRAMES))
    started = time.monotonic()
    try:
        points = []  # (results, RSS MB, gc objects, QObjects, traced bytes) at WARM, MID, FRAMES
        for i, target in enumerate((WARM, MID, FRAMES)):
            assert wait(lambda: window.session.results >= target, timeout=240), window.message.text()
            if target == FRAMES:
                assert wait(lambda: window.session.pipeline is None or not window.session.pipeline.running,
                            timeout=30)
                qapp.processEvents()
            gc.collect()
            if i == 0:
                tracemalloc.start()
            points.append((window.session.results, _rss_mb(), len(gc.get_objects()), _qobjects(window),
                           tracemalloc.get_traced_memory()[0]))
        tracemalloc.stop()
        took = time.monotonic() - started
        stats = window.session.stats()
        print(f"\nlong run: {window.session.results} results in {took:.1f} s, {window.frames_shown} shown, "
              f"{sum(n > 0 for n in people_shown)} shown with the man; {window.session.info.backend}; "
              f"infer {stats['stages']['infer']['mean_ms']:.1f} ms/frame")
        for n, rss, objs, qobjs, traced in points:
            print(f"  at {n:5d}: RSS {rss:.1f} MB, gc objects {objs}, QObjects {qobjs}, "
                  f"traced Python memory {traced / 1024:.0f} KiB")
        (_, rss0, objs0, q0, tr0), (_, rss1, objs1, q1, tr1), (_, rss2, objs2, q2, tr2) = points
        assert window.session.results == FRAMES
        assert window.frames_shown > 200  # the view really kept showing frames
        assert window._last_result.index == FRAMES - 1
        # the real models found the man on his frames (8 of every 40) and nobody on the others
        assert sum(n > 0 for n in people_shown) > 0.1 * len(people_shown), np.bincount(people_shown)
        assert max(people_shown) <= 2, np.bincount(people_shown)
        assert rss2 - rss0 < 25.0, (rss0, rss2)  # includes tracemalloc's own bookkeeping
        assert objs2 - objs0 < 1000 and objs2 - objs1 < 300, (objs0, objs1, objs2)
        assert q2 == q0  # no widgets, plot items or timers pile up
        assert tr2 - tr1 < 512 * 1024, (tr1, tr2)  # Python allocations flat over the last 750 frames
    finally:
        window.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("rmpe-")]
