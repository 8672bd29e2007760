"""Images of different sizes and orientations through the real Pipeline: every keypoint comes out in
its own image's pixels (checked against a scaled and a rotated copy), never in the first image's."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from core.config import Config
from core.io import CocoJsonWriter, ImageSource
from core.pipeline import Pipeline
from core.poses import Poses


class MarkerEstimator:
    """Finds the one bright-red block of a frame; its 4 corners and centre are the keypoints.

    Geometry-exact and deterministic, so the test checks the coordinate frame, not a model."""

    device, backend = "cpu", "marker"

    def infer(self, frame, timings=None) -> Poses:
        red = (frame[..., 0] > 200) & (frame[..., 1] < 60) & (frame[..., 2] < 60)
        ys, xs = np.nonzero(red)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), ((x0 + x1) / 2, (y0 + y1) / 2)]
        kp = np.zeros((1, 17, 3))
        kp[0, :5, :2] = pts
        kp[0, :, 2] = 1.0
        return Poses([[x0, y0, x1, y1]], kp, [1.0])

    def postprocess(self, poses):
        return poses

    def reset(self):
        pass


def _scene(width=400, height=300) -> np.ndarray:
    img = np.full((height, width, 3), 90, np.uint8)
    img[60:120, 40:200] = (255, 0, 0)  # the marker: x 40-200, y 60-120, off-centre so rotations show
    return img


def _corners(entry) -> np.ndarray:
    return np.asarray(entry["keypoints"]).reshape(17, 3)[:5, :2]


def test_sizes_and_orientations_keep_their_own_pixels(tmp_path):
    a = _scene()
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(a).save(folder / "1_a.png")
    Image.fromarray(a).resize((200, 150), Image.NEAREST).save(folder / "2_half.png")  # a scaled copy
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90° counter-clockwise: "rotate 90° clockwise to display"
    Image.fromarray(np.ascontiguousarray(np.rot90(a, 1))).save(folder / "3_exif.jpg", quality=98,
                                                               exif=exif.tobytes())
    Image.fromarray(np.ascontiguousarray(np.rot90(a, -1))).save(folder / "4_portrait.png")  # really portrait
    out = tmp_path / "o.json"
    cfg = Config.load()
    cfg.update({"tracking": {"enabled": False}, "smoothing": {"enabled": False}})
    source = ImageSource(folder)
    p = Pipeline(source, cfg, sinks=[CocoJsonWriter(out)], estimator=MarkerEstimator(), render=False, mode="file")
    p.start()
    p.wait()
    entries = {e["image_id"]: e for e in json.loads(out.read_text())}
    assert sorted(entries) == [0, 1, 2, 3]
    ref = _corners(entries[0])
    np.testing.assert_allclose(ref[4], [120, 90], atol=1)  # in a's own pixels
    np.testing.assert_allclose(_corners(entries[1]), ref * 0.5, atol=1)  # the half-size copy: half the coords
    np.testing.assert_allclose(_corners(entries[2]), ref, atol=2)  # EXIF-rotated: upright again, a's coords
    # rot90 clockwise of a W×H image: (x, y) -> (H - y, x); the portrait image is 300 wide, 400 high
    portrait = _corners(entries[3])
    np.testing.assert_allclose(portrait[4], [300 - 90, 120], atol=1)
    assert source.sizes == [(400, 300), (200, 150), (400, 300), (300, 400)]
