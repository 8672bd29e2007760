"""Model code: the TFLite graph executor, the embedded-model zoo, spatial transformers, SPPEs.

This package's ``__init__`` stays free of torch so that cheap checks (``models install`` when all
is present, ``models list``) do not pay torch's import time.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

# Bump when the decoded-weights layout changes: older caches are then rebuilt on first load.
WEIGHT_CACHE_FORMAT = "rmpe-tflite-weights/1"


def weight_cache_path(tflite_path: str | Path) -> Path:
    """Decoded weights of a .tflite file live next to it as .safetensors."""
    return Path(tflite_path).with_suffix(".safetensors")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_weight_cache_metadata(path: str | Path) -> dict[str, str] | None:
    """The ``__metadata__`` of a safetensors file (header only), or None if absent/unreadable.

    The header is an 8-byte little-endian length followed by JSON (safetensors format), so this
    needs neither torch nor reading the tensors.
    """
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return None
    meta = header.get("__metadata__")
    return meta if isinstance(meta, dict) else None


def weight_cache_is_current(tflite_path: str | Path, source_sha256: str) -> bool:
    """True when the safetensors cache was built by this format version from these exact bytes."""
    meta = read_weight_cache_metadata(weight_cache_path(tflite_path))
    return bool(meta) and meta.get("format") == WEIGHT_CACHE_FORMAT \
        and meta.get("source_sha256") == source_sha256
