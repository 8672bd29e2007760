"""Threaded pose pipeline (file and live modes), its profiler and the headless `run` command.

``Pipeline`` and ``FrameResult`` are the API the CLI and the desktop app share; see
``core.pipeline.runner`` for the full description.
"""
from core.pipeline.runner import END, FrameResult, LatestSlot, Pipeline

__all__ = ["END", "FrameResult", "LatestSlot", "Pipeline"]
