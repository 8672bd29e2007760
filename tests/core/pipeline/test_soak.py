"""The short soak: the whole pipeline on a looped small demo clip keeps its memory flat."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[3] / "bench" / "soak.py"


@pytest.mark.slow
def test_short_soak_memory_is_flat(tmp_path, blazepose_models, demo_video):
    spec = importlib.util.spec_from_file_location("rmpe_bench_soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    result = soak.run(frames=300, width=256, warmup=100, workdir=str(tmp_path))
    assert result["frames"] == 300
    assert result["growth"] < soak.GOAL_GROWTH, result
