"""NanoDet person detector: GFL decode, letterbox mapping, real demo frames, batching, tiles;
the body+face combined detector's merging."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from core.detection import Detections
from core.roi import Rois
from core.detection.combined import CombinedDetector, box_alignment, merge
from core.detection.nanodet import (MEAN_BGR, REG_BINS, STD_BGR, STRIDES, NanoDetDetector, blob,
                                    drop_contained, gfl_decode, grid_centres, letterbox, nms)

WOMAN_100 = (915, 518, 1146, 937)  # demo frame 100, measured boxes (x1, y1, x2, y2)
MAN_100 = (590, 63, 710, 442)
BACKGROUND = (1470, 596, 1490, 631)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def one_hot_logits(distances: list[float]) -> np.ndarray:
    """Box-distribution logits whose softmax puts (almost) all mass on the given bins."""
    logits = np.full((4, REG_BINS), -50.0, np.float32)
    for side, d in enumerate(distances):
        lo = int(np.floor(d))
        frac = d - lo
        if frac == 0:
            logits[side, lo] = 0.0
        else:  # two bins with probabilities 1-frac and frac: expectation = d
            logits[side, lo], logits[side, lo + 1] = np.log(1 - frac), np.log(frac)
    return logits.reshape(-1)


def test_gfl_decode_takes_the_expectation_over_bins():
    h, w = 64, 96
    centres = grid_centres(h, w)
    assert [len(c) for c in centres] == [(h // s) * (w // s) for s in STRIDES]
    scores = [np.zeros((len(c), 80), np.float32) for c in centres]
    dists = [np.zeros((len(c), 44), np.float32) for c in centres]
    # stride 16 level, cell (x=2, y=1): centre (40, 24); sides 1.5, 2, 0.25, 3 bins
    cell = 1 * (w // 16) + 2
    scores[1][cell, 0] = 0.6
    scores[1][cell, 5] = 0.9  # another class: ignored
    dists[1][cell] = one_hot_logits([1.5, 2.0, 0.25, 3.0])
    boxes, s = gfl_decode(scores, dists, centres, 0.3)
    assert s.tolist() == pytest.approx([0.6])
    assert boxes[0] == pytest.approx([40 - 24, 24 - 32, 40 + 4, 24 + 48], abs=1e-3)


def test_letterbox_maps_back_exactly():
    image = np.zeros((100, 300, 3), np.uint8)
    canvas, (s, px, py) = letterbox(image, 128, 128)
    assert canvas.shape == (128, 128, 3)
    assert s == pytest.approx(128 / 300) and px == 0 and py == (128 - 43) // 2


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.4]), 0.5).tolist() == [1, 2]


def test_parts_inside_a_larger_box_are_dropped():
    boxes = np.array([[0, 0, 100, 300], [10, 0, 90, 120], [80, 0, 180, 300], [200, 0, 220, 40],
                      [150, 0, 300, 300]], np.float32)
    # person, their upper body, a neighbour (overlapping), a small person inside a weak box
    scores = np.array([0.9, 0.6, 0.8, 0.5, 0.3], np.float32)
    assert drop_contained(boxes, scores, np.arange(5), 0.8).tolist() == [0, 2, 3, 4]


@pytest.fixture(scope="module")
def nanodet(npm_nanodet):
    return NanoDetDetector(SimpleNamespace(tiling=False, max_persons=10), "cpu",
                           input_size=(416, 416))


@pytest.fixture(scope="module")
def npm_nanodet():
    from core.models import npm_fetch

    if not npm_fetch.is_installed(npm_fetch.npm_model("nanodet")):
        pytest.skip("nanodet not installed (python main.py models install)")


def test_finds_both_large_people_letterboxed(nanodet, demo_frames):
    """Frame 100 at 416x416: the walking woman and the backlit man on the roof (MODELS.md)."""
    d = nanodet(demo_frames[100])
    assert isinstance(d, Detections) and d.keypoints is None
    best = [max(iou(b, ref) for b in d.boxes) for ref in (WOMAN_100, MAN_100)]
    assert min(best) > 0.8, best
    assert (d.scores >= 0.3).all() and (np.diff(d.scores) <= 0).all()


def test_larger_input_finds_the_background_person(npm_nanodet, demo_frames):
    det = NanoDetDetector(SimpleNamespace(tiling=False, max_persons=10), "cpu",
                          input_size=(576, 1024), score_threshold=0.2)
    small = NanoDetDetector(SimpleNamespace(tiling=False, max_persons=10), "cpu",
                            input_size=(416, 416), score_threshold=0.2)
    found = [max((iou(b, BACKGROUND) for b in det(demo_frames[i]).boxes), default=0)
             for i in (0, 100, 150, 200)]
    missed = [max((iou(b, BACKGROUND) for b in small(demo_frames[i]).boxes), default=0)
              for i in (0, 100, 150, 200)]
    assert min(found) > 0.5 and max(missed) < 0.3, (found, missed)


def test_batch_equals_single_frames(nanodet, demo_frames):
    frames = [demo_frames[i] for i in (50, 100, 150)]
    batched = nanodet.detect_batch(frames)
    for frame, got in zip(frames, batched):
        want = nanodet(frame)
        assert got.boxes == pytest.approx(want.boxes, abs=0.05)
        assert got.scores == pytest.approx(want.scores, abs=1e-4)


def test_tiles_drop_cut_off_people(npm_nanodet, demo_frames):
    """With tiles every kept tile box is either inside its tile or seen by the full view too."""
    cfg = SimpleNamespace(tiling=True, tile_size=640, tile_overlap=0.25, max_persons=10)
    det = NanoDetDetector(cfg, "cpu", input_size=(416, 416), score_threshold=0.3)
    d = det(demo_frames[100])
    best = [max(iou(b, ref) for b in d.boxes) for ref in (WOMAN_100, MAN_100, BACKGROUND)]
    assert min(best) > 0.5, best
    assert len(det.views(994, 1768)) > 1


@pytest.mark.parametrize("per_run,calls", [(1, 8), (2, 4), (3, 3), (4, 2), (0, 1), (8, 1)])
def test_tiles_per_run_cover_every_tile_in_turn(per_run, calls):
    """The full view every call and ``tiles_per_run`` tiles (0 or ≥ all: every tile), in
    checkerboard order, every tile seen within ceil(8 / per_run) calls."""
    cfg = SimpleNamespace(tiling=True, tile_size=640, tile_overlap=0.4, max_persons=10,
                          tiles_per_run=per_run)
    det = NanoDetDetector(cfg, "cpu", model=lambda x: None, input_size=(416, 416))
    assert len(det.view_indices(994, 1768)) == 9  # the first call after a reset: every tile
    seen = set()
    for call in range(1, calls + 1):
        det.calls = call
        idx = det.view_indices(994, 1768)
        assert idx[0] == 0 and len(idx) == 1 + (per_run if 0 < per_run < 8 else 8)
        seen |= set(idx[1:].tolist())
    assert seen == set(range(1, 9))
    if per_run == 4:  # one colour of the checkerboard per call
        det.calls = 1
        tiles = det.views(994, 1768)[det.view_indices(994, 1768)[1:]]
        cols, rows = np.unique(det.views(994, 1768)[1:, 0]), np.unique(det.views(994, 1768)[1:, 1])
        colour = {(np.searchsorted(cols, x) + np.searchsorted(rows, y)) % 2 for x, y, _, _ in tiles}
        assert len(colour) == 1


def test_alternating_tiles_cover_every_tile_in_two_calls(npm_nanodet, demo_frames):
    """tiles_per_run 4 (half of 8): the full view and a checkerboard half of the tiles per call,
    the other half on the next; both halves find the three people of frame 100."""
    cfg = SimpleNamespace(tiling=True, tile_size=640, tile_overlap=0.4, max_persons=10,
                          tiles_per_run=4)
    det = NanoDetDetector(cfg, "cpu", input_size=(416, 416), score_threshold=0.3)
    h, w = demo_frames[100].shape[:2]
    n = len(det.views(h, w))
    det.calls = 1  # past the first call after a reset, which sees every tile
    seen = []
    for _ in range(2):
        idx = det.view_indices(h, w)
        assert idx[0] == 0 and len(idx) == 1 + (n - 1) // 2
        seen.append(set(idx[1:].tolist()))
        d = det(demo_frames[100])
        best = [max(iou(b, ref) for b in d.boxes) for ref in (WOMAN_100, MAN_100, BACKGROUND)]
        assert min(best) > 0.5, best
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(1, n))


def test_combined_merges_a_person_seen_by_both(npm_nanodet, demo_frames):
    """One detection per person: BlazePose's alignment kept where a body box confirms it."""
    from core.config import DetectorConfig
    from core.detection.blazepose import BlazePoseDetector

    body = NanoDetDetector(SimpleNamespace(tiling=False, max_persons=10), "cpu",
                           input_size=(576, 1024), score_threshold=0.35)
    face = BlazePoseDetector(DetectorConfig(), "cpu")
    combined = CombinedDetector(body, face)
    frame = demo_frames[100]
    b, f, c = body(frame), face(frame), combined(frame)
    assert len(c) <= len(b) + len(f) - 2  # both large people seen twice, merged
    assert c.keypoints is not None and c.keypoints.shape == (len(c), 4, 2)
    assert max(iou(x, WOMAN_100) for x in c.boxes) > 0.8


