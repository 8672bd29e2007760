"""Skeleton overlay: what is drawn where, in which colour, and what is left out."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import RenderConfig
from core.poses import Poses
from core.render import draw_poses, limb_colors, track_color
from core.skeleton import BLAZEPOSE33, COCO17, get_skeleton


def _person(layout: str = COCO17, score: float = 0.9, x0: float = 200.0):
    k = get_skeleton(layout).num_keypoints
    kp = np.zeros((k, 3), np.float32)
    kp[:, 0] = x0 + 80 * np.cos(np.linspace(0, 2 * np.pi, k, endpoint=False))
    kp[:, 1] = 240 + 160 * np.sin(np.linspace(0, 2 * np.pi, k, endpoint=False))
    kp[:, 2] = score
    return kp


def _poses(kps, ids=None, layout=COCO17):
    kps = np.stack(kps)
    boxes = np.concatenate([kps[..., :2].min(1) - 5, kps[..., :2].max(1) + 5], 1)
    return Poses(boxes, kps, np.full(len(kps), 0.8), ids, layout)


def _mid(kp, limb):
    a, b = kp[limb[0], :2], kp[limb[1], :2]
    return tuple(np.round((a + b) / 2).astype(int))


def _near(frame, xy, colour, tol=30) -> bool:
    """Some pixel within 1 px of ``xy`` has ``colour`` (antialiasing blurs the exact centre)."""
    x, y = xy
    patch = frame[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - np.asarray(colour, int)).max(1) <= tol).any())


def _on_segment(kp, limb, p, tol=4.0) -> bool:
    a, b, p = kp[limb[0], :2], kp[limb[1], :2], np.asarray(p, float)
    t = np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-9), 0, 1)
    return float(np.linalg.norm(a + t * (b - a) - p)) <= tol


def test_limbs_get_their_own_colours_when_untracked():
    frame = np.zeros((480, 640, 3), np.uint8)
    kp = _person()
    out = draw_poses(frame, _poses([kp]), RenderConfig(draw_ids=False))
    assert out is frame  # in place
    sk = get_skeleton(COCO17)
    colours = limb_colors(COCO17)
    assert len({tuple(c) for c in colours}) == len(colours)  # all limbs distinguishable
    for li, limb in enumerate(sk.limbs):
        x, y = _mid(kp, limb)
        if np.linalg.norm(kp[limb[0], :2] - kp[limb[1], :2]) < 25:
            continue  # short limbs sit under the keypoint dots
        crossing = [lj for lj, other in enumerate(sk.limbs) if lj != li and _on_segment(kp, other, (x, y))]
        if crossing:
            continue  # another limb drawn over this point
        assert _near(frame, (x, y), colours[li]), (li, frame[y, x], colours[li])


def test_tracked_person_is_drawn_in_its_track_colour():
    frame = np.zeros((480, 640, 3), np.uint8)
    kp = _person()
    draw_poses(frame, _poses([kp], ids=[5]), RenderConfig(draw_ids=False))
    sk = get_skeleton(COCO17)
    names = sk.names
    base = track_color(5).astype(int)
    # A centre limb (hip to hip) is drawn in the track colour itself.
    li = next(i for i, (a, b) in enumerate(sk.limbs) if {names[a], names[b]} == {"left_hip", "right_hip"})
    assert _near(frame, _mid(kp, sk.limbs[li]), base)
    assert not np.array_equal(track_color(5), track_color(6))


def test_low_score_keypoints_and_their_limbs_are_not_drawn():
    frame = np.zeros((480, 640, 3), np.uint8)
    draw_poses(frame, _poses([_person(score=0.2)]), RenderConfig(keypoint_threshold=0.3))
    assert frame.max() == 0
    kp = _person()
    kp[9, 2] = 0.1  # left wrist missing
    frame = np.zeros((480, 640, 3), np.uint8)
    draw_poses(frame, _poses([kp]), RenderConfig(keypoint_threshold=0.3, draw_ids=False))
    x, y = np.round(kp[9, :2]).astype(int)
    assert frame[y - 1:y + 2, x - 1:x + 2].max() == 0  # no dot and no limb end at the wrist


def test_empty_poses_leave_the_frame_untouched():
    frame = np.full((50, 60, 3), 7, np.uint8)
    draw_poses(frame, Poses.empty(), RenderConfig())
    assert (frame == 7).all()


@pytest.mark.parametrize("layout", [COCO17, BLAZEPOSE33])
def test_boxes_ids_scores_and_layouts(layout):
    frame = np.zeros((480, 640, 3), np.uint8)
    poses = _poses([_person(layout, x0=180), _person(layout, x0=440)], ids=[1, -1], layout=layout)
    draw_poses(frame, poses, RenderConfig(draw_boxes=True, draw_scores=True, draw_ids=True))
    x1, y1, x2, y2 = np.round(poses.boxes[0]).astype(int)
    assert frame[(y1 + y2) // 2, x1].max() > 0  # box edge
    assert frame[:y1, x1:x1 + 40].max() > 0  # label above the box


def test_nonfinite_keypoints_are_skipped():
    kp = _person()
    kp[3, :2] = np.nan
    frame = np.zeros((480, 640, 3), np.uint8)
    draw_poses(frame, _poses([kp]), RenderConfig())
    assert frame.max() > 0
