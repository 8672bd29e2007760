"""Atomic file writes: a file is either the previous complete version or the new complete one.

``atomic_write(path)`` yields a temporary path in the target's own folder (same filesystem, so
the final ``os.replace`` is atomic); on success the data is fsync'ed and renamed over ``path``;
on any exception the temporary file is removed and the target is left as it was. Process-unique
temporary names (pid + random) let several processes write the same target at once: the last
rename wins, and no reader ever sees a half-written file.

``atomic_write_bytes`` / ``atomic_write_text`` are the one-call forms. Output paths that must be
distinct from inputs and from each other are checked by :func:`check_distinct_paths`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from core.errors import UserError

TMP_PREFIX = ".rmpe-tmp-"


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh, unused temporary name next to ``path`` (created empty, mode 0644)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp makes 0600; outputs and caches are ordinary data
    return Path(name)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (a rename after a crash must not expose a hole)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """fsync ``tmp`` and rename it onto ``path`` (both in one folder)."""
    fsync_path(tmp)
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_write(p) as tmp: write tmp`` → ``p`` replaced by ``tmp`` only on success."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def real_path(path: str | os.PathLike) -> Path:
    """The absolute path with every symlink resolved (also for a path that does not exist yet)."""
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def check_distinct_paths(outputs, inputs=()) -> None:
    """Refuse an output that is an input, or two outputs on one path (symlinks resolved).

    ``outputs`` and ``inputs`` are (flag, path) pairs (or dicts flag → path) such as
    ``("--out", "a.mp4")``; a path of None or "" is not given. One ``UserError`` line naming both
    flags and the path; nothing is opened or written.
    """
    def pairs(items):
        items = items.items() if isinstance(items, dict) else items
        return [(flag, str(p), real_path(p)) for flag, p in items if p not in (None, "")]

    outs, ins = pairs(outputs), pairs(inputs)
    for i, (flag, given, path) in enumerate(outs):
        for in_flag, in_given, in_path in ins:
            if path == in_path:
                same = "" if given == in_given else f" ({path})"
                raise UserError(f"{flag} {given} would overwrite the input {in_flag} {in_given}{same}; "
                                "choose another output path")
        for other_flag, other_given, other in outs[i + 1:]:
            if path == other:
                raise UserError(f"{flag} {given} and {other_flag} {other_given} are the same file ({path}); "
                                "give each output its own path")