def test_box_alignment_reproduces_the_box_roi_rule():
    boxes = np.array([[100, 50, 160, 250]], np.float32)
    kp, face = box_alignment(boxes)
    got = Rois.from_alignment_points(kp[:, 0], kp[:, 1])
    want = Detections(boxes, np.ones(1)).rois()
    assert got.centres == pytest.approx(want.centres) and got.sides == pytest.approx(want.sides)
    assert got.rotations == pytest.approx(want.rotations)


def test_merge_pairs_hips_inside_boxes_only():
    body = Detections(np.array([[0, 0, 100, 300], [500, 0, 600, 300]]), np.array([0.6, 0.5]))
    kp = np.array([[[50, 200], [50, 60], [50, 100], [50, 40]]], np.float32)  # hips in box 0
    face = Detections(np.array([[-100, 60, 200, 340]]), np.array([0.9]), kp,
                      np.array([[50, 30]]))
    out = merge(body, face, 10)
    assert len(out) == 2
    assert out.scores.tolist() == pytest.approx([0.9, 0.5])
    assert out.keypoints[0] == pytest.approx(kp[0])


# The man mid-backflip on the roof, backlit, face hidden (frames 150, 152; measured boxes).
# (Frame 160 too for a 576x1024 full view; the default 416-px views miss him there.)
FLIP = {150: (737, 77, 877, 512), 152: (738, 78, 876, 461)}


