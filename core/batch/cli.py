"""`python main.py batch INPUTS… --out DIR`: the `run` command over a collection of videos.

Outputs per video under ``DIR/<name>/`` (``<name>.json`` COCO results by default; ``--mp4``,
``--csv``, ``--openpose-json`` as asked), ``DIR/manifest.jsonl`` appended as each video finishes.
Exit status: 0 all complete, 1 when any video failed, 130 when interrupted (Ctrl-C or SIGTERM);
a second call resumes (see ``core.batch``).
"""
from __future__ import annotations

import argparse
import logging

from core.errors import UserError

log = logging.getLogger("rmpe.batch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.pipeline.cli import add_model_arguments

    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, folders (searched recursively), glob patterns or list files (.txt)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (outputs + manifest.jsonl)")
    out = parser.add_argument_group("outputs per video (default: --json)")
    out.add_argument("--mp4", action="store_true", help="rendered H.264 video <name>.mp4")
    out.add_argument("--json", action="store_true", help="COCO keypoint results <name>.json")
    out.add_argument("--csv", action="store_true", help="CSV <name>.csv: frame, person, track, keypoint, x, y, score")
    out.add_argument("--openpose-json", action="store_true", help="OpenPose-style JSON per frame in openpose/")
    out.add_argument("--max-frames", type=int, metavar="N", help="at most N frames of each video")
    add_runner_arguments(parser)
    add_model_arguments(parser)
    parser.set_defaults(mode="file")


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Workers / Ray / progress flags, shared by every command that runs a job over a collection."""
    g = parser.add_argument_group("workers (threads per worker: --threads; default cores / workers)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="local worker processes, each loading the models once (default: one per core)")
    g.add_argument("--gpus", type=int, default=0, metavar="N",
                   help="local workers are spread over N GPUs (CUDA_VISIBLE_DEVICES per worker)")
    g.add_argument("--ray", metavar="auto|ADDRESS",
                   help="run as Ray tasks: 'auto' = this machine's cluster or a new local instance; "
                        "outputs must be on a path all nodes share")
    g.add_argument("--ray-gpus", type=float, default=0.0, metavar="F", help="GPUs per video on Ray (e.g. 0.5)")
    g.add_argument("--ray-retries", type=int, default=3, metavar="N",
                   help="retries of a video whose Ray worker or node died (default 3)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_jobs(args: argparse.Namespace, job, extensions=None) -> int:
    """Expand ``args.inputs`` (folders searched for ``extensions``, default video files), run ``job``
    on each, log a one-line summary; the exit status."""
    from core.batch.inputs import VIDEO_EXTENSIONS, expand_inputs
    from core.batch.runner import run_collection

    if args.ray is not None:
        from core.batch.ray_runner import import_ray

        import_ray()  # one line on how to install it, before any work
    if args.ray_retries < 0:
        raise UserError("--ray-retries must be >= 0")
    tasks = expand_inputs(args.inputs, extensions or VIDEO_EXTENSIONS)
    summary = run_collection(tasks, args.out, job, workers=args.workers, threads=getattr(args, "threads", None),
                             ray=args.ray, ray_gpus=args.ray_gpus, ray_retries=args.ray_retries,
                             gpus=args.gpus, progress=not args.no_progress)
    fps = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    log.info("%d videos: %d done, %d already complete, %d failed%s; %d frames in %.1f s (%.1f fps); manifest %s",
             summary.total, summary.ok, summary.skipped, summary.failed,
             ", interrupted (call again to resume)" if summary.interrupted else "",
             summary.frames, summary.seconds, fps, f"{args.out}/manifest.jsonl")
    return summary.exit_code


def pose_job(config, **outputs):
    """The ``run`` command's work as a batch job (the same post steps as ``run``)."""
    from core.batch.jobs import PoseJob
    from core.cli import build_post_steps

    return PoseJob(config, post_steps=build_post_steps, **outputs)


def _with_run_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` plus the ``run`` command's defaults for the flags batch does not have (``--fps``,
    ``--profile``, …), so ``config_from_args`` reads them as ``run`` would."""
    from core.pipeline.cli import add_arguments as add_run_arguments

    run_parser = argparse.ArgumentParser(add_help=False)
    add_run_arguments(run_parser)
    merged = vars(run_parser.parse_args([]))
    merged.update(vars(args))
    return argparse.Namespace(**merged)


def run(args: argparse.Namespace) -> int:
    from core.pipeline.cli import config_from_args

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError("--max-frames must be >= 1")
    config = config_from_args(_with_run_defaults(args))
    wants_json = args.json or not (args.mp4 or args.csv or args.openpose_json)
    job = pose_job(config, mp4=args.mp4, json=wants_json, csv=args.csv, openpose=args.openpose_json,
                   max_frames=args.max_frames)
    return run_jobs(args, job)
