"""Long run: 2,000 frames through the whole GUI path with flat memory and no object growth.

A 320×240 test pattern (core.io.PatternSource) goes through the real Pipeline threads, renderer,
tracker, smoother, session mailbox, video view and performance panel; the pose models are replaced
by a scripted estimator (tests/app/conftest.py) so the run takes seconds and measures the GUI, not
the models. Memory is compared between frame 500 (everything warmed up) and frame 2,000.
"""
from __future__ import annotations

import gc
import os
import threading
import tracemalloc

import pytest

from core.config import Config

pytestmark = pytest.mark.gui

FRAMES = 2000
WARM = 500
MID = 1250


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _qobjects(window) -> int:
    """Qt objects under the window, less style animations (Fusion starts and ends them at will)."""
    from PySide6 import QtCore

    return sum(not isinstance(o, QtCore.QAbstractAnimation) for o in window.findChildren(QtCore.QObject))


def test_two_thousand_frames_keep_memory_flat(qapp, wait, scripted_estimator, tmp_path):
    from app.main_window import MainWindow
    from app.settings import Settings
    from app.sources_dialog import SourceSpec
    from core.io import PatternSource

    settings = Settings(tmp_path / "app.yaml")
    window = MainWindow(Config.load(), settings, estimator_factory=scripted_estimator)
    window.show()
    source = PatternSource(320, 240, fps=30.0, num_frames=FRAMES)
    window.open_source(SourceSpec("url", "pattern://320x240"), source=source)
    try:
        points = []  # (results, RSS MB, gc objects, QObjects, traced bytes) at WARM, MID, FRAMES
        for i, target in enumerate((WARM, MID, FRAMES)):
            assert wait(lambda: window.session.results >= target, timeout=120), window.message.text()
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
        print(f"\nlong run: {window.session.results} results, {window.frames_shown} shown")
        for n, rss, objs, qobjs, traced in points:
            print(f"  at {n:5d}: RSS {rss:.1f} MB, gc objects {objs}, QObjects {qobjs}, "
                  f"traced Python memory {traced / 1024:.0f} KiB")
        (_, rss0, objs0, q0, tr0), (_, rss1, objs1, q1, tr1), (_, rss2, objs2, q2, tr2) = points
        assert window.session.results == FRAMES
        assert window.frames_shown > 200  # the view really kept showing frames
        assert window._last_result.index == FRAMES - 1
        assert rss2 - rss0 < 25.0, (rss0, rss2)  # includes tracemalloc's own bookkeeping
        assert objs2 - objs0 < 1000 and objs2 - objs1 < 300, (objs0, objs1, objs2)
        assert q2 == q0  # no widgets, plot items or timers pile up
        assert tr2 - tr1 < 512 * 1024, (tr1, tr2)  # Python allocations flat over the last 750 frames
    finally:
        window.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("rmpe-")]
