"""Writers: H.264 MP4 read back with PyAV, JSON valid after every frame, OpenPose JSON, CSV, paths."""
from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import av
import numpy as np
import pytest

from core.config import Config
from core.errors import UserError
from core.io import CocoJsonWriter, CsvWriter, OpenPoseJsonWriter, SourceInfo, VideoWriter, check_output_path
from core.poses import Poses
from core.skeleton import BLAZEPOSE33, COCO17, get_skeleton


def _result(index: int, n_people: int, width: int = 64, height: int = 48, layout: str = COCO17, timestamp=None,
            track: bool = True):
    k = get_skeleton(layout).num_keypoints
    rng = np.random.default_rng(index)
    kp = np.concatenate([rng.uniform(0, [width, height], (n_people, k, 2)), rng.uniform(0.1, 1, (n_people, k, 1))], -1)
    boxes = np.concatenate([kp[..., :2].min(1), kp[..., :2].max(1)], 1)
    ids = np.arange(n_people) + 10 if track else None
    poses = Poses(boxes, kp, rng.uniform(0.5, 1, n_people), ids, layout)
    frame = np.full((height, width, 3), (index * 7) % 256, np.uint8)
    return SimpleNamespace(index=index, timestamp=index / 30 if timestamp is None else timestamp, frame=frame,
                           rendered=None, poses=poses)


def _info(width=64, height=48, fps=30.0, live=False, n=None):
    return SourceInfo("clip.mp4", fps, width, height, n, live)


@pytest.mark.parametrize("width, height, fps", [(64, 48, 30.0), (65, 47, 25.0), (64, 48, 30000 / 1001)])
def test_video_writer_h264_size_rate_and_count(tmp_path, width, height, fps):
    path = tmp_path / "out.mp4"
    w = VideoWriter(path)
    w.open(_info(width, height, fps), Config.load())
    for i in range(20):
        w.write(_result(i, 1, width, height))
    w.close()
    w.close()  # idempotent
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        # Odd dimensions are padded by one pixel (documented); even ones are kept exactly.
        assert (s.width, s.height) == (width + width % 2, height + height % 2)
        assert float(s.average_rate) == pytest.approx(fps, rel=1e-3)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(frames) == 20
    # Grey level of frame i is 7i: lossy, but close.
    assert abs(int(frames[5][10, 10, 0]) - 35) <= 6


def test_video_writer_live_uses_capture_times(tmp_path):
    path = tmp_path / "live.mp4"
    w = VideoWriter(path)
    w.open(_info(live=True), Config.load())
    times = [0.0, 0.1, 0.15, 0.5, 0.55]  # dropped frames leave gaps
    for i, t in enumerate(times):
        w.write(_result(i, 0, timestamp=100 + t))
    w.close()
    with av.open(str(path)) as c:
        got = [f.time for f in c.decode(video=0)]
    np.testing.assert_allclose(got, times, atol=0.002)


def test_coco_json_is_valid_after_every_frame_and_in_coco17(tmp_path):
    path = tmp_path / "r.json"
    w = CocoJsonWriter(path)
    w.open(_info(), Config.load())
    # While running the data goes to a temporary file beside the output, renamed by close: the
    # output path never holds an unfinished file.
    assert not path.exists() and w.writing_path.parent == path.parent
    assert json.loads(w.writing_path.read_text()) == []
    expected = 0
    for i, n in enumerate([2, 0, 3, 1]):
        w.write(_result(i, n, layout=BLAZEPOSE33 if i == 3 else COCO17))
        expected += n
        entries = json.loads(w.writing_path.read_text())  # valid while still open, as after a kill
        assert len(entries) == expected
    tmp = w.writing_path
    w.close()
    assert w.finished and not tmp.exists()
    entries = json.loads(path.read_text())
    assert [e["image_id"] for e in entries] == [0, 0, 2, 2, 2, 3]
    for e in entries:
        assert e["category_id"] == 1 and len(e["keypoints"]) == 17 * 3 and len(e["box"]) == 4
        assert e["idx"] >= 10
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(4)], "annotations": [],
                  "categories": [{"id": 1, "name": "person", "keypoints": list(get_skeleton(COCO17).names)}]}
    gt.createIndex()
    assert len(gt.loadRes(str(path)).getAnnIds()) == 6  # the official loader accepts the file


def test_openpose_json_per_frame(tmp_path):
    folder = tmp_path / "op"
    w = OpenPoseJsonWriter(folder)
    w.open(_info(), Config.load())
    r = _result(7, 2)
    w.write(r)
    w.close()
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["clip_000000000007_keypoints.json"]
    doc = json.loads(files[0].read_text())
    assert doc["version"] == 1.3 and len(doc["people"]) == 2
    person = doc["people"][1]
    assert person["person_id"] == [11]
    # BODY_25 (what OpenPose's tools read): 75 values; the COCO points at their BODY_25 slots.
    body25 = np.asarray(person["pose_keypoints_2d"]).reshape(25, 3)
    coco = dict(zip(get_skeleton(COCO17).names, r.poses.keypoints[1]))
    np.testing.assert_allclose(body25[0], coco["nose"], atol=1e-3)
    np.testing.assert_allclose(body25[2], coco["right_shoulder"], atol=1e-3)
    np.testing.assert_allclose(body25[14], coco["left_ankle"], atol=1e-3)


def test_csv_rows(tmp_path):
    path = tmp_path / "k.csv"
    w = CsvWriter(path)
    w.open(_info(), Config.load())
    w.write(_result(0, 2))
    w.write(_result(1, 1, track=False))
    w.close()
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 3 * 17
    assert list(rows[0]) == ["frame", "person", "track", "keypoint", "x", "y", "score"]
    assert rows[0]["keypoint"] == "nose" and rows[17]["keypoint"] == "nose" and rows[17]["track"] == "11"
    assert rows[-1]["frame"] == "1" and rows[-1]["track"] == "-1" and rows[-1]["keypoint"] == "right_ankle"


def test_output_path_checks(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create video folder|not a folder"):
        VideoWriter(blocker / "sub" / "out.mp4")
    with pytest.raises(UserError, match="is a folder, not a file"):
        CocoJsonWriter(tmp_path)
    with pytest.raises(UserError, match="cannot create JSON folder|not writable"):
        CocoJsonWriter("/proc/rmpe-test/out.json")
    made = check_output_path(tmp_path / "new" / "deeper" / "x.csv", "CSV")
    assert made.parent.is_dir() and not made.exists()
    assert not [p for p in made.parent.iterdir()]  # the probe file is gone
