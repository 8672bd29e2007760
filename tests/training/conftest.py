"""Session fixtures: the CI training runs (assets/train_*_ci.yaml) happen once and are shared.

Runs go through the real command line (``core.cli.main``), in this process, on one torch thread
(``run.threads=1``: the CI machine has two busy cores; more threads only oversubscribe them; the
loops restore the thread count when they finish). Measured on 2 cores, 3 epochs of
train_sppe_ci.yaml: 23.7 s on one thread, 27.3 s on two; two one-thread runs side by side took
25.7 and 26.2 s. So the second core is used by a second process instead: when the session has
PoseFix tests, ``sppe_run`` starts the PoseFix run (independent of it) as ``python main.py train
posefix ...`` next to its own, and ``posefix_run`` waits for it.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import ASSETS_DIR, PROJECT_ROOT
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


def train_args(task: str, config: str, out: Path, synthetic_dir: Path, *sets: str) -> list[str]:
    args = ["train", task, "--config", str(ASSETS_DIR / config), "--out", str(out), "--no-progress",
            "--set", f"data.synthetic_dir={synthetic_dir}", "--set", "run.threads=1"]
    for s in sets:
        args += ["--set", s]
    return args


def train(task: str, config: str, out: Path, synthetic_dir: Path, *sets: str) -> int:
    return run_cli(train_args(task, config, out, synthetic_dir, *sets))


@pytest.fixture(scope="session")
def side_runs():
    """Training runs started in their own process, by name: (Popen, log path); killed if the
    session ends before anyone waited for them."""
    runs: dict[str, tuple[subprocess.Popen, Path]] = {}
    yield runs
    for proc, _ in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _posefix_args(train_dir: Path, synthetic_dir: Path) -> list[str]:
    return train_args("posefix", "train_posefix_ci.yaml", train_dir / "posefix", synthetic_dir)


@pytest.fixture(scope="session")
def sppe_run(request, train_dir, synthetic_dir, side_runs) -> dict:
    """assets/train_sppe_ci.yaml: a 1-stack hourglass trained ~450 steps on synthetic people
    (~80 s on 2 cores), with the PoseFix run in a second process if this session needs it."""
    if "posefix" not in side_runs and any("posefix_run" in item.fixturenames for item in request.session.items):
        log = train_dir / "posefix.log"
        cmd = [sys.executable, "main.py", *_posefix_args(train_dir, synthetic_dir)]
        with open(log, "w") as f:  # its own synthetic datasets (other seeds: other folders)
            side_runs["posefix"] = (subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=f, stderr=subprocess.STDOUT), log)
    out = train_dir / "sppe"
    assert train("sppe", "train_sppe_ci.yaml", out, synthetic_dir) == 0
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "steps": read_csv(out / "steps.csv"),
            "last": out / "last.pt", "best": out / "best.pt"}


@pytest.fixture(scope="session")
def posefix_run(train_dir, synthetic_dir, side_runs) -> dict:
    """assets/train_posefix_ci.yaml (~37 s on 2 cores): the run ``sppe_run`` started beside its own,
    else here."""
    if "posefix" in side_runs:
        proc, log = side_runs["posefix"]
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    else:
        side_runs["posefix"] = (None, None)  # so a later sppe_run starts no second one
        assert run_cli(_posefix_args(train_dir, synthetic_dir)) == 0
    out = train_dir / "posefix"
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "last": out / "last.pt", "best": out / "best.pt"}


@pytest.fixture(scope="session")
def rmpe_run(train_dir, synthetic_dir, sppe_run) -> dict:
    """assets/train_rmpe_ci.yaml on top of the SPPE run: STN stage + joint stage on jittered proposals."""
    out = train_dir / "rmpe"
    assert train("rmpe", "train_rmpe_ci.yaml", out, synthetic_dir, f"rmpe.init_sppe={sppe_run['last']}") == 0
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "last": out / "last.pt"}
