"""Performance panel: end-to-end FPS and per-stage latency over the last N seconds (pyqtgraph),
current queue depths, device and backend.

``FrameMeter`` is fed from the pipeline thread with every result (cheap, lock-protected sums);
the panel drains it on a GUI timer, so plotting never touches the pipeline's threads and the
history stays bounded (a deque of N seconds of ticks).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

TICK_S = 0.5  # one plotted point per tick
_STAGE_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c")


class FrameMeter:
    """Counts results and sums their stage timings between two drains (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._latency_sum = 0.0
        self._latency_n = 0
        self._stage_sum: dict[str, float] = {}
        self._stage_n: dict[str, int] = {}

    def add(self, timings: dict[str, float] | None, latency_ms: float | None) -> None:
        with self._lock:
            self._count += 1
            if latency_ms is not None:
                self._latency_sum += latency_ms
                self._latency_n += 1
            for stage, ms in (timings or {}).items():
                self._stage_sum[stage] = self._stage_sum.get(stage, 0.0) + float(ms)
                self._stage_n[stage] = self._stage_n.get(stage, 0) + 1

    def drain(self) -> tuple[int, float | None, dict[str, float]]:
        """(results since last drain, mean latency ms or None, mean ms per stage)."""
        with self._lock:
            count = self._count
            latency = self._latency_sum / self._latency_n if self._latency_n else None
            stages = {s: self._stage_sum[s] / self._stage_n[s] for s in self._stage_sum}
            self._reset()
        return count, latency, stages


class PerfPanel(QtWidgets.QWidget):
    def __init__(self, window_s: int = 30, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.meter = FrameMeter()
        self._t0 = time.monotonic()
        self._last_tick = self._t0
        self.window_s = int(window_s)
        maxlen = max(2, int(self.window_s / TICK_S) + 1)
        self._t: deque[float] = deque(maxlen=maxlen)
        self._fps: deque[float] = deque(maxlen=maxlen)
        self._stage: dict[str, deque[float]] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}

        pg.setConfigOptions(antialias=False, background="#121212", foreground="#cccccc")
        self.fps_plot = pg.PlotWidget()
        self.fps_plot.setTitle("End-to-end FPS")
        self.fps_plot.setLabel("bottom", "s")
        self.fps_plot.setMouseEnabled(False, False)
        self.fps_plot.showGrid(x=True, y=True, alpha=0.3)
        self.fps_curve = self.fps_plot.plot(pen=pg.mkPen("#ffd700", width=2))
        self.latency_plot = pg.PlotWidget()
        self.latency_plot.setTitle("Stage latency (ms)")
        self.latency_plot.setLabel("bottom", "s")
        self.latency_plot.setMouseEnabled(False, False)
        self.latency_plot.showGrid(x=True, y=True, alpha=0.3)
        self.latency_plot.addLegend(offset=(5, 5), labelTextSize="7pt")
        for plot in (self.fps_plot, self.latency_plot):
            plot.setMinimumHeight(140)

        self.summary = QtWidgets.QLabel("–")
        self.queues = QtWidgets.QLabel("Queues: –")
        self.device = QtWidgets.QLabel("Device: –")
        for label in (self.summary, self.queues, self.device):
            label.setWordWrap(True)
            label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.device)
        layout.addWidget(self.summary)
        layout.addWidget(self.queues)
        layout.addWidget(self.fps_plot, 1)
        layout.addWidget(self.latency_plot, 1)

    # -- feeding ---------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Drain the meter into one plotted point (called from a GUI timer every TICK_S)."""
        now = time.monotonic() if now is None else now
        dt = max(now - self._last_tick, 1e-6)
        self._last_tick = now
        count, latency, stages = self.meter.drain()
        fps = count / dt
        t = now - self._t0
        self._t.append(t)
        self._fps.append(fps)
        for name in set(self._stage) | set(stages):
            series = self._stage.get(name)
            if series is None:
                # a stage first seen now gets NaN history so all series share the time axis
                series = self._stage[name] = deque([float("nan")] * (len(self._t) - 1), maxlen=self._t.maxlen)
                colour = _STAGE_COLOURS[len(self._curves) % len(_STAGE_COLOURS)]
                self._curves[name] = self.latency_plot.plot(name=name, pen=pg.mkPen(colour, width=2),
                                                            connect="finite")
            series.append(stages.get(name, float("nan")))
        self._redraw(t)
        latency_text = f" · latency {latency:.0f} ms" if latency is not None else ""
        self.last_fps = fps
        self.summary.setText(f"FPS {fps:.1f}{latency_text}")

    def set_stats(self, stats: dict[str, Any] | None, device: str | None = None, backend: str | None = None) -> None:
        """Queue depths, dropped frames, device and backend from Pipeline.stats()."""
        stats = stats or {}
        queues = stats.get("queues") or {}
        if queues:
            parts = []
            for name, q in queues.items():
                label = name.removesuffix("_in")
                if isinstance(q, dict):  # sampled depth: current (last sample) else mean, of capacity
                    depth = q.get("current", q.get("mean", 0.0))
                    parts.append(f"{label} {depth:.1f}/{q.get('capacity', '?')} (max {q.get('max', '?')})")
                else:
                    parts.append(f"{label} {q}")
            dropped = stats.get("dropped")
            tail = f" · dropped {dropped}" if dropped else ""
            self.queues.setText("Queues before " + ", ".join(parts) + tail)
        device = device or stats.get("device")
        backend = backend or stats.get("backend")
        if device or backend:
            mode = f" · {stats['mode']} mode" if stats.get("mode") else ""
            self.device.setText(f"Device: {device or '?'} · backend: {backend or '?'}{mode}")

    def set_window(self, seconds: int) -> None:
        self.window_s = int(seconds)

    def fps_history(self) -> list[float]:
        return list(self._fps)

    def stage_names(self) -> list[str]:
        return list(self._stage)

    def reset(self) -> None:
        self.meter.drain()
        self._t.clear()
        self._fps.clear()
        for name in list(self._curves):
            self.latency_plot.removeItem(self._curves.pop(name))
        self._stage.clear()
        legend = self.latency_plot.plotItem.legend
        if legend is not None:
            legend.clear()
        self.fps_curve.setData([], [])

    def _redraw(self, t: float) -> None:
        xs = list(self._t)
        self.fps_curve.setData(xs, list(self._fps))
        for name, curve in self._curves.items():
            curve.setData(xs, list(self._stage[name]))
        lo = max(0.0, t - self.window_s)
        for plot in (self.fps_plot, self.latency_plot):
            plot.setXRange(lo, max(t, lo + 1.0), padding=0)
