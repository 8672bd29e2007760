"""A collection of six 20-frame clips cut from the demo (640 px, H.264), clip_3 corrupt, and one
`batch --workers 2` run over it that several tests read (made once per session)."""
from __future__ import annotations

import json

import pytest

from bench.bench_batch import make_clips
from core.cli import main as cli_main

CLIPS, FRAMES, CORRUPT = 6, 20, 3


@pytest.fixture(scope="session")
def clips(demo_video, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    make_clips(demo_video, folder, CLIPS, FRAMES, width=640, corrupt=CORRUPT)
    return folder


@pytest.fixture(scope="session")
def local_run(clips, tmp_path_factory, blazepose_models):
    """(exit code, output folder) of `batch CLIPS --out OUT --workers 2 --threads 1 --json --mp4`."""
    out = tmp_path_factory.mktemp("batch") / "out"
    rc = cli_main(["batch", str(clips), "--out", str(out), "--workers", "2", "--threads", "1", "--json", "--mp4",
                   "--no-progress"])
    return rc, out


@pytest.fixture(scope="session")
def spec():
    """The collection's shape: number of clips, frames per clip, index of the corrupt clip."""
    return {"clips": CLIPS, "frames": FRAMES, "corrupt": CORRUPT}


@pytest.fixture(scope="session")
def read_manifest():
    def read(out) -> list[dict]:
        return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]

    return read
