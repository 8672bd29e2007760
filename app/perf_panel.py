"""Performance panel: end-to-end FPS and per-stage latency over the last N seconds (pyqtgraph),
current queue depths, device and backend.

``FrameMeter`` is fed from the pipeline thread with every result (arrival times in a bounded
deque, lock-protected sums of stage timings); the panel drains it on a GUI timer, so plotting
never touches the pipeline's threads and the history stays bounded (N seconds of ticks).
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

TICK_S = 0.5  # one plotted point per tick
FPS_WINDOW_S = 3.0  # FPS = results over this window: steady at low rates, still follows a pause
END_TO_END = "end-to-end"  # capture → on screen, plotted with the stages
_STAGE_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c")


class FrameMeter:
    """Result arrival times and sums of their stage timings between two drains (thread-safe)."""

    def __init__(self, max_times: int = 4096):
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=max_times)
        self._reset()

    def _reset(self) -> None:
        self._latency_sum = 0.0
        self._latency_n = 0
        self._stage_sum: dict[str, float] = {}
        self._stage_n: dict[str, int] = {}

    def add(self, timings: dict[str, float] | None, latency_ms: float | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            if latency_ms is not None:
                self._latency_sum += latency_ms
                self._latency_n += 1
            for stage, ms in (timings or {}).items():
                self._stage_sum[stage] = self._stage_sum.get(stage, 0.0) + float(ms)
                self._stage_n[stage] = self._stage_n.get(stage, 0) + 1

    def rate(self, now: float, window: float = FPS_WINDOW_S) -> float:
        """Results per second over the last ``window`` seconds (0 when none arrived)."""
        with self._lock:
            recent = [t for t in self._times if t > now - window]
        if len(recent) >= 2 and recent[-1] > recent[0]:
            # between first and last arrival: no bias from where the window edge cuts
            return (len(recent) - 1) / (recent[-1] - recent[0])
        return len(recent) / window

    def drain(self) -> tuple[float | None, dict[str, float]]:
        """(mean end-to-end latency ms or None, mean ms per stage) since the last drain."""
        with self._lock:
            latency = self._latency_sum / self._latency_n if self._latency_n else None
            stages = {s: self._stage_sum[s] / self._stage_n[s] for s in self._stage_sum}
            self._reset()
        return latency, stages

    def clear(self) -> None:
        with self._lock:
            self._times.clear()
            self._reset()


class PerfPanel(QtWidgets.QWidget):
    window_changed = QtCore.Signal(int)  # seconds of history shown

    def __init__(self, window_s: int = 30, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.meter = FrameMeter()
        self._t0 = time.monotonic()
        self.last_fps = 0.0
        self.window_s = max(5, min(600, int(window_s)))
        maxlen = self._maxlen()
        self._t: deque[float] = deque(maxlen=maxlen)
        self._fps: deque[float] = deque(maxlen=maxlen)
        self._stage: dict[str, deque[float]] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._colours: dict[str, str] = {}

        pg.setConfigOptions(antialias=False, background="#121212", foreground="#cccccc")
        self.fps_plot = pg.PlotWidget()
        self.fps_plot.setTitle("End-to-end FPS")
        self.fps_plot.setLabel("bottom", "s")
        self.fps_plot.setMouseEnabled(False, False)
        self.fps_plot.showGrid(x=True, y=True, alpha=0.3)
        self.fps_curve = self.fps_plot.plot(pen=pg.mkPen("#ffd700", width=2))
        self.latency_plot = pg.PlotWidget()
        self.latency_plot.setTitle("Stage latency (ms, log)")
        self.latency_plot.setLogMode(x=False, y=True)  # decode ~ms, inference ~100 ms, warm-up spikes ~s
        self.latency_plot.setLabel("bottom", "s")
        self.latency_plot.setMouseEnabled(False, False)
        self.latency_plot.showGrid(x=True, y=True, alpha=0.3)
        # The legend is a line of text under the plot, not an item inside it: inside, it covered
        # the curves of a narrow panel.
        self.legend = QtWidgets.QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(QtCore.Qt.TextFormat.RichText)
        for plot in (self.fps_plot, self.latency_plot):
            plot.setMinimumHeight(140)

        self.summary = QtWidgets.QLabel("FPS –")
        self.totals = QtWidgets.QLabel("")
        self.queues = QtWidgets.QLabel("Queues: –")
        self.device = QtWidgets.QLabel("Device: –")
        for label in (self.summary, self.totals, self.queues, self.device):
            label.setWordWrap(True)
            label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        self.window_box = QtWidgets.QSpinBox()
        self.window_box.setRange(5, 600)
        self.window_box.setSuffix(" s")
        self.window_box.setValue(self.window_s)
        self.window_box.setKeyboardTracking(False)
        self.window_box.valueChanged.connect(self.set_window)
        header = QtWidgets.QHBoxLayout()
        header.addWidget(self.device, 1)
        header.addWidget(QtWidgets.QLabel("last"))
        header.addWidget(self.window_box)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(header)
        layout.addWidget(self.summary)
        layout.addWidget(self.totals)
        layout.addWidget(self.queues)
        layout.addWidget(self.fps_plot, 1)
        layout.addWidget(self.latency_plot, 1)
        layout.addWidget(self.legend)

    # -- feeding ---------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Add one plotted point from the meter (called from a GUI timer every TICK_S)."""
        now = time.monotonic() if now is None else now
        fps = self.meter.rate(now)
        latency, stages = self.meter.drain()
        if latency is not None:
            stages[END_TO_END] = latency
        t = now - self._t0
        self._t.append(t)
        self._fps.append(fps)
        for name in list(self._stage) + [n for n in stages if n not in self._stage]:
            series = self._stage.get(name)
            if series is None:
                # a stage first seen now gets NaN history so all series share the time axis
                series = self._stage[name] = deque([math.nan] * (len(self._t) - 1), maxlen=self._t.maxlen)
                colour = "#ffffff" if name == END_TO_END else _STAGE_COLOURS[len(self._curves) % len(_STAGE_COLOURS)]
                self._curves[name] = self.latency_plot.plot(pen=pg.mkPen(colour, width=2), connect="finite")
                self._colours[name] = colour
                self._update_legend()
            # a tick without results (slow CPU, pause) keeps the last measured value: a gap-free line
            series.append(stages.get(name, series[-1] if series else math.nan))
        self._redraw(t)
        self.last_fps = fps
        text = f"FPS {fps:.1f}"
        if latency is not None:
            text += f" · end-to-end latency {latency:.0f} ms"
        self.summary.setText(text)

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
            self.queues.setText("Queues before " + ", ".join(parts))
        if "frames" in stats:
            dropped = stats.get("dropped") or 0
            self.totals.setText(f"{stats['frames']} frames · {stats.get('fps', 0.0):.1f} fps average"
                                + (f" · dropped {dropped}" if dropped else ""))
        device = device or stats.get("device")
        backend = backend or stats.get("backend")
        if device or backend:
            mode = f" · {stats['mode']} mode" if stats.get("mode") else ""
            self.device.setText(f"Device: {device or '?'} · backend: {backend or '?'}{mode}")

    def _maxlen(self) -> int:
        return int(self.window_s / TICK_S) + 1

    def set_window(self, seconds: int) -> None:
        """Show the last ``seconds`` of history (keeps what is already recorded, up to that)."""
        self.window_s = max(5, min(600, int(seconds)))
        if self.window_box.value() != self.window_s:
            self.window_box.setValue(self.window_s)
        maxlen = self._maxlen()
        self._t = deque(self._t, maxlen=maxlen)
        self._fps = deque(self._fps, maxlen=maxlen)
        for name in self._stage:
            self._stage[name] = deque(self._stage[name], maxlen=maxlen)
        if self._t:
            self._redraw(self._t[-1])
        self.window_changed.emit(self.window_s)

    def fps_history(self) -> list[float]:
        return list(self._fps)

    def stage_names(self) -> list[str]:
        return list(self._stage)

    def reset(self) -> None:
        """Start the plots afresh (a new source)."""
        self.meter.clear()
        self._t0 = time.monotonic()
        self._t.clear()
        self._fps.clear()
        for name in list(self._curves):
            self.latency_plot.removeItem(self._curves.pop(name))
        self._stage.clear()
        self._colours.clear()
        self._update_legend()
        self.fps_curve.setData([], [])
        self.last_fps = 0.0
        self.summary.setText("FPS –")
        self.totals.setText("")
        self.queues.setText("Queues: –")
        self.device.setText("Device: –")

    def _update_legend(self) -> None:
        self.legend.setText(" ".join(f'<span style="color:{c}">━</span>&nbsp;{n}'
                                     for n, c in self._colours.items()))

    def _redraw(self, t: float) -> None:
        xs = list(self._t)
        self.fps_curve.setData(xs, list(self._fps))
        for name, curve in self._curves.items():
            curve.setData(xs, list(self._stage[name]))
        lo = max(0.0, t - self.window_s)
        for plot in (self.fps_plot, self.latency_plot):
            plot.setXRange(lo, max(t, lo + 1.0), padding=0)
