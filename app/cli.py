"""`python main.py` / `python main.py gui`: open the desktop app.

Nothing here imports Qt at module level: the PySide6 version is checked first, because 6.12.0
aborts the interpreter.
"""
from __future__ import annotations

import argparse
import logging
import sys

from core.config import choices
from core.errors import UserError

log = logging.getLogger("rmpe.app")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--video", metavar="PATH", help="video file to open ('demo' for the demo video)")
    src.add_argument("--camera", metavar="INDEX", type=int, help="camera index to open")
    src.add_argument("--images", metavar="DIR", help="image folder or glob to open")
    src.add_argument("--url", metavar="URL", help="RTSP/HTTP stream to open")
    parser.add_argument("--config", metavar="YAML", help="config overrides (same sections as assets/default.yaml)")
    parser.add_argument("--device", choices=choices("runtime", "device"),
                        help="compute device (default: settings, else auto)")
    parser.add_argument("--pause-after", metavar="N", type=int,
                        help="pause once N frames have been shown (for screenshots and demos)")
    parser.add_argument("--reset-settings", action="store_true",
                        help="start from the default settings (saved again when the window closes)")


def initial_source(args: argparse.Namespace, settings=None):
    """(SourceSpec or None, note for the message bar). No source flag: the last file or image
    folder opened (``settings["source"]``), else a camera, else the demo video; a last source that
    is gone falls back to the demo with a note saying so."""
    import os

    from app.sources_dialog import SourceSpec, list_cameras
    from core.assets import artefact_path

    if args.video == "demo":
        return SourceSpec("file", str(artefact_path("demo_video"))), ""
    if args.video:
        return SourceSpec("file", args.video), ""
    if args.camera is not None:
        return SourceSpec("camera", args.camera), ""
    if args.images:
        return SourceSpec("images", args.images), ""
    if args.url:
        return SourceSpec("url", args.url), ""
    last = SourceSpec.from_dict(settings["source"]) if settings is not None and settings["source"] else None
    if last is not None and last.kind in ("file", "images"):
        if os.path.exists(str(last.value)) or (last.kind == "images" and any(c in str(last.value) for c in "*?[")):
            return last, ""
        try:
            demo = artefact_path("demo_video")
        except UserError as exc:
            return None, f"{last.label()} (opened last time) is gone, and {exc}"
        return SourceSpec("file", str(demo)), f"{last.value} (opened last time) is gone — playing the demo video instead."
    cameras = list_cameras()
    if cameras:
        index = 0 if 0 in cameras else cameras[0]
        return SourceSpec("camera", index), ""
    try:
        demo = artefact_path("demo_video")
    except UserError as exc:
        return None, f"No camera found, and {exc}"
    return SourceSpec("file", str(demo)), "No camera found — playing the demo video instead."


def run(args: argparse.Namespace) -> int:
    from app.version_check import check_platform, check_pyside

    version = check_pyside()  # before any Qt import
    check_platform()
    from PySide6 import QtCore, QtWidgets

    from app.main_window import MainWindow
    from app.settings import Settings
    from app.style import apply_style
    from core.config import Config

    config = Config.load(args.config)
    settings = Settings()
    if not args.reset_settings:
        settings.load()
        settings.apply_to(config)
    if args.device:
        config.runtime.device = args.device
    import torch

    cuda = torch.cuda.is_available()
    if config.runtime.device == "cuda" and not cuda:
        if args.device == "cuda":
            raise UserError("--device cuda: CUDA is not available on this machine")
        log.warning("saved settings ask for CUDA, which is not available here: using auto")
        config.runtime.device = "auto"
    log.info("PySide6 %s, CUDA %s", version, "available" if cuda else "not available")

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("RMPE-Live")
    apply_style(app)
    window = MainWindow(config, settings, cuda_available=cuda, pause_after=args.pause_after)
    _route_exceptions_to(window)
    _close_on_signals(window)
    window.show()
    try:
        spec, note = initial_source(args, settings if not args.reset_settings else None)
    except UserError as exc:  # e.g. --video demo before the demo is installed: say so in the window
        spec, note = None, str(exc)
    if note:
        log.info("%s", note)
    if spec is not None:
        window.open_source(spec, note)
    elif note:
        window.message.show_message(note, "error")
    code = int(app.exec())
    if window.isVisible():  # the loop ended some other way: stop, finalise and save all the same
        window.close()
    if not window.session.stopped:  # before deleting the session: a late thread may still signal
        _exit_without_shutdown(code)
    # Tear the widgets down here, in order, rather than leave them to interpreter shutdown, where
    # Python and Qt destroy objects in no defined order.
    window.deleteLater()
    app.processEvents()
    app.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    return code


def _exit_without_shutdown(code: int) -> None:
    """Leave now when a pipeline thread outlived the window (it did not stop within the join
    timeouts, e.g. stuck in a model or decoder call on a starved CPU).

    Interpreter shutdown would end that daemon thread, or free what it uses, while it is inside
    torch, ONNX Runtime or FFmpeg: exiting with daemon threads in model calls aborted the process
    ("terminate called without an active exception") every time it was tried. Everything the user
    keeps is already written (the window's close finalised the recording and saved the settings).
    """
    import os
    import threading

    alive = sorted(t.name for t in threading.enumerate() if t.name.startswith("rmpe-") and t.is_alive())
    log.error("threads still running at exit (%s): leaving without interpreter shutdown", ", ".join(alive))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _close_on_signals(window) -> None:
    """Ctrl-C and SIGTERM close the window the normal way (pipeline stopped, recording finalised).

    Python runs signal handlers between bytecodes; the window's perf timer runs Python code twice
    a second, so the handler gets its turn even while Qt's event loop is in C++.
    """
    import signal

    from PySide6 import QtCore

    def handler(signum, frame):
        log.info("%s: closing", signal.Signals(signum).name)
        # the handler may interrupt any Python code (a paint, a plot update): close from the loop
        # with the window as context: a timer still pending when the window is gone never fires
        QtCore.QTimer.singleShot(0, window, window.close)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _route_exceptions_to(window) -> None:
    """An exception escaping a slot is logged and shown in the window instead of ending the app."""
    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            window.close()
            return
        log.error("unexpected error", exc_info=(exc_type, exc, tb))
        text = str(exc) if isinstance(exc, UserError) else f"{exc_type.__name__}: {exc}"
        window.message.show_message(text, "error")

    sys.excepthook = hook
