"""The batch manifest: ``OUT/manifest.jsonl``, one JSON object per finished video, appended.

Record keys: ``input`` (absolute path), ``name`` (output folder under OUT), ``job`` (job kind),
``status`` (``ok`` | ``failed``), ``outputs`` (kind → path relative to OUT), ``files`` (every file of
the output folder, path relative to OUT → ``[bytes, sha256]``), ``frames``, ``fps`` (frames per
second of this video's processing), ``video_fps``, ``seconds`` (wall time of the job), ``error``
(one line, or null), ``worker`` (host:pid), ``finished_at`` (UTC ISO time).

Only the driver writes it, one ``write`` + fsync per line, after the video's output folder has
been renamed into place. The latest record of an input is its state; earlier ones are history.
A hard kill during a write can leave a torn last line: readers skip lines that do not parse and
``Manifest.open_for_append`` ends such a line before appending.

Completion proof (why a skipped video is really complete): a video is skipped on resume only when
its latest record is ``ok`` and every file listed in ``files`` still has that size and SHA-256. The
hash is computed by the worker right before the atomic rename, so it covers exactly what the
pipeline wrote after it ended without error; re-hashing on resume costs one read of the outputs
(about 1 GB/s), far less than recomputing them, and catches truncation, edits and deletions for
every output kind alike (no per-format parser needed).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST_NAME = "manifest.jsonl"


def fingerprint(folder: Path, rel_to: Path) -> dict[str, list]:
    """``{path relative to rel_to: [bytes, sha256 hex]}`` for every file below ``folder``."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files[path.relative_to(rel_to).as_posix()] = [path.stat().st_size, _sha256(path)]
    return files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(record: dict, out_dir: Path) -> bool:
    """True when the record is ``ok`` and every file it lists is on disk with its size and hash."""
    if record.get("status") != "ok" or not record.get("files"):
        return False
    for rel, (size, sha) in record["files"].items():
        path = out_dir / rel
        try:
            if path.stat().st_size != size or _sha256(path) != sha:
                return False
        except OSError:
            return False
    return True


class Manifest:
    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / MANIFEST_NAME

    def records(self) -> list[dict]:
        """Every parseable record, oldest first."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn line from a hard kill mid-write
            if isinstance(rec, dict) and "input" in rec:
                out.append(rec)
        return out

    def latest(self) -> dict[str, dict]:
        """The latest record of each input (by absolute path)."""
        return {rec["input"]: rec for rec in self.records()}

    def open_for_append(self) -> None:
        """End a torn last line, so the next record starts on its own line."""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def append(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
