"""Cached model files checked where they are used, cheaply.

Each cache folder holds a stamp, ``.verified.json``: for every file verified there, its size,
mtime (ns) and sha256. ``check_file`` trusts a file whose size and mtime still match its stamp
(a stat, no hashing); otherwise it hashes the file and compares with the reference: the
manifest's sha256 for a fetched artefact, the stamped sha256 for a derived cache (.safetensors,
.onnx), which ``record`` stamps when it is written. A derived file that has no stamp yet (a
cache built before stamps existed) is stamped as it is on first use. A mismatch is one
``UserError`` naming the file and the repair command; ``models install`` drops derived files that
fail the check and rebuilds them.

Not covered: a change that keeps both size and mtime (``touch -r`` after editing) passes the cheap
check; ``models install`` always hashes the fetched artefacts in full.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from core.errors import UserError
from core.models import file_sha256

log = logging.getLogger("rmpe.models")

STAMP_NAME = ".verified.json"
REPAIR_COMMAND = "python main.py models install"
DERIVED_SUFFIXES = (".safetensors", ".onnx")  # caches built from a .tflite file, next to it


def _stamp_file(path: Path) -> Path:
    return path.parent / STAMP_NAME


def _read_stamps(folder_stamp: Path) -> dict:
    try:
        data = json.loads(folder_stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(path: str | os.PathLike, sha256: str | None = None) -> None:
    """Stamp ``path`` as verified (its size, mtime and sha256); a read-only cache is left alone."""
    from core.fileio import atomic_write_text

    path = Path(path)
    try:
        st = path.stat()
        digest = sha256 or file_sha256(path)
        stamp = _stamp_file(path)
        stamps = _read_stamps(stamp)
        stamps[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        atomic_write_text(stamp, json.dumps(stamps, indent=1, sort_keys=True))
    except OSError as exc:
        log.debug("could not stamp %s as verified: %s", path, exc)


def problem(path: str | os.PathLike, sha256: str | None = None) -> str | None:
    """None when ``path`` is intact, else why not (see the module docstring); stamps what it hashed."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path} is missing ({exc.strerror})"
    entry = _read_stamps(_stamp_file(path)).get(path.name)
    entry = entry if isinstance(entry, dict) else None
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns \
            and (sha256 is None or entry.get("sha256") == sha256):
        return None  # verified before and unchanged since
    reference = sha256 or (entry or {}).get("sha256")
    digest = file_sha256(path)
    if reference is not None and digest != reference:
        source = "the manifest" if sha256 else "the copy verified when it was written"
        return f"{path} is corrupted or was modified (sha256 {digest[:12]}..., {source} says {reference[:12]}...)"
    record(path, digest)
    return None


def check_file(path: str | os.PathLike, sha256: str | None = None) -> None:
    """UserError naming the file and the repair command unless ``path`` is intact."""
    why = problem(path, sha256)
    if why is not None:
        raise UserError(f"cached file {why}; repair: {REPAIR_COMMAND}")


def derived_files(tflite_path: str | os.PathLike) -> list[Path]:
    """The caches built from a .tflite file that exist next to it."""
    base = Path(tflite_path)
    return [p for p in (base.with_suffix(s) for s in DERIVED_SUFFIXES) if p.exists()]


def check_model(tflite_path: str | os.PathLike, sha256: str) -> None:
    """The fetched .tflite against the manifest's sha256 and every cache built from it (at load)."""
    check_file(tflite_path, sha256)
    for path in derived_files(tflite_path):
        check_file(path)


def drop_damaged_derived(tflite_path: str | os.PathLike) -> list[Path]:
    """Remove the caches built from ``tflite_path`` that fail the check (``models install`` rebuilds them)."""
    dropped = []
    for path in derived_files(tflite_path):
        if problem(path) is not None:
            path.unlink(missing_ok=True)
            dropped.append(path)
            log.info("removed damaged cache %s (rebuilt below)", path)
    return dropped
