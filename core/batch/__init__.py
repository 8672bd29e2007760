"""Process a collection of videos: one job per video on local worker processes or Ray tasks, a JSONL
manifest, verified resume, per-video failure isolation, interrupt safety.

    inputs.py      videos / folders / globs / list files → ``Task(index, video, name)``
    jobs.py        the job interface, ``PoseJob`` (the ``run`` command), ``process_one`` (atomic outputs)
    manifest.py    ``OUT/manifest.jsonl`` and the completion proof (sizes + SHA-256)
    local.py       spawned worker processes, models loaded once each, a dead worker fails one video
    ray_runner.py  the same job as Ray tasks (``num_cpus``/``num_gpus``/``max_retries``), shared output path
    runner.py      the driver: plan, thread budget, progress, SIGTERM/Ctrl-C, summary
    cli.py         ``python main.py batch`` and the runner flags other commands reuse

Importing this package loads neither torch nor Ray.
"""
from core.batch.inputs import Task, expand_inputs
from core.batch.jobs import PoseJob, process_one
from core.batch.manifest import Manifest, verify
from core.batch.runner import BatchSummary, run_collection, thread_budget

__all__ = ["BatchSummary", "Manifest", "PoseJob", "Task", "expand_inputs", "process_one", "run_collection",
           "thread_budget", "verify"]