def test_default_detector_finds_the_flipping_man_the_face_anchored_one_misses(npm_nanodet,
                                                                             flip_frames):
    """A person whose face is hidden (upside down, backlit): the default detector (the body
    detector, as configured in assets/default.yaml) finds him within one cycle of its tile
    schedule (every tile seen once: on frame 152 only some tiles see him whole), the
    face-anchored BlazePose detector alone puts no person there (no mid-hip point inside)."""
    from core.config import Config, DetectorConfig
    from core.detection import make_detector
    from core.detection.blazepose import BlazePoseDetector

    cfg = Config.load().detector
    body = make_detector(cfg, "cpu")
    assert body.name == "nanodet"
    tiles = len(body.views(*next(iter(flip_frames.values())).shape[:2])) - 1
    cycle = -(-tiles // cfg.tiles_per_run)
    face = BlazePoseDetector(DetectorConfig(name="blazepose"), "cpu")
    for i, ref in FLIP.items():
        found = np.concatenate([body(flip_frames[i]).boxes for _ in range(cycle)])
        assert max((iou(b, ref) for b in found), default=0) > 0.5, i
        hips = face(flip_frames[i]).keypoints[:, 0]
        inside = (hips[:, 0] >= ref[0]) & (hips[:, 0] <= ref[2]) & (hips[:, 1] >= ref[1]) \
            & (hips[:, 1] <= ref[3])
        assert not inside.any(), i


@pytest.fixture(scope="module")
def flip_frames(demo_video):
    import av

    out = {}
    with av.open(str(demo_video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in FLIP:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= max(FLIP):
                break
    return out


@pytest.mark.parametrize("view,bound,canvas", [
    ((994, 1768), (416, 416), (256, 416)),  # the demo's full view: same scale, 0.6 of the pixels
    ((360, 640), (416, 416), (256, 416)),
    ((640, 640), (416, 416), (416, 416)),  # a square tile
    ((1080, 1920), (576, 1024), (576, 1024)),
    ((1920, 1080), (416, 416), (416, 256)),  # portrait
])
def test_each_view_gets_the_smallest_canvas_at_the_bound_scale(npm_nanodet, view, bound, canvas):
    det = NanoDetDetector(SimpleNamespace(tiling=False, max_persons=10), "cpu", input_size=bound)
    assert det.canvas(*view) == canvas


def test_fitted_canvas_finds_what_the_square_canvas_finds(nanodet, demo_frames):
    """Frame 100 on 256×416 (fitted) and on the full 416² canvas: the same two people."""
    square = NanoDetDetector(SimpleNamespace(tiling=False, max_persons=10), "cpu",
                             model=nanodet._models[(416, 416)], input_size=(416, 416))
    assert square.canvas(994, 1768) == (416, 416) and nanodet.canvas(994, 1768) == (256, 416)
    fitted, full = nanodet(demo_frames[100]), square(demo_frames[100])
    assert len(fitted.boxes) == len(full.boxes)
    assert all(max(iou(b, ref) for b in fitted.boxes) > 0.9 for ref in full.boxes)


def test_detect_near_reads_the_tile_around_a_lost_person(npm_nanodet, demo_frames):
    """A recovery run for the small background person reads only the tile nearest them (no full
    view), and finds them; the alternation of scheduled tiles does not move."""
    cfg = SimpleNamespace(tiling=True, tile_size=640, tile_overlap=0.4, max_persons=10,
                          tiles_per_run=4)
    det = NanoDetDetector(cfg, "cpu", input_size=(416, 416), score_threshold=0.3)
    centre = np.array([[(BACKGROUND[0] + BACKGROUND[2]) / 2, (BACKGROUND[1] + BACKGROUND[3]) / 2]])
    picked = det.near_indices(994, 1768, centre, [45.0])
    assert len(picked) == 1 and picked[0] > 0
    x0, y0, x1, y1 = det.views(994, 1768)[picked[0]]
    assert x0 <= centre[0, 0] < x1 and y0 <= centre[0, 1] < y1
    d = det.detect_near(demo_frames[100], centre, [45.0])
    assert max(iou(b, BACKGROUND) for b in d.boxes) > 0.5
    assert det.calls == 0


@pytest.mark.parametrize("sides, full, tiles", [
    ([45.0], False, 1),  # small: its tile only
    ([300.0], True, 0),  # 3 sides do not fit a 640-px tile: the full view
    ([45.0, 300.0], True, 1),  # one of each
    ([45.0, 50.0], False, 1),  # two small people in one tile: read once
])
def test_near_indices_give_small_people_a_tile_and_large_ones_the_full_view(npm_nanodet, sides, full, tiles):
    cfg = SimpleNamespace(tiling=True, tile_size=640, tile_overlap=0.4, max_persons=10, tiles_per_run=2)
    det = NanoDetDetector(cfg, "cpu", input_size=(416, 416))
    centres = np.array([[1480.0, 613.0]] * len(sides))
    picked = det.near_indices(994, 1768, centres, sides)
    assert (0 in picked) == full and int((picked > 0).sum()) == tiles
    assert det.near_indices(600, 800, centres, sides).tolist() == [0]  # no tiles: the full view


def test_blob_is_bgr_normalised_nchw():
    """blob() equals the plain formula: BGR, (x − mean) / std, channels first."""
    rng = np.random.default_rng(0)
    canvases = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(2)]
    plain = ((np.stack(canvases)[..., ::-1].astype(np.float32) - MEAN_BGR) / STD_BGR).transpose(0, 3, 1, 2)
    out = blob(canvases)
    assert out.shape == (2, 3, 64, 96) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, plain, atol=1e-5)
