"""RMPE-Live desktop app (PySide6): the only package that imports Qt.

Import `app.cli` (no Qt at import time) to start it; the Qt modules load only after the PySide6
version has been checked, because PySide6 6.12.0 aborts the interpreter.
"""
