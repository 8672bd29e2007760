"""Fixtures for tracker tests: the synthetic sequence / CLEAR-MOT helper module."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_NAME = "rmpe_tests_trackers_synthetic"


def load_synthetic():
    """tests/trackers/synthetic.py as a module (test helpers are not a package under importlib mode)."""
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("synthetic.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


@pytest.fixture(scope="session")
def synthetic():
    return load_synthetic()
