"""Session fixtures: the CI training runs (assets/train_*_ci.yaml) happen once and are shared.

Runs go through the real command line (``core.cli.main``), in this process, on one torch thread
(``run.threads=1``: the CI machine has two busy cores; more threads only oversubscribe them; the
loops restore the thread count when they finish).
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from core import ASSETS_DIR
from core.cli import main as cli_main
from training.metrics import read_csv


@pytest.fixture
def one_thread():
    """One torch thread for this test (the training runs set their own, from run.threads)."""
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


def run_cli(args: list[str]) -> int:
    """``python main.py ARGS`` in this process. The command installs a stderr log handler on the
    root logger; it is removed afterwards so later tests do not log into a closed capture stream."""
    try:
        return cli_main(args)
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if type(handler) is logging.StreamHandler:
                root.removeHandler(handler)


@pytest.fixture(scope="session")
def cli():
    """``cli(["train", "sppe", ...])`` → exit code, as ``python main.py ...`` would return."""
    return run_cli


def train(task: str, config: str, out: Path, synthetic_dir: Path, *sets: str) -> int:
    args = ["train", task, "--config", str(ASSETS_DIR / config), "--out", str(out), "--no-progress",
            "--set", f"data.synthetic_dir={synthetic_dir}", "--set", "run.threads=1"]
    for s in sets:
        args += ["--set", s]
    return run_cli(args)


@pytest.fixture(scope="session")
def sppe_run(train_dir, synthetic_dir) -> dict:
    """assets/train_sppe_ci.yaml: a 1-stack hourglass trained ~450 steps on synthetic people."""
    out = train_dir / "sppe"
    assert train("sppe", "train_sppe_ci.yaml", out, synthetic_dir) == 0
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "steps": read_csv(out / "steps.csv"),
            "last": out / "last.pt", "best": out / "best.pt"}


@pytest.fixture(scope="session")
def rmpe_run(train_dir, synthetic_dir, sppe_run) -> dict:
    """assets/train_rmpe_ci.yaml on top of the SPPE run: STN stage + joint stage on jittered proposals."""
    out = train_dir / "rmpe"
    assert train("rmpe", "train_rmpe_ci.yaml", out, synthetic_dir, f"rmpe.init_sppe={sppe_run['last']}") == 0
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "last": out / "last.pt"}
