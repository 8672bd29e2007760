"""Command line: `python main.py [run flags] | models | eval | train | gui`, and the composition root.

Each command lives in the module that does the work; this file only dispatches (by module name,
so a headless command never imports Qt), and composes what crosses layers: the pipeline's post
steps (``build_post_steps``), which need ``trackers``, a layer above the rest of ``core``. This
is the one ``core`` module allowed to name upper layers (tests/test_layers.py). Errors the user
can fix print one line and exit non-zero; an unknown command is one of them.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from core.errors import UserError

log = logging.getLogger("rmpe")

# command -> (module exposing add_arguments(parser) and run(args) -> int, one-line help).
# A new command is one more entry here.
COMMANDS = {
    "run": ("core.pipeline.cli", "run the pipeline headless on a video, camera, image folder or URL"),
    "batch": ("core.batch.cli", "run the pipeline over a collection of videos (local workers or Ray)"),
    "models": ("core.models.install", "install or inspect the fetched models and demo video"),
    "eval": ("core.evaluation.cli", "COCO keypoint AP and Ronchi-Perona error diagnosis"),
    "train": ("training.cli", "train SPPE, RMPE, PGPG and PoseFix models"),
    "refine": ("core.refine_cli", "refine a keypoint results JSON with a PoseFix checkpoint"),
    "gui": ("app.cli", "open the desktop app"),
}
# Flags that mean "headless run" when given without a command: `python main.py --video demo ...`.
RUN_FLAGS = ("--video", "--images", "--camera", "--url")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="rmpe: %(message)s", stream=sys.stderr, force=True)


def build_parser(command: str) -> argparse.ArgumentParser:
    module_name, help_text = COMMANDS[command]
    parser = argparse.ArgumentParser(prog=f"main.py {command}", description=help_text)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    importlib.import_module(module_name).add_arguments(parser)
    return parser


def build_post_steps(config, fps: float) -> list:
    """The post-processing chain the `run` command and the desktop app share, in order:
    pose NMS → [refine slot] → tracking → smoothing (``core.pipeline.steps.PostStep`` each).

    Every step reads its config section on each frame and passes the poses through while its
    section is disabled, so a live toggle applies without rebuilding the list; ``fps`` is the
    source's frame rate (the tracker's time step when timestamps do not advance).
    """
    from core.pipeline.steps import PoseNMSStep, SectionStep
    from core.refine import build_refine_step
    from trackers import PoseSmoother, PoseTracker

    tracker = PoseTracker(config.tracking, fps)
    smoother = PoseSmoother(config.smoothing)
    refine = build_refine_step(config, config.runtime.device)  # None unless refine.method is set
    return [
        PoseNMSStep(config.pose_nms),
        *([refine] if refine is not None else []),  # PoseFix: refine.enabled switches it live
        SectionStep("track", config.tracking, tracker.update, tracker.reset),
        SectionStep("smooth", config.smoothing, smoother, smoother.reset),
    ]


def resolve_command(argv: list[str]) -> tuple[str, list[str]]:
    """(command, its arguments); "help" for -h/--help; "run" for bare run flags; "gui" for no
    arguments or flags only. A first word that is no command is a UserError listing them."""
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    if argv and argv[0] in ("-h", "--help"):
        return "help", []
    if argv and not argv[0].startswith("-"):
        raise UserError(f"unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)} "
                        "(python main.py --help)")
    if any(a.split("=")[0] in RUN_FLAGS for a in argv):
        return "run", argv
    return "gui", argv


def print_help() -> None:
    print("usage: python main.py [--video IN --out OUT.mp4 --json OUT.json ...] | COMMAND ...\n")
    print("With no arguments, opens the desktop app. Commands:")
    for name, (_, text) in COMMANDS.items():
        print(f"  {name:8s} {text}")
    print("\n`python main.py COMMAND --help` for a command's options.")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, rest = resolve_command(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if command == "help":
        print_help()
        return 0
    try:
        parser = build_parser(command)
        args = parser.parse_args(rest)
        setup_logging(getattr(args, "verbose", False))
        module = importlib.import_module(COMMANDS[command][0])
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback wall
        if os.environ.get("RMPE_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc} (set RMPE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
