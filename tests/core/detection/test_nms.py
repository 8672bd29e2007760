"""Weighted NMS, the face-on-torso rule, tiling layout and letterbox geometry (no model)."""
from __future__ import annotations

import numpy as np
import pytest

from core.detection import Detections
from core.detection.blazepose import MAX_TILES, box_iou, letterbox, tile_views, weighted_nms
from core.roi import TORSO_ZONE, Rois, face_on_torso


def square(cx, cy, side):
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [2, 2, 4, 4]], float)
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0, 4 / 100])


def test_weighted_nms_merges_overlaps_into_score_weighted_mean():
    boxes = np.array([square(100, 100, 40), square(104, 100, 40), square(300, 100, 40)], float)
    scores = np.array([0.6, 0.9, 0.7])
    values = np.array([[10.0], [20.0], [99.0]])
    kept_scores, merged, index = weighted_nms(boxes, scores, values, iou_threshold=0.3)
    # the best box leads its cluster and keeps its own score; the far box stays on its own
    np.testing.assert_allclose(kept_scores, [0.9, 0.7])
    np.testing.assert_array_equal(index, [1, 2])
    np.testing.assert_allclose(merged[0], [(0.6 * 10 + 0.9 * 20) / 1.5])
    np.testing.assert_allclose(merged[1], [99.0])


@pytest.mark.parametrize("shift, merged", [
    (10.0, True),  # IoU = 30/50 = 0.6
    (20.0, False),  # IoU = 20/60 = 0.333…, just below the threshold 0.34
])
def test_weighted_nms_threshold_is_strict(shift, merged):
    boxes = np.array([[0, 0, 40, 10], [shift, 0, 40 + shift, 10]], float)
    iou = box_iou(boxes[:1], boxes[1:])[0, 0]
    kept, _, _ = weighted_nms(boxes, np.array([0.9, 0.8]), np.zeros((2, 1)), iou_threshold=0.34)
    assert (iou > 0.34) == merged
    assert len(kept) == (1 if merged else 2)


def test_weighted_nms_face_on_torso_suppresses_without_averaging():
    # a good candidate (hips at 100, 200, radius 100) and a mislocated one: its core box lies
    # elsewhere but its face sits on the good candidate's torso
    centres = np.array([[100.0, 200.0], [400.0, 260.0]])
    radii = np.array([100.0, 220.0])
    faces = np.array([[100.0, 100.0], [120.0, 180.0]])
    boxes = np.array([square(*c, r) for c, r in zip(centres, radii)])
    values = np.array([[1.0], [1000.0]])
    kept, merged, index = weighted_nms(boxes, np.array([0.95, 0.6]), values, 0.3, faces, centres, radii)
    assert len(kept) == 1 and index[0] == 0
    np.testing.assert_allclose(merged[0], [1.0])  # the suppressed one did not enter the mean
    # without the face rule both survive
    assert len(weighted_nms(boxes, np.array([0.95, 0.6]), values, 0.3)[0]) == 2


def test_neighbour_face_is_not_on_torso():
    # two people side by side: hips 0.8 r apart, faces 0.8 r above the hips
    r = 100.0
    centres = np.array([[0.0, 0.0], [0.8 * r, 0.0]])
    faces = centres + [0.0, -0.8 * r]
    on = face_on_torso(faces, centres, np.array([r, r]))
    assert not on[0, 1] and not on[1, 0]
    assert TORSO_ZONE < 0.8


def test_tiles_for_demo_resolution():
    views = tile_views(994, 1768, 640, 0.4)
    assert views[0].tolist() == [0, 0, 1768, 994]
    tiles = views[1:]
    assert len(tiles) == 8  # 4 columns × 2 rows
    assert (tiles[:, 2] - tiles[:, 0] == 640).all() and (tiles[:, 3] - tiles[:, 1] == 640).all()
    assert tiles[:, 2].max() == 1768 and tiles[:, 3].max() == 994 and tiles[:, :2].min() == 0
    xs = np.unique(tiles[:, 0])
    assert (640 - np.diff(xs) >= 0.4 * 640).all()  # neighbours overlap by at least 40 %


@pytest.mark.parametrize("h, w, expected", [(480, 640, 1), (800, 800, 1), (2160, 3840, None)])
def test_tile_count_limits(h, w, expected):
    views = tile_views(h, w, 640, 0.4)
    if expected is not None:
        assert len(views) == expected
    else:  # 4K: tiles grow instead of multiplying
        assert 1 < len(views) <= MAX_TILES + 1
        assert views[1:, 2].max() == w and views[1:, 3].max() == h


def test_letterbox_maps_points_back_exactly():
    # a white dot at a known pixel must come back to that pixel through the letterbox mapping
    image = np.zeros((300, 900, 3), np.uint8)
    image[200:206, 600:606] = 255  # centre (602.5, 202.5) in pixel-centre coordinates
    canvas, (sx, sy, px, py) = letterbox(image, 224)
    assert canvas.shape == (224, 224, 3)
    ys, xs = np.nonzero(canvas[..., 0] > 0)
    w = canvas[ys, xs, 0].astype(float)
    # canvas pixel centres → continuous → input continuous → input pixel centres
    cx = ((xs + 0.5) * w).sum() / w.sum()
    cy = ((ys + 0.5) * w).sum() / w.sum()
    x = (cx - px) / sx - 0.5
    y = (cy - py) / sy - 0.5
    assert abs(x - 602.5) < 1.0 and abs(y - 202.5) < 1.0
    assert canvas[:int(py) - 1].max() == 0  # black border above the centred image


def test_alignment_roi_rotation_and_size():
    centre = np.array([[100.0, 200.0], [100.0, 200.0], [100.0, 200.0]])
    scale = np.array([[100.0, 100.0], [200.0, 200.0], [100.0, 300.0]])  # up, right, down
    r = Rois.from_alignment_points(centre, scale, 1.25)
    c, side, rot = r.centres, r.sides, r.rotations
    np.testing.assert_allclose(side, [250.0, 250.0, 250.0])
    np.testing.assert_allclose(rot, [0.0, np.pi / 2, -np.pi], atol=1e-6)  # upright, lying right, upside down
    np.testing.assert_allclose(c, centre)


def test_box_only_detections_give_upright_rois():
    det = Detections(np.array([[10, 20, 110, 220]]), np.array([0.9]))
    r = det.rois()
    c, side, rot = r.centres, r.sides, r.rotations
    np.testing.assert_allclose(c, [[60, 120]])
    assert side[0] == pytest.approx(200 * 1.2) and rot[0] == 0.0
