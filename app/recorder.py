"""Recording from the GUI: the annotated stream to H.264 mp4 and the poses to COCO JSON and CSV.

Recording starts and stops while the pipeline runs, so the writers are not pipeline sinks: the
session hands every result to ``write`` on the pipeline's sinks thread and the GUI thread calls
``start``/``stop``; a lock keeps the two apart. Writers open lazily on the first frame (they need
its size) and are finalised by ``stop``, so every file is valid and the mp4 playable.

A recording is a session the user starts and stops: it spans loops, seeks, pauses and restarts of
the source. So the files carry their own clock: frame ``n`` of the mp4 is entry ``n`` of the JSON
and CSV (``index`` renumbered from 0), and its time advances by the source's frame gap when the
source moved forward by under a second (frames dropped in real time keep their spacing), else by
one frame interval (a loop back to the start, a seek, a step while paused).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

from core.errors import UserError

log = logging.getLogger("rmpe.app")


class Recorder:
    def __init__(self):
        self._lock = threading.Lock()
        self._writers: list | None = None  # open writers while recording
        self._base: Path | None = None
        self._fps = 30.0
        self._live = False
        self.frames = 0
        self.error: str | None = None  # first write failure (recording stops there)
        self._clock = 0.0  # the recording's own time of the last frame written (s)
        self._source_t: float | None = None  # source timestamp of the last frame written

    @property
    def active(self) -> bool:
        return self._base is not None

    def start(self, folder: str | Path, fps: float = 30.0, live: bool = False, stem: str | None = None) -> Path:
        """Begin recording into ``folder``; returns the common base path of the three files."""
        from core.io import check_output_path

        folder = Path(folder).expanduser()
        check_output_path(folder, "recording", is_dir=True)
        stem = stem or time.strftime("rmpe-%Y%m%d-%H%M%S")
        base = folder / stem
        n = 1
        while any(base.with_suffix(s).exists() for s in (".mp4", ".json", ".csv")):
            base = folder / f"{stem}-{n}"
            n += 1
        with self._lock:
            if self._base is not None:
                raise UserError("already recording")
            self._base, self._fps, self._live = base, float(fps or 30.0), bool(live)
            self._writers = None
            self.frames = 0
            self.error = None
            self._clock, self._source_t = 0.0, None
        log.info("recording to %s.{mp4,json,csv}", base)
        return base

    def write(self, result) -> None:
        """Pipeline thread: append one finished frame (no-op while not recording)."""
        if self._base is None:  # unlocked fast path: the common case costs nothing
            return
        with self._lock:
            if self._base is None or self.error is not None:
                return
            try:
                if self._writers is None:
                    self._writers = self._open(result)
                own = self._renumber(result)
                for writer in self._writers:
                    writer.write(own)
                self.frames += 1
            except Exception as exc:  # noqa: BLE001 - a full disk stops the recording, not the app
                self.error = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                log.error("recording stopped: %s", self.error)

    def stop(self) -> list[Path]:
        """Finalise the files; returns the paths written (none if no frame arrived)."""
        with self._lock:
            writers, base = self._writers, self._base
            self._writers, self._base = None, None
        if base is None or writers is None:
            return []
        errors = []
        for writer in writers:
            try:
                writer.close()
            except Exception as exc:  # noqa: BLE001 - close the others too
                errors.append(f"{type(exc).__name__}: {exc}")
        if errors:
            raise UserError("finishing the recording failed: " + "; ".join(errors))
        return [base.with_suffix(s) for s in (".mp4", ".json", ".csv")]

    def _renumber(self, result):
        """A shallow copy of ``result`` on the recording's own frame numbers and clock."""
        interval = 1.0 / self._fps
        if self._source_t is not None:
            gap = float(result.timestamp) - self._source_t
            self._clock += gap if 0.0 < gap < 1.0 else interval
        self._source_t = float(result.timestamp)
        return dataclasses.replace(result, index=self.frames, timestamp=self._clock)

    def _open(self, result) -> list:
        from core.io import CocoJsonWriter, CsvWriter, SourceInfo, VideoWriter

        frame = result.rendered if result.rendered is not None else result.frame
        h, w = frame.shape[:2]
        info = SourceInfo(self._base.name, self._fps, int(w), int(h), None, self._live)
        writers = [VideoWriter(self._base.with_suffix(".mp4")), CocoJsonWriter(self._base.with_suffix(".json")),
                   CsvWriter(self._base.with_suffix(".csv"))]
        opened = []
        try:
            for writer in writers:
                writer.open(info, None)
                opened.append(writer)
        except BaseException:
            for writer in opened:
                writer.close()
            raise
        return writers
