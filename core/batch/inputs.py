"""Collection inputs: videos, folders, glob patterns and list files → an ordered list of tasks.

Expansion rules (every input kind may be mixed on one command line):
- a folder: every file below it (recursively) with a video extension, sorted by path;
- a glob pattern (``*``, ``?``, ``[``; ``**`` recurses): the matching files, sorted;
- a list file (``.txt``/``.lst``/``.list``): one input per line, relative to the list's folder;
  blank lines and ``#`` comments are skipped; each line is expanded by these same rules;
- any other existing file: a video, whatever its extension (an unreadable one fails alone later).
A path met twice is processed once. Nothing found is a ``UserError``.

Naming: each video's outputs go to ``OUT/<name>/``. The name is the file's stem, or for a file
found in a folder its path relative to that folder with ``/`` replaced by ``__`` (flat, so that no
output folder ever contains another video's folder). Names that still collide get the first 8 hex
digits of the SHA-1 of the absolute path appended, so they are stable across runs of the same inputs.
"""
from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

VIDEO_EXTENSIONS = frozenset((".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                              ".flv", ".ts", ".mts", ".3gp", ".ogv"))
LIST_EXTENSIONS = frozenset((".txt", ".lst", ".list"))


@dataclass(frozen=True)
class Task:
    """One video of a collection: its position in the input order, absolute path and output name."""

    index: int
    video: str
    name: str


def _is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def _expand(spec: str, base: Path, out: list[tuple[Path, str]], exts: frozenset, depth: int = 0) -> None:
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_dir():
        found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        if not found:
            raise UserError(f"no input files ({', '.join(sorted(exts))}) in folder {path}")
        out.extend((f, "__".join(f.relative_to(path).with_suffix("").parts)) for f in found)
    elif _is_glob(spec):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise UserError(f"no files match {spec}")
        out.extend((f, f.stem) for f in found)
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        if depth > 0:
            raise UserError(f"list file {path} names another list file; lists do not nest")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        entries = [ln for ln in lines if ln and not ln.startswith("#")]
        if not entries:
            raise UserError(f"list file {path} names no inputs")
        for entry in entries:
            _expand(entry, path.parent, out, exts, depth + 1)
    elif path.is_file():
        out.append((path, path.stem))
    else:
        raise UserError(f"input not found: {spec}")


def expand_inputs(specs: list[str], extensions=VIDEO_EXTENSIONS) -> list[Task]:
    """Tasks for the given inputs, in order, each file once, with unique output names.
    ``extensions``: what a folder is searched for (a job over other files, e.g. results JSON, passes its own)."""
    exts = frozenset(e.lower() for e in extensions)
    found: list[tuple[Path, str]] = []
    for spec in specs:
        _expand(str(spec), Path.cwd(), found, exts)
    seen: set[Path] = set()
    unique = []
    for path, name in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((key, name or "video"))
    counts: dict[str, int] = {}
    for _, name in unique:
        counts[name] = counts.get(name, 0) + 1
    tasks = []
    for i, (path, name) in enumerate(unique):
        if counts[name] > 1:
            name = f"{name}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        tasks.append(Task(i, str(path), name))
    if not tasks:
        raise UserError("no videos given")
    return tasks
