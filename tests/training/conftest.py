"""Session fixtures: the CI training runs (assets/train_*_ci.yaml) happen once and are shared.

Runs go through the real command line (``core.cli.main``), in this process, on one torch thread
(``run.threads=1``: the CI machine has two busy cores; more threads only oversubscribe them; the
loops restore the thread count when they finish). Measured on 2 cores, 3 epochs of
train_sppe_ci.yaml: 23.7 s on one thread, 27.3 s on two; two one-thread runs side by side took
25.7 and 26.2 s. So the second core is used by a second process instead: ``sppe_run`` starts the
PoseFix run beside its own and the RMPE run after it (``python main.py train ...``, same
arguments), and ``posefix_run`` / ``rmpe_run`` wait for them.
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
    """Training runs in their own process, by name: (Popen, log path), or (None, None) once a run
    was done in this process instead; those still running when the session ends are killed."""
    runs: dict[str, tuple[subprocess.Popen | None, Path | None]] = {}
    yield runs
    for proc, _ in runs.values():
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _start_side_run(side_runs: dict, name: str, args: list[str], log: Path) -> None:
    cmd = [sys.executable, "main.py", *args]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=f, stderr=subprocess.STDOUT)
    side_runs[name] = (proc, log)


def _finish_run(side_runs: dict, name: str, args: list[str]) -> None:
    """Wait for the side run ``name``; if none was started, run ``args`` here."""
    proc, log = side_runs.setdefault(name, (None, None))  # from now on nobody starts it
    if proc is None:
        assert run_cli(args) == 0
    else:
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]


def _first_user(request, fixture: str) -> int | None:
    """Index of the session's first test that needs ``fixture`` (None: no test does)."""
    return next((i for i, item in enumerate(request.session.items) if fixture in item.fixturenames), None)


def _posefix_args(train_dir: Path, synthetic_dir: Path) -> list[str]:
    return train_args("posefix", "train_posefix_ci.yaml", train_dir / "posefix", synthetic_dir)


def _rmpe_args(train_dir: Path, synthetic_dir: Path, sppe_last: Path) -> list[str]:
    return train_args("rmpe", "train_rmpe_ci.yaml", train_dir / "rmpe", synthetic_dir, f"rmpe.init_sppe={sppe_last}")


def pytest_collection_modifyitems(session, config, items):
    """This folder's tests that need the RMPE run go to the end of the session (otherwise the order is
    kept): ``sppe_run`` starts that run in a second process when it ends, and the others run meanwhile."""
    here = Path(__file__).parent
    items.sort(key=lambda item: Path(str(item.path)).parent == here and "rmpe_run" in item.fixturenames)


@pytest.fixture(scope="session")
def sppe_run(request, train_dir, synthetic_dir, side_runs) -> dict:
    """assets/train_sppe_ci.yaml: a 1-stack hourglass trained 336 steps on synthetic people
    (~60 s on 2 cores). If this session has PoseFix tests, the PoseFix run (independent of this
    one; its own synthetic datasets: other seeds, other folders) trains beside it in a second
    process; if it has RMPE tests after others, the RMPE run (on this checkpoint) starts in a
    second process when this one ends, while those other tests run."""
    if "posefix" not in side_runs and _first_user(request, "posefix_run") is not None:
        _start_side_run(side_runs, "posefix", _posefix_args(train_dir, synthetic_dir), train_dir / "posefix.log")
    out = train_dir / "sppe"
    assert train("sppe", "train_sppe_ci.yaml", out, synthetic_dir) == 0
    first_rmpe = _first_user(request, "rmpe_run")
    if "rmpe" not in side_runs and first_rmpe is not None and first_rmpe > _first_user(request, "sppe_run"):
        _start_side_run(side_runs, "rmpe", _rmpe_args(train_dir, synthetic_dir, out / "last.pt"),
                        train_dir / "rmpe.log")
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "steps": read_csv(out / "steps.csv"),
            "last": out / "last.pt", "best": out / "best.pt"}


@pytest.fixture(scope="session")
def posefix_run(train_dir, synthetic_dir, side_runs) -> dict:
    """assets/train_posefix_ci.yaml (~37 s on 2 cores): the run ``sppe_run`` started, else here."""
    _finish_run(side_runs, "posefix", _posefix_args(train_dir, synthetic_dir))
    out = train_dir / "posefix"
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "last": out / "last.pt", "best": out / "best.pt"}


@pytest.fixture(scope="session")
def rmpe_run(train_dir, synthetic_dir, sppe_run, side_runs) -> dict:
    """assets/train_rmpe_ci.yaml on top of the SPPE run: STN stage + joint stage on jittered proposals
    (~45 s on 2 cores): the run ``sppe_run`` started, else here."""
    _finish_run(side_runs, "rmpe", _rmpe_args(train_dir, synthetic_dir, sppe_run["last"]))
    out = train_dir / "rmpe"
    return {"out": out, "metrics": read_csv(out / "metrics.csv"), "last": out / "last.pt"}
