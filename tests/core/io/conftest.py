"""Small videos written on the fly with PyAV (independent of our own writer)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest


def _write(path: Path, n: int, width: int = 64, height: int = 48, fps: int = 30, codec: str = "libx264",
           faststart: bool = False) -> Path:
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream(codec, rate=Fraction(fps, 1))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        c.start_encoding()
        for i in range(n):
            img = np.zeros((height, width, 3), np.uint8)
            img[:, : (i * 3) % width + 1] = (200, 50, 50)  # a bar growing with the frame index
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


@pytest.fixture
def write_video():
    return _write
