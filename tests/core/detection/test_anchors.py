"""SSD anchor centres: counts and layout for known MediaPipe detector configurations."""
from __future__ import annotations

import numpy as np
import pytest

from core.detection.anchors import BLAZEPOSE_DETECTOR, AnchorSpec, ssd_anchor_centres


@pytest.mark.parametrize("spec, count", [
    (BLAZEPOSE_DETECTOR, 2254),  # pose detector: 28²·2 + 14²·2 + 7²·6
    (AnchorSpec(input_size=128, strides=(8, 16, 16, 16)), 896),  # BlazeFace: 16²·2 + 8²·6
    (AnchorSpec(input_size=192, strides=(8, 16, 16, 16)), 2016),  # palm detector: 24²·2 + 12²·6
])
def test_anchor_count(spec, count):
    assert ssd_anchor_centres(spec).shape == (count, 2)


def test_blazepose_anchor_layout():
    a = ssd_anchor_centres()
    assert ((a > 0) & (a < 1)).all()
    # stride 8: 28×28 cells, two anchors per cell, row-major (x varies fastest)
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[2 * 28], [0.5 / 28, 1.5 / 28])
    # stride 16 starts after 28²·2 anchors
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14])
    # the three stride-32 layers share one 7×7 grid: six anchors per cell
    last = a[1568 + 392:]
    assert len(np.unique(last, axis=0)) == 49
    np.testing.assert_allclose(last[:6], np.repeat([[0.5 / 7, 0.5 / 7]], 6, 0))
    np.testing.assert_allclose(a[-1], [6.5 / 7, 6.5 / 7])
