"""Synthetic people: deterministic, valid COCO keypoints (pycocotools as the oracle), occlusion
labels, several people per image, videos readable by the pipeline's sources."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from core.io.sources import open_source
from core.skeleton import COCO17, get_skeleton
from training.datasets.synthetic import (PersonPose, SyntheticSpec, generate_dataset, generate_video,
                                         render_scene, skeleton_points)

SMALL = SyntheticSpec(num_images=12, image_size=(120, 160), people=(1, 3), seed=5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return out, generate_dataset(out, SMALL)


def test_deterministic_by_seed():
    a_img, a_people = render_scene(np.random.default_rng([3, 7]), SMALL)
    b_img, b_people = render_scene(np.random.default_rng([3, 7]), SMALL)
    c_img, _ = render_scene(np.random.default_rng([4, 7]), SMALL)
    assert np.array_equal(a_img, b_img) and not np.array_equal(a_img, c_img)
    assert all(np.array_equal(p["keypoints"], q["keypoints"]) for p, q in zip(a_people, b_people))


def test_regeneration_is_identical(dataset, tmp_path):
    out, ann = dataset
    again = generate_dataset(tmp_path / "again", SMALL)
    assert json.loads(again.read_text())["annotations"] == json.loads(ann.read_text())["annotations"]
    assert (tmp_path / "again" / "images" / "000003.jpg").read_bytes() == (out / "images" / "000003.jpg").read_bytes()


def test_coco_format(dataset):
    out, ann = dataset
    coco = COCO(str(ann))
    assert len(coco.getImgIds()) == SMALL.num_images
    cat = coco.loadCats(1)[0]
    assert cat["keypoints"] == list(get_skeleton(COCO17).names)
    people_per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert min(people_per_image) >= 1 and max(people_per_image) >= 2
    h, w = SMALL.image_size
    vis_values = set()
    for a in coco.loadAnns(coco.getAnnIds()):
        kp = np.asarray(a["keypoints"]).reshape(17, 3)
        vis_values |= set(kp[:, 2].astype(int).tolist())
        assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
        labelled = kp[kp[:, 2] > 0]
        assert (labelled[:, 0] >= 0).all() and (labelled[:, 0] <= w - 1).all()
        assert (labelled[:, 1] >= 0).all() and (labelled[:, 1] <= h - 1).all()
        assert (kp[kp[:, 2] == 0, :2] == 0).all()  # COCO: unlabelled joints at (0, 0)
        x, y, bw, bh = a["bbox"]
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
        assert 0 < a["area"] <= bw * bh  # silhouette pixels inside the box
        # every visible joint lies inside the silhouette's box (1 px of anti-aliasing slack)
        vis = kp[kp[:, 2] == 2]
        assert (vis[:, 0] >= x - 1).all() and (vis[:, 0] <= x + bw + 1).all()
    assert vis_values <= {0, 1, 2} and 2 in vis_values


def test_occlusion_is_labelled():
    """Across scenes, some joints are labelled occluded (v = 1) and some are outside (v = 0)."""
    spec = SyntheticSpec(image_size=(120, 160), people=(3, 3), occluder_prob=0.8, outside_prob=0.5)
    v = np.concatenate([p["keypoints"][:, 2] for i in range(12)
                        for p in render_scene(np.random.default_rng([9, i]), spec)[1]])
    assert (v == 1).sum() > 0 and (v == 0).sum() > 0 and (v == 2).mean() > 0.5


def test_person_faces_camera():
    """Frontal convention: the person's left joints are on the image right."""
    kp, _ = skeleton_points(PersonPose(hip=np.array([100.0, 100.0]), height=100.0))
    sk = get_skeleton(COCO17)
    for left, right in sk.flip_pairs:
        assert kp[left, 0] > kp[right, 0]
    assert kp[0, 1] < kp[5, 1] < kp[11, 1] < kp[13, 1] < kp[15, 1]  # nose above shoulder, hip, knee, ankle


def test_unknown_spec_keys_are_user_errors():
    from core.errors import UserError

    with pytest.raises(UserError, match="unknown key"):
        SyntheticSpec.from_dict({"num_imgs": 3})
    with pytest.raises(UserError, match="background"):
        SyntheticSpec.from_dict({"backgrounds": ["sky"]})


def test_video_matches_its_annotations(tmp_path):
    spec = SyntheticSpec(image_size=(96, 128), people=(2, 2), seed=2)
    video = generate_video(tmp_path / "v.mp4", spec, num_frames=12, fps=10, key_every=5)
    gt = json.loads(video.with_suffix(".json").read_text())
    src = open_source(video=str(video))
    frames = []
    while (f := src.read()) is not None:
        frames.append(f.image)
    src.close()
    assert len(frames) == 12 == len(gt["images"])
    assert frames[0].shape == (96, 128, 3)
    assert len(gt["annotations"]) == 24  # two people in every frame
    # people move: the same person's keypoints differ between the first and last frame
    first = np.asarray(gt["annotations"][0]["keypoints"]).reshape(17, 3)
    last = np.asarray(gt["annotations"][-2]["keypoints"]).reshape(17, 3)
    assert np.abs(first[:, :2] - last[:, :2]).max() > 1.0
