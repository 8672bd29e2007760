"""Issue 13 at the IO boundary: a full disk at each writer, images with their own geometry (size,
EXIF orientation, truncated, not an image), container suffixes, OpenPose's BODY_25 layout."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

from core.config import Config
from core.errors import UserError
from core.io import ImageSource, OpenPoseJsonWriter, SourceInfo, VideoWriter
from core.io.writers import BODY_25, to_body25
from core.poses import Poses
from core.skeleton import COCO17, get_skeleton

ROOT = Path(__file__).resolve().parents[3]

# A child process whose file-size limit makes every write past LIMIT fail with EFBIG, as a full disk
# fails with ENOSPC (SIGXFSZ ignored, so the write returns the error instead of killing the process).
FULL_DISK = r"""
import json, os, resource, signal, sys
import numpy as np
from types import SimpleNamespace
from core.io import CocoJsonWriter, CsvWriter, OpenPoseJsonWriter, SourceInfo, VideoWriter
from core.errors import UserError
from core.poses import Poses

kind, folder, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
make = {"video": lambda: VideoWriter(os.path.join(folder, "o.mp4")),
        "json": lambda: CocoJsonWriter(os.path.join(folder, "o.json")),
        "csv": lambda: CsvWriter(os.path.join(folder, "o.csv")),
        "openpose": lambda: OpenPoseJsonWriter(os.path.join(folder, "op"))}[kind]
sink = make()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
rng = np.random.default_rng(0)
sink.open(SourceInfo("clip", 30.0, 160, 120, None, False), None)
try:
    for i in range(400):
        n = min(i + 1, 30)  # growing frames: an early one fits, a later one hits the limit
        kp = np.concatenate([rng.uniform(0, 100, (n, 17, 2)), rng.uniform(0.1, 1, (n, 17, 1))], -1)
        poses = Poses(np.tile([0.0, 0.0, 100.0, 100.0], (n, 1)), kp, np.ones(n), np.arange(n))
        sink.write(SimpleNamespace(index=i, timestamp=i / 30, frame=rng.integers(0, 256, (120, 160, 3), np.uint8),
                                   rendered=None, poses=poses))
    sink.close()
except UserError as exc:
    print(json.dumps({"error": str(exc), "finished": sink.finished}))
    sys.exit(1)
print(json.dumps({"error": None, "finished": sink.finished}))
"""


@pytest.mark.parametrize("kind, target, limit", [("video", "o.mp4", 60000), ("json", "o.json", 60000),
                                                 ("csv", "o.csv", 60000), ("openpose", "op", 6000)])
def test_a_full_disk_leaves_no_half_file_and_names_it(tmp_path, kind, target, limit):
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, kind, str(tmp_path), str(limit)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "File too large" in report["error"] and str(tmp_path / target) in report["error"]
    assert "\n" not in report["error"]
    assert not report["finished"] and "Traceback" not in proc.stderr
    leftovers = [p.name for p in tmp_path.rglob(".rmpe-tmp-*")]
    assert leftovers == []  # the unfinished temporary file is removed
    if kind == "openpose":  # per-frame files: every file there is complete JSON, the failing one absent
        files = sorted((tmp_path / "op").iterdir())
        assert files and all(json.loads(f.read_text())["people"] for f in files)
    else:
        assert not (tmp_path / target).exists()  # no half file under the output's name


def _photo(width=320, height=240, seed=0) -> np.ndarray:
    """Smooth RGB content with an asymmetric bright block, so a wrong rotation or scale shows."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 80)], -1).astype(np.uint8)
    img[height // 8:height // 3, width // 10:width // 4] = 255
    return img


def _save(path: Path, rgb: np.ndarray, orientation: int | None = None, quality: int = 95) -> Path:
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    im.save(path, quality=quality, exif=exif.tobytes())
    return path


def test_images_keep_their_own_size_and_exif_orientation(tmp_path, caplog):
    a = _photo(320, 240)
    _save(tmp_path / "a.jpg", a)
    _save(tmp_path / "b.jpg", np.asarray(Image.fromarray(a).resize((160, 120), Image.BILINEAR)))
    # stored rotated 90° counter-clockwise, tagged "rotate 90° clockwise to display" (orientation 6)
    _save(tmp_path / "c.jpg", np.ascontiguousarray(np.rot90(a, 1)), orientation=6)
    (tmp_path / "d.jpg").write_text("this is not an image")  # a non-image with an image suffix
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    with caplog.at_level(logging.WARNING, logger="rmpe.io"):
        src = ImageSource(tmp_path)
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert [Path(p).name for p in src.files] == ["a.jpg", "b.jpg", "c.jpg"]
    assert src.sizes == [(320, 240), (160, 120), (320, 240)] and src.mixed_sizes
    assert [f.image.shape for f in frames] == [(240, 320, 3), (120, 160, 3), (240, 320, 3)]
    assert np.abs(frames[2].image.astype(int) - frames[0].image).mean() < 4  # upright again, = a
    assert any("d.jpg" in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)
    with pytest.raises(UserError, match=r"d\.jpg.*--strict-images"):
        ImageSource(tmp_path, strict=True)


def test_a_truncated_image_is_named_and_used_or_fatal_when_strict(tmp_path, caplog):
    path = _save(tmp_path / "t.jpg", _photo(320, 240))
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    _save(tmp_path / "u.jpg", _photo(320, 240))
    with caplog.at_level(logging.WARNING, logger="rmpe.io"):
        src = ImageSource(tmp_path)
        first, second = src.read(), src.read()
    assert first.image.shape == (240, 320, 3) and second.index == 1
    assert [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()] == \
        [f"image {path} is truncated: using the part that decodes"]
    strict = ImageSource(tmp_path, strict=True)
    with pytest.raises(UserError, match=r"t\.jpg is truncated"):
        strict.read()


def test_no_readable_image_is_one_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match="no readable images"):
        ImageSource(tmp_path)


