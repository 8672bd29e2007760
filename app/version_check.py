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


# Libraries Qt's X11 (xcb) platform plugin loads, and the Debian/Ubuntu packages that ship them.
XCB_LIBRARIES = {
    "xcb-cursor": "libxcb-cursor0", "xcb-icccm": "libxcb-icccm4", "xcb-image": "libxcb-image0",
    "xcb-keysyms": "libxcb-keysyms1", "xcb-randr": "libxcb-randr0", "xcb-render-util": "libxcb-render-util0",
    "xcb-shape": "libxcb-shape0", "xcb-xfixes": "libxcb-xfixes0", "xcb-xkb": "libxcb-xkb1",
    "xkbcommon-x11": "libxkbcommon-x11-0",
}


def check_platform(environ: dict | None = None, platform: str | None = None, find_library=None) -> None:
    """Refuse, with one line, what would make Qt abort the interpreter at QApplication().

    On Linux Qt aborts when no display is reachable and when its X11 (xcb) plugin cannot load
    one of its libraries; both are cheap to detect first.
    """
    import ctypes.util
    import os
    import sys

    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    find_library = ctypes.util.find_library if find_library is None else find_library
    if not platform.startswith("linux"):
        return
    qpa = environ.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0]
    if qpa and qpa != "xcb":
        return  # offscreen, wayland, vnc, ...: Qt reports its own problems without aborting
    if not qpa and environ.get("WAYLAND_DISPLAY"):
        return
    if not environ.get("DISPLAY"):
        raise UserError("no display: DISPLAY is not set (run on a desktop, under Xvfb, "
                        "or headless with QT_QPA_PLATFORM=offscreen)")
    missing = [pkg for lib, pkg in XCB_LIBRARIES.items() if find_library(lib) is None]
    if missing:
        raise UserError(f"Qt's X11 plugin needs system libraries that are missing; install: "
                        f"sudo apt-get install {' '.join(missing)}")
