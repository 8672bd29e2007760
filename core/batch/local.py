"""Local worker processes: ``workers`` spawned processes, each loading the job once and running
videos one after another, fed one task at a time by the driver over its own pipe.

Why own processes and pipes rather than ``multiprocessing.Pool``/``ProcessPoolExecutor``: a worker
that dies (segfault in a decoder, OOM kill) must fail only the video it held, and the others must
go on. A pool hangs or breaks as a whole on a dead worker, and a shared task queue can be left
locked by a killed reader; with one pipe per worker the driver always knows which video each
worker holds, sees the death on the process sentinel, records that video as failed and starts a
replacement worker for the remaining ones.

Spawn context: a forked child would inherit the driver's threads and any torch/ONNX Runtime thread
pools in an undefined state; spawned workers start clean and set their thread budget
(OMP/MKL/OpenBLAS env vars, then ``job.load(threads)`` → ``torch.set_num_threads`` and ONNX Runtime
intra-op threads via ``config.runtime.threads``) before torch is imported. Workers ignore SIGINT:
the driver alone decides what a Ctrl-C means.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import wait as wait_connections
from pathlib import Path

from core.batch.inputs import Task
from core.errors import UserError

log = logging.getLogger("rmpe.batch")

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
PROGRESS_EVERY_S = 0.5


def _worker_main(conn, job, threads: int, out_dir: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from core.batch.jobs import process_one

    try:
        state = job.load(threads)
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which stops the run
        from core.batch.jobs import _one_line

        conn.send(("fatal", _one_line(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:  # driver gone
            return
        if task is None:
            return
        last = [0.0]

        def progress(frames: int, task=task) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                conn.send(("progress", (task.index, frames)))

        conn.send(("done", process_one(job, state, task, Path(out_dir), progress)))


class _Worker:
    def __init__(self, ctx, job, threads: int, out_dir: Path, env: dict[str, str]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, job, threads, str(out_dir)), daemon=True,
                                name="rmpe-batch-worker")
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # a spawned child copies the environment when it starts
        try:
            self.proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.task: Task | None = None
        self.ready = False

    def stop(self, timeout: float = 2.0) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self.conn.close()


def run_local(tasks: list[Task], job, out_dir: Path, workers: int, threads: int, on_record, on_progress=None,
              gpus: int = 0, on_abandon=None) -> None:
    """Run every task on ``workers`` processes; ``on_record(record)`` is called in the driver as each
    video finishes, ``on_progress(started|progress, task, frames)`` for the live display.
    KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by the caller) stops every worker; the
    videos they held are not recorded (``on_abandon(task)`` once the workers are gone) and are
    redone by the next call."""
    ctx = mp.get_context("spawn")
    pending = list(reversed(tasks))
    by_index = {t.index: t for t in tasks}
    pool: list[_Worker] = []

    def start(i: int) -> _Worker:
        env = {k: str(threads) for k in THREAD_ENV}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)  # one model copy per worker, spread over the GPUs
        return _Worker(ctx, job, threads, out_dir, env)

    def feed(w: _Worker) -> None:
        w.task = pending.pop() if pending else None
        w.conn.send(w.task)
        if w.task is not None and on_progress is not None:
            on_progress("started", w.task, 0)

    try:
        pool = [start(i) for i in range(min(workers, len(tasks)))]
        while pending or any(w.task is not None for w in pool):
            live = [w for w in pool if w.proc.is_alive() or w.conn.poll()]
            ready = wait_connections([w.conn for w in live] + [w.proc.sentinel for w in live], timeout=1.0)
            for i, w in enumerate(list(pool)):
                msg, gone = None, False
                if w.conn in ready:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):  # the worker's end closed: it has exited or is exiting
                        gone = True
                if msg is not None:
                    kind, payload = msg
                    if kind == "fatal":
                        raise UserError(f"batch worker could not load the job: {payload}")
                    if kind == "progress" and on_progress is not None:
                        on_progress("progress", by_index[payload[0]], payload[1])
                    elif kind == "ready":
                        w.ready = True
                        feed(w)
                    elif kind == "done":
                        on_record(payload)
                        w.task = None
                        feed(w)
                    continue
                if gone or not (w.proc.is_alive() or w.conn.poll()):
                    w.proc.join()
                    if w.task is not None:  # died holding a video: that video fails alone
                        on_record(_died(w.task, job, w.proc.exitcode))
                    elif not w.ready:
                        raise UserError(f"batch worker died while loading the job (exit code {w.proc.exitcode})")
                    w.conn.close()
                    pool.remove(w)
                    if pending:
                        pool.append(start(i))
    finally:
        for w in pool:
            w.stop()
        if on_abandon is not None:
            for w in pool:
                if w.task is not None:
                    on_abandon(w.task)


def _died(task: Task, job, exitcode) -> dict:
    from datetime import datetime, timezone

    how = f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
    return {"input": task.video, "name": task.name, "job": job.kind, "status": "failed", "outputs": {},
            "files": {}, "frames": 0, "fps": None, "video_fps": None, "seconds": None,
            "error": f"worker process died ({how})", "worker": None,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