@pytest.mark.parametrize("name, ok", [("z.avi", False), ("z", False), ("z.MP4", True), ("z.mkv", True),
                                      ("z.mov", True)])
def test_video_container_follows_the_suffix_or_is_refused(tmp_path, name, ok):
    if not ok:
        with pytest.raises(UserError, match="name it .mp4"):
            VideoWriter(tmp_path / name)
        return
    w = VideoWriter(tmp_path / name)
    w.open(SourceInfo("c", 30.0, 64, 48, None, False), Config.load())
    for i in range(5):
        w.write(SimpleNamespace(index=i, timestamp=i / 30, frame=np.zeros((48, 64, 3), np.uint8), rendered=None))
    w.close()
    with av.open(str(tmp_path / name)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5
        assert c.format.name.startswith({"mkv": "matroska"}.get(name.split(".")[-1], "mov"))


def test_video_writer_refuses_a_frame_of_another_size(tmp_path):
    w = VideoWriter(tmp_path / "v.mp4")
    w.open(SourceInfo("c", 30.0, 64, 48, None, False), Config.load())
    w.write(SimpleNamespace(index=0, timestamp=0.0, frame=np.zeros((48, 64, 3), np.uint8), rendered=None))
    with pytest.raises(UserError, match="a video needs one frame size"):
        w.write(SimpleNamespace(index=1, timestamp=0.1, frame=np.zeros((64, 48, 3), np.uint8), rendered=None))
    w.close()
    assert not list(tmp_path.iterdir())


def test_openpose_json_is_body25_as_openpose_defines_it(tmp_path):
    """OpenPose doc/02_output.md: one ``<name>_<12-digit frame>_keypoints.json`` per frame holding
    ``version`` and ``people``; each person has ``pose_keypoints_2d`` = x, y, c for the 25 BODY_25
    parts (0 Nose, 1 Neck, 2-4 right arm, 5-7 left arm, 8 MidHip, 9-11 right leg, 12-14 left leg,
    15/16 eyes, 17/18 ears, 19-24 feet), missing parts as 0, 0, 0."""
    assert BODY_25[:19] == ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
                            "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye",
                            "REar", "LEar")
    names = get_skeleton(COCO17).names
    kp = np.zeros((1, 17, 3))
    for j in range(17):
        kp[0, j] = (10 + j, 100 + j, 0.5 + j / 100)
    kp[0, names.index("right_hip"), 2] = 0.0  # a missing hip: no MidHip
    w = OpenPoseJsonWriter(tmp_path / "op")
    w.open(SourceInfo("clip.mp4", 30.0, 64, 48, None, False), Config.load())
    w.write(SimpleNamespace(index=3, poses=Poses([[0, 0, 50, 50]], kp, [0.9], [4])))
    w.close()
    doc = json.loads((tmp_path / "op" / "clip_000000000003_keypoints.json").read_text())
    assert set(doc) == {"version", "people"} and doc["version"] == 1.3
    person = doc["people"][0]
    assert set(person) == {"person_id", "pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
                           "hand_right_keypoints_2d", "pose_keypoints_3d", "face_keypoints_3d",
                           "hand_left_keypoints_3d", "hand_right_keypoints_3d"}
    assert person["person_id"] == [4] and len(person["pose_keypoints_2d"]) == 75
    body = np.asarray(person["pose_keypoints_2d"]).reshape(25, 3)
    openpose_name = {"nose": "Nose", "left_eye": "LEye", "right_eye": "REye", "left_ear": "LEar",
                     "right_ear": "REar", "left_shoulder": "LShoulder", "right_shoulder": "RShoulder",
                     "left_elbow": "LElbow", "right_elbow": "RElbow", "left_wrist": "LWrist",
                     "right_wrist": "RWrist", "left_hip": "LHip", "right_hip": "RHip", "left_knee": "LKnee",
                     "right_knee": "RKnee", "left_ankle": "LAnkle", "right_ankle": "RAnkle"}
    for j, name in enumerate(names):
        np.testing.assert_allclose(body[BODY_25.index(openpose_name[name])], kp[0, j], atol=1e-3)
    ls, rs = kp[0, names.index("left_shoulder")], kp[0, names.index("right_shoulder")]
    np.testing.assert_allclose(body[1], [(ls[0] + rs[0]) / 2, (ls[1] + rs[1]) / 2, min(ls[2], rs[2])], atol=1e-3)
    assert body[8].tolist() == [0, 0, 0] and body[19:].sum() == 0  # MidHip missing, feet unknown
    np.testing.assert_allclose(to_body25(kp), body[None], atol=1e-3)
