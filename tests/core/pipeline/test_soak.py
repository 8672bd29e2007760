"""The short soak: the whole pipeline on a looped small demo clip keeps its memory flat."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[3] / "bench" / "soak.py"


@pytest.mark.long  # a soak: make test-long (make test leaves it out to stay under 15 minutes)
def test_short_soak_memory_is_flat(tmp_path, blazepose_models, demo_video):
    spec = importlib.util.spec_from_file_location("rmpe_bench_soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    # Warm-up covers one pass of the 230-frame looped clip: the first time two people are in view
    # ONNX Runtime sizes its arena for the larger batch (a one-off step of ~30 MiB), then RSS is flat.
    result = soak.run(frames=500, width=256, warmup=250, workdir=str(tmp_path))
    assert result["frames"] == 500
    assert result["growth"] < soak.GOAL_GROWTH, result
