"""Pipeline measurements: per-stage timings, queue depths, end-to-end FPS and latency.

Timings are kept in fixed-size windows (the last ``WINDOW`` samples), so memory stays flat on
endless live runs; counts are totals. ``Recorder`` objects are written by one stage thread and read
by any thread (``snapshot`` takes a lock).
"""
from __future__ import annotations

import json
import threading
from collections import deque
from pathlib import Path

import numpy as np

WINDOW = 4096


class Recorder:
    """Durations (ms) of one stage or sub-stage."""

    def __init__(self, window: int = WINDOW):
        self._ms = deque(maxlen=window)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, ms: float) -> None:
        with self._lock:
            self._ms.append(ms)
            self.count += 1

    def values(self) -> np.ndarray:
        """The samples in the window, oldest first."""
        with self._lock:
            return np.fromiter(self._ms, dtype=np.float64, count=len(self._ms))

    def snapshot(self, elapsed_s: float | None = None) -> dict:
        with self._lock:
            ms = np.fromiter(self._ms, dtype=np.float64, count=len(self._ms))
            count = self.count
        if not len(ms):
            return {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0, "fps": 0.0, "capacity_fps": 0.0}
        mean = float(ms.mean())
        return {
            "count": count,
            "mean_ms": mean,
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            # fps: what the stage actually delivered over the run; capacity: what it could do alone.
            "fps": count / elapsed_s if elapsed_s else 0.0,
            "capacity_fps": 1000.0 / mean if mean > 0 else 0.0,
        }


class DepthRecorder:
    """Sampled depths of one queue (sampled each time its consumer takes an item)."""

    def __init__(self, capacity: int, window: int = WINDOW):
        self.capacity = capacity
        self._d = deque(maxlen=window)
        self._lock = threading.Lock()
        self.max = 0

    def add(self, depth: int) -> None:
        with self._lock:
            self._d.append(depth)
            self.max = max(self.max, depth)

    def snapshot(self) -> dict:
        with self._lock:
            d = np.fromiter(self._d, dtype=np.float64, count=len(self._d))
        return {"capacity": self.capacity, "mean": float(d.mean()) if len(d) else 0.0,
                "max": int(self.max), "samples": int(len(d))}


class RateMeter:
    """Recent rate of events (e.g. results per second over the last ``n`` results)."""

    def __init__(self, n: int = 30):
        self._t = deque(maxlen=n)
        self._lock = threading.Lock()

    def tick(self, t: float) -> None:
        with self._lock:
            self._t.append(t)

    def rate(self) -> float:
        with self._lock:
            if len(self._t) < 2 or self._t[-1] <= self._t[0]:
                return 0.0
            return (len(self._t) - 1) / (self._t[-1] - self._t[0])


def format_table(stats: dict) -> str:
    """The profile as a fixed-width text table (stages, sub-stages, queues, totals)."""
    lines = [f"{'stage':<26}{'count':>7}{'mean ms':>10}{'p50 ms':>9}{'p95 ms':>9}{'fps':>9}{'capacity':>10}"]
    rows = [(name, s) for name, s in stats.get("stages", {}).items()]
    rows += [(f"  {name}", s) for name, s in stats.get("substages", {}).items()]
    for name, s in rows:
        lines.append(f"{name:<26}{s['count']:>7}{s['mean_ms']:>10.2f}{s['p50_ms']:>9.2f}{s['p95_ms']:>9.2f}"
                     f"{s['fps']:>9.1f}{s['capacity_fps']:>10.1f}")
    queues = stats.get("queues", {})
    if queues:
        lines.append("")
        lines.append(f"{'queue':<26}{'capacity':>9}{'mean':>8}{'max':>6}")
        for name, q in queues.items():
            lines.append(f"{name:<26}{q['capacity']:>9}{q['mean']:>8.2f}{q['max']:>6}")
    lat = stats.get("latency_ms", {})
    lines.append("")
    lines.append(f"frames {stats.get('frames', 0)} in {stats.get('elapsed_s', 0.0):.2f} s, "
                 f"end-to-end {stats.get('fps', 0.0):.2f} fps, dropped {stats.get('dropped', 0)} "
                 f"({stats.get('mode', '?')} mode)")
    if lat:
        lines.append(f"latency captured→result: mean {lat['mean']:.1f} ms, p50 {lat['p50']:.1f} ms, "
                     f"p95 {lat['p95']:.1f} ms, max {lat['max']:.1f} ms")
    return "\n".join(lines)


def latency_summary(rec: Recorder) -> dict:
    """mean / p50 / p95 / max of a recorder's window (empty dict before the first sample)."""
    ms = rec.values()
    if not len(ms):
        return {}
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "max": float(ms.max())}


def write_json(stats: dict, path: str | Path) -> None:
    from core.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(stats, indent=2) + "\n")
