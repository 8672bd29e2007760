"""Fixtures for the evaluation tests: synthetic ground truth and results written as JSON files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.evaluation.scenes import synthetic_benchmark


@pytest.fixture(scope="module")
def benchmark_files(tmp_path_factory):
    """GT and results files with every error class (keypoint errors, scores, FP, FN)."""
    d = tmp_path_factory.mktemp("eval")
    gt, results, _ = synthetic_benchmark(np.random.default_rng(7), num_images=40)
    (d / "gt.json").write_text(json.dumps(gt))
    (d / "dt.json").write_text(json.dumps(results))
    return d / "gt.json", d / "dt.json"
