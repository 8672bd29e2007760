"""The batch driver: plan (skip verified videos), run on local workers or Ray, record, report.

Resume: a video is skipped when its latest manifest record is ``ok`` and its files still match the
recorded sizes and SHA-256 (see ``core.batch.manifest``); every other video (never started,
interrupted, failed, or with outputs changed since) is processed again from scratch.

Interrupts: SIGTERM is turned into KeyboardInterrupt, so Ctrl-C and SIGTERM take the same path:
workers are stopped, the videos they held are not recorded (their ``.partial`` folders, and an
output folder a worker published but the driver had not yet recorded, are removed), and every
record already in the manifest describes outputs that are complete on disk.
One batch per output folder at a time: a lock file (``OUT/.batch.lock``, flock) refuses a second.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.batch.inputs import Task
from core.batch.jobs import PARTIAL_DIR
from core.batch.manifest import Manifest, verify
from core.errors import UserError

log = logging.getLogger("rmpe.batch")


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def thread_budget(workers: int | None, threads: int | None, cores: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker) with workers × threads ≤ cores.

    Default: one single-threaded worker per core. The models here are small, so one video per core
    keeps every core busy with less synchronisation than intra-op threading on fewer videos; an
    explicit ``threads`` (0 = unset) picks workers = cores // threads; an explicit ``workers`` gets
    cores // workers threads each. Asking for more threads than that is capped (logged).
    """
    cores = cores or available_cores()
    threads = threads or None
    if workers is not None and workers < 1:
        raise UserError("--workers must be >= 1")
    if workers is None:
        workers = max(1, cores // (threads or 1))
    budget = max(1, cores // workers)
    if threads is None:
        threads = budget
    elif threads > budget:
        log.warning("--threads %d with %d workers exceeds %d cores: using %d threads per worker",
                    threads, workers, cores, budget)
        threads = budget
    return workers, threads


@dataclass
class BatchSummary:
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    interrupted: bool = False
    frames: int = 0
    seconds: float = 0.0
    records: list = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else (1 if self.failed else 0)


def plan(tasks: list[Task], out_dir: Path) -> tuple[list[Task], list[Task]]:
    """(to do, skipped as verified complete)."""
    latest = Manifest(out_dir).latest()
    todo, done = [], []
    for t in tasks:
        rec = latest.get(t.video)
        (done if rec is not None and rec.get("name") == t.name and verify(rec, out_dir) else todo).append(t)
    return todo, done


@contextlib.contextmanager
def _lock(out_dir: Path):
    f = open(out_dir / ".batch.lock", "w")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another batch is writing to {out_dir}") from None
        yield
    finally:
        f.close()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Display:
    """Overall bar (videos) with the current videos and their frame counts as its postfix."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.current: dict[int, tuple[str, int]] = {}
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="video", desc="batch", file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.5)

    def progress(self, what: str, task: Task, frames: int) -> None:
        self.current[task.index] = (task.name, frames)
        self._postfix()

    def finished(self, record: dict, index: int | None) -> None:
        self.current.pop(index, None)
        if self.bar is None:
            if record["status"] != "ok":
                log.warning("failed: %s: %s", record["input"], record["error"])
            return
        if record["status"] != "ok":
            self.bar.write(f"failed: {record['input']}: {record['error']}")
        self.bar.update(1)
        self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            text = ", ".join(f"{n[:24]} {f}f" for n, f in list(self.current.values())[:4])
            self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_collection(tasks: list[Task], out_dir: str | os.PathLike, job, workers: int | None = None,
                   threads: int | None = None, ray: str | None = None, ray_gpus: float = 0.0,
                   ray_retries: int = 3, gpus: int = 0, progress: bool = True) -> BatchSummary:
    """Process ``tasks`` with ``job`` into ``out_dir``; see the module docstring for resume and interrupts.

    ``ray``: None = local worker processes; "auto" or an address = Ray tasks (``threads`` CPUs and
    ``ray_gpus`` GPUs each, ``ray_retries`` retries of a task whose worker died).
    """
    from core.io.writers import check_output_path

    out_dir = check_output_path(out_dir, "batch output", is_dir=True).resolve()
    summary = BatchSummary(total=len(tasks))
    t0 = time.perf_counter()
    with _lock(out_dir), _sigterm_as_interrupt():
        shutil.rmtree(out_dir / PARTIAL_DIR, ignore_errors=True)  # left by an interrupted run
        manifest = Manifest(out_dir)
        manifest.open_for_append()
        todo, done = plan(tasks, out_dir)
        summary.skipped = len(done)
        if done:
            log.info("%d of %d videos already complete (verified), skipped", len(done), len(tasks))
        by_video = {t.video: t for t in todo}
        display = _Display(len(tasks), len(done), progress and bool(todo))

        def on_record(record: dict) -> None:
            manifest.append(record)
            summary.records.append(record)
            if record["status"] == "ok":
                summary.ok += 1
                summary.frames += record["frames"]
            else:
                summary.failed += 1
            task = by_video.get(record["input"])
            display.finished(record, task.index if task else None)

        def on_abandon(task: Task) -> None:
            """An interrupted video: no output folder without its verified record."""
            rec = manifest.latest().get(task.video)
            if rec is None or not verify(rec, out_dir):
                shutil.rmtree(out_dir / task.name, ignore_errors=True)

        try:
            if not todo:
                pass
            elif ray is not None:
                from core.batch.ray_runner import run_ray

                # Per task: the asked threads (default 1); Ray packs tasks onto each node's CPUs.
                run_ray(todo, job, out_dir, ray, max(1, threads or 1), ray_gpus, ray_retries, on_record,
                        on_abandon)
            else:
                from core.batch.local import run_local

                n, per_worker = thread_budget(workers, threads)
                n = min(n, len(todo))
                log.info("%d videos on %d worker processes × %d threads", len(todo), n, per_worker)
                run_local(todo, job, out_dir, n, per_worker, on_record, display.progress, gpus=gpus,
                          on_abandon=on_abandon)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            display.close()
            shutil.rmtree(out_dir / PARTIAL_DIR, ignore_errors=True)
    summary.seconds = time.perf_counter() - t0
    return summary
