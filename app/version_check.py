"""Refuse PySide6 builds known to break the app, before anything imports Qt.

PySide6 6.12.0 leaks references to None and aborts the interpreter after a while, so the app
would die mid-session; 6.11.2 is the pinned, tested version.
"""
from __future__ import annotations

from importlib import metadata

from core.errors import UserError

PINNED = "PySide6-Essentials==6.11.2"
BROKEN = {"6.12.0": "aborts the interpreter (leaked references to None)"}
_DISTRIBUTIONS = ("PySide6-Essentials", "PySide6")


def installed_pyside_version() -> str | None:
    """Version of the installed PySide6 distribution, read from its metadata (no Qt import)."""
    for name in _DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_pyside(version: str | None = None) -> str:
    """Return the PySide6 version, or raise UserError naming the pin when it is missing or broken."""
    version = installed_pyside_version() if version is None else version
    if version is None:
        raise UserError(f"the desktop app needs PySide6; install it with: pip install '{PINNED}' pyqtgraph")
    if version in BROKEN:
        raise UserError(f"PySide6 {version} {BROKEN[version]}; install the pinned version: "
                        f"pip install '{PINNED}'")
    return version
