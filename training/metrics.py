"""CSV metric logs (one row per step or epoch) and a throughput meter."""
from __future__ import annotations

import csv
import time
from pathlib import Path


class CSVLog:
    """Append rows to a CSV file with a fixed header (``fields``; missing values stay empty).

    Resuming appends to an existing file (keeping its header); rows are flushed as written, so a
    crash loses nothing already logged.
    """

    def __init__(self, path: str | Path, fields: list[str], enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.fields: list[str] | None = list(fields)
        self._new = not self.path.is_file()
        if enabled and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
            self.fields = header or self.fields

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if self._new:
                writer.writeheader()
                self._new = False
            writer.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a metrics CSV with numbers parsed."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        parsed = {}
        for k, v in row.items():
            try:
                parsed[k] = int(v)
            except (TypeError, ValueError):
                try:
                    parsed[k] = float(v)
                except (TypeError, ValueError):
                    parsed[k] = v
        out.append(parsed)
    return out


class Throughput:
    """Samples per second over a window (wall clock)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.count = 0

    def add(self, n: int) -> None:
        self.count += n

    def rate(self) -> float:
        dt = time.perf_counter() - self.start
        return self.count / dt if dt > 0 else 0.0

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.count = 0
