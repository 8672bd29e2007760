"""Command line: `python main.py [run flags] | models | eval | train | gui`.

Each command lives in the module that does the work; this file only dispatches, so a headless
command never imports Qt. Errors the user can fix print one line and exit non-zero.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from core.errors import UserError

log = logging.getLogger("rmpe")

# command -> module exposing add_arguments(parser) and run(args) -> int
COMMANDS = {
    "run": ("core.pipeline.cli", "run the pipeline headless on a video, camera, image folder or URL"),
    "models": ("core.assets", "install or inspect the fetched models and demo video"),
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


def resolve_command(argv: list[str]) -> tuple[str, list[str]]:
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    if argv and argv[0] in ("-h", "--help"):
        return "help", []
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
    command, rest = resolve_command(argv)
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
