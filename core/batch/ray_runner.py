"""Ray Core tasks: the same per-video job (``process_one``) as one Ray task per video.

Outputs go to a path every node shares (``--out`` on NFS/CephFS/Lustre/…), written by the task
itself through the same ``.partial`` + rename as local workers; the task returns only the manifest
record (a few hundred bytes) to the driver. Why not return the outputs: rendered videos are large
(tens to hundreds of MB per clip), and shipping them through the object store to one driver makes
the driver's network link and memory the bottleneck of the whole cluster, while a shared path lets
every node write at its own disk/network speed. The rename is atomic only within one filesystem,
so ``.partial`` lives under ``--out``.

Resources: each task asks for ``num_cpus`` = the per-video thread budget and ``num_gpus`` (0 on CPU
clusters; a fraction such as 0.5 packs two videos per GPU), so Ray's scheduler packs tasks without
oversubscribing any node. ``max_retries`` re-runs a task whose worker process or node died (system
failures); an exception inside the job is not a system failure: ``process_one`` turns it into a
``failed`` record, so a corrupt video is not retried. Models load once per Ray worker process: the
loaded state is cached in a module global keyed by the batch run (a fresh key per ``run_ray``), and
Ray reuses worker processes for later tasks of the same function.

Every node needs this package and the models installed (``python main.py models install``), as
for a local run.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

from core.batch.inputs import Task
from core.errors import UserError

log = logging.getLogger("rmpe.batch")

INSTALL_HINT = "--ray needs Ray: pip install 'rmpe-live[ray]' (or: pip install 'ray>=2.40')"
_LOADED: dict[str, object] = {}  # per Ray worker process: job key -> loaded state


def _task(job, key: str, threads: int, task: Task, out_dir: str) -> dict:
    from core.batch.jobs import process_one

    if key not in _LOADED:
        _LOADED.clear()  # one job's models at a time per worker
        _LOADED[key] = job.load(threads)
    return process_one(job, _LOADED[key], task, Path(out_dir))


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


def run_ray(tasks: list[Task], job, out_dir: Path, address: str | None, threads: int, gpus: float, retries: int,
            on_record, on_abandon=None) -> None:
    """Submit every task to Ray (``address``: "auto" = the cluster this machine belongs to, or a new
    local instance; else a Ray address; an already initialised Ray is used as it is) and call
    ``on_record`` in the driver as each finishes. KeyboardInterrupt cancels what is still running."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "auto") else address, include_dashboard=False,
                 log_to_driver=False)
    remote = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=retries)(_task)
    refs = {}
    key = uuid.uuid4().hex
    for t in tasks:  # Ray schedules them; the display shows finished videos only
        refs[remote.remote(job, key, threads, t, str(out_dir))] = t
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
            for ref in done:
                task = refs.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - worker/node died more than max_retries times
                    from core.batch.local import _died

                    record = _died(task, job, None)
                    record["error"] = f"Ray task failed after {retries} retries: {type(exc).__name__}: " \
                                      f"{' '.join(str(exc).split())[:300]}"
                on_record(record)
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if on_abandon is not None:  # a cancelled task may still publish later: the next run replaces it
            for task in refs.values():
                on_abandon(task)
