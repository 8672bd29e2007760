"""Pseudo-labels of the demo video: a valid COCO keypoint dataset the training loader reads."""
from __future__ import annotations

import json

import numpy as np
from pycocotools.coco import COCO

from core.poses import Poses
from training.datasets.coco_keypoints import AugmentConfig, CocoKeypoints, SampleGeometry
from training.datasets.pseudo_label import poses_to_annotations


def test_demo_frames_become_coco_annotations(demo_video, blazepose_models, tmp_path, capsys, cli):
    out = tmp_path / "pseudo"
    rc = cli(["train", "pseudo-label", "--video", str(demo_video), "--out", str(out), "--every", "40",
                   "--max-frames", "3"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 3 and summary["people"] >= 3  # the demo has 2-3 people in view
    coco = COCO(str(out / "annotations.json"))
    frames = [img["frame_index"] for img in coco.loadImgs(coco.getImgIds())]
    assert frames == [0, 40, 80]
    for a in coco.loadAnns(coco.getAnnIds()):
        kp = np.asarray(a["keypoints"]).reshape(17, 3)
        assert a["num_keypoints"] == int((kp[:, 2] == 2).sum()) >= 5
        assert set(kp[:, 2].tolist()) <= {0, 2}
        assert (out / "images" / coco.loadImgs(a["image_id"])[0]["file_name"]).is_file()
    ds = CocoKeypoints(out / "images", out / "annotations.json",
                       SampleGeometry(input_size=(128, 96), heatmap_size=(32, 24)), AugmentConfig.none())
    assert len(ds) == summary["people"] and ds[0]["image"].shape == (3, 128, 96)


def test_filters_people_and_keypoints():
    kp = np.zeros((3, 17, 3), np.float32)
    kp[:, :, :2] = np.random.default_rng(0).uniform(10, 90, (3, 17, 2))
    kp[:, :, 2] = 0.9
    kp[1, :14, 2] = 0.1  # only 3 confident keypoints
    kp[2, 0, :2] = (150, 50)  # outside a 100 x 100 frame
    poses = Poses(np.array([[5, 5, 95, 95]] * 3), kp, np.array([0.9, 0.9, 0.2]))
    anns = poses_to_annotations(poses, image_id=7, first_id=1, width=100, height=100, min_score=0.5,
                                keypoint_threshold=0.5, min_keypoints=5)
    assert len(anns) == 1  # person 1 has too few keypoints, person 2 too low a score
    assert anns[0]["image_id"] == 7 and anns[0]["num_keypoints"] == 17
    assert anns[0]["bbox"] == [5.0, 5.0, 90.0, 90.0]


def test_collection_through_the_batch_runner(demo_video, blazepose_models, tmp_path, cli):
    from bench.bench_batch import make_clips
    from core.batch import Manifest, verify

    clips = make_clips(demo_video, tmp_path / "clips", 2, 6, width=640)
    out = tmp_path / "labels"
    args = ["train", "pseudo-label", "--collection", *map(str, clips), "--out", str(out), "--every", "3",
            "--workers", "1", "--no-progress"]
    assert cli(args) == 0
    records = Manifest(out).records()
    assert [(r["name"], r["job"], r["status"], r["frames"]) for r in records] == \
        [("clip_0", "pseudo-label", "ok", 2), ("clip_1", "pseudo-label", "ok", 2)]
    for r in records:
        assert verify(r, out)
        coco = COCO(str(out / r["outputs"]["annotations"]))
        assert [img["frame_index"] for img in coco.loadImgs(coco.getImgIds())] == [0, 3]
    assert cli(args) == 0 and len(Manifest(out).records()) == 2  # complete: nothing redone
