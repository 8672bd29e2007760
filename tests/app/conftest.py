"""Qt fixtures for the app tests (offscreen platform, isolated settings dir)."""
from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6", reason="the app tests need PySide6 (pip install -e '.[gui]')")


@pytest.fixture(scope="session")
def qapp():
    from PySide6 import QtWidgets

    from app.version_check import check_pyside

    check_pyside()
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """Each test reads and writes its own settings file, never the user's."""
    monkeypatch.setenv("RMPE_LIVE_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config" / "app.yaml"


def wait_until(app, predicate, timeout: float = 30.0, interval_ms: int = 10) -> bool:
    """Run the event loop until ``predicate()`` holds; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if predicate():
            return True
        time.sleep(interval_ms / 1000)
    app.processEvents()
    return bool(predicate())


@pytest.fixture
def wait(qapp):
    """wait(predicate, timeout=30) -> bool, spinning the Qt event loop meanwhile."""
    return lambda predicate, timeout=30.0: wait_until(qapp, predicate, timeout)
