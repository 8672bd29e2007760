"""Session fixtures: the CI training runs (assets/train_*_ci.yaml) happen once and are shared.

Runs go through the real command line (``core.cli.main``), in this process, on one torch thread
(the CI machine has two busy cores; more threads only oversubscribe them).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core import ASSETS_DIR
from core.cli import main as cli_main
from training.metrics import read_csv


@pytest.fixture(scope="session")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="session")
def synthetic_dir(train_dir) -> Path:
    """Generated synthetic datasets, shared by every run (keyed by their spec)."""
    d = train_dir / "data"
    d.mkdir(exist_ok=True)
    return d


def train(task: str, config: str, out: Path, synthetic_dir: Path, *sets: str) -> int:
    args = ["train", task, "--config", str(ASSETS_DIR / config), "--out", str(out), "--no-progress",
            "--set", f"data.synthetic_dir={synthetic_dir}", "--set", "run.threads=1"]
    for s in sets:
        args += ["--set", s]
    return cli_main(args)


@pytest.fixture(scope="session")
def sppe_run(train_dir, synthetic_dir, one_thread) -> dict:
    """assets/train_sppe_ci.yaml: a 1-stack hourglass trained ~450 steps on synthetic people."""
    out = train_dir / "sppe"
    assert train("sppe", "train_sppe_ci.yaml", out, synthetic_dir) == 0
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "steps": read_csv(out / "steps.csv"),
            "last": out / "last.pt", "best": out / "best.pt"}


@pytest.fixture(scope="session")
def rmpe_run(train_dir, synthetic_dir, sppe_run, one_thread) -> dict:
    """assets/train_rmpe_ci.yaml on top of the SPPE run: STN stage + joint stage on jittered proposals."""
    out = train_dir / "rmpe"
    assert train("rmpe", "train_rmpe_ci.yaml", out, synthetic_dir, f"rmpe.init_sppe={sppe_run['last']}") == 0
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "last": out / "last.pt"}
