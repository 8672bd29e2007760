"""Demo frames for the detector tests: every 10th frame of the clip, decoded once per session."""
from __future__ import annotations

import av
import numpy as np
import pytest

FRAME_STEP = 10


@pytest.fixture(scope="session")
def demo_frames(demo_video) -> dict[int, np.ndarray]:
    """{frame index: RGB uint8 frame} for frames 0, 10, …, 220 of the demo video."""
    frames = {}
    with av.open(str(demo_video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % FRAME_STEP == 0:
                frames[i] = frame.to_ndarray(format="rgb24")
    return frames
