"""PGPG: on poses from three known atoms whose detector boxes have known offset distributions,
the fitted model (through ``train pgpg``) recovers the means within 0.02 and samples them back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import UserError
from training.datasets.synthetic import PersonPose, annotation_entries, coco_categories, skeleton_points
from training.pgpg import (PGPGModel, apply_offsets, box_offsets, fit_pgpg, match_detections, normalise_poses,
                           xywh_to_xyxy)

# Atomic poses (PersonPose joint angles) and the detector error of each, as normalised corner offsets
# (x1, y1, x2, y2) / GT box size. "arms up" is bimodal: the detector either clips the raised arms
# (top edge well below the hands) or keeps most of them.
ATOMS = {
    "stand": dict(pose=dict(shoulder=(0.15, 0.15), elbow=(0.2, 0.2), hip_swing=(0.05, 0.05), knee=(0.0, 0.0)),
                  modes=[(1.0, (-0.05, -0.02, 0.05, 0.03))]),
    "arms_up": dict(pose=dict(shoulder=(2.7, 2.7), elbow=(0.3, 0.3), hip_swing=(0.05, 0.05), knee=(0.0, 0.0)),
                    modes=[(0.5, (0.0, 0.20, 0.0, -0.05)), (0.5, (0.0, 0.04, 0.0, -0.05))]),
    "squat": dict(pose=dict(shoulder=(0.6, 0.6), elbow=(0.4, 0.4), hip_swing=(0.9, 0.9), knee=(1.6, 1.6)),
                  modes=[(1.0, (-0.10, 0.05, 0.10, 0.00))]),
}
STD = 0.015
PER_ATOM = 150


def _person(rng, name):
    params = {k: tuple(np.asarray(v) + rng.normal(0, 0.05, 2)) for k, v in ATOMS[name]["pose"].items()}
    height = rng.uniform(80, 200)
    pose = PersonPose(hip=np.array([rng.uniform(150, 350), rng.uniform(150, 250)]), height=height,
                      lean=rng.normal(0, 0.03), **params)
    kp, _ = skeleton_points(pose)
    lo, hi = kp.min(0) - 0.05 * height, kp.max(0) + 0.05 * height
    keypoints = np.concatenate([kp, np.full((17, 1), 2.0)], 1)
    return {"keypoints": keypoints, "bbox": [*lo, *(hi - lo)], "area": float(np.prod(hi - lo) * 0.5)}


@pytest.fixture(scope="module")
def known(tmp_path_factory, cli):
    """COCO annotations + a detections file with the known per-atom offsets (box_source: file)."""
    root = tmp_path_factory.mktemp("pgpg")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    images, anns, dets = [], [], []
    for name, atom in ATOMS.items():
        for _ in range(PER_ATOM):
            image_id = len(images)
            person = _person(rng, name)
            images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 500, "height": 400})
            anns += annotation_entries([person], image_id, len(anns) + 1)
            weights = [w for w, _ in atom["modes"]]
            mean = atom["modes"][rng.choice(len(weights), p=weights)][1]
            box = apply_offsets(anns[-1]["bbox"], rng.normal(mean, STD))[0]
            dets.append({"image_id": image_id, "category_id": 1, "bbox": box.tolist(), "score": 0.9})
            # a spurious far-away detection that must not be matched
            dets.append({"image_id": image_id, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.3})
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                        "categories": coco_categories()}))
    (root / "detections.json").write_text(json.dumps(dets))
    config = root / "pgpg.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "data": {"train": [{"images": str(root / "images"), "annotations": str(root / "annotations.json")}]},
        "pgpg": {"atoms": 3, "components": 2, "box_source": "file", "boxes_file": str(root / "detections.json"),
                 "min_keypoints": 6},
        "run": {"out": str(root / "run"), "progress": False},
    }))
    assert cli(["train", "pgpg", "--config", str(config)]) == 0
    return PGPGModel.load(root / "run" / "pgpg.json"), rng


def _atom_of(model, name, rng):
    person = _person(rng, name)
    return int(model.atoms_of(person["keypoints"][None], np.asarray(person["bbox"])[None])[0])


def test_atoms_are_the_pose_clusters(known):
    model, rng = known
    atoms = {name: _atom_of(model, name, rng) for name in ATOMS}
    assert sorted(atoms.values()) == [0, 1, 2]
    assert all(c == PER_ATOM for c in model.counts)  # every GT matched its own detection, none spurious


def test_fitted_mixture_recovers_the_means(known):
    model, rng = known
    for name, atom in ATOMS.items():
        a = _atom_of(model, name, rng)
        true_mean = sum(w * np.asarray(m) for w, m in atom["modes"])
        assert np.abs(model.mean_offset(a) - true_mean).max() < 0.02, name
        if len(atom["modes"]) == 2:  # the bimodal atom: both component means
            fitted = sorted(model.mixture(a)["means"].tolist(), key=lambda m: m[1])
            truth = sorted((m for _, m in atom["modes"]), key=lambda m: m[1])
            assert np.abs(np.asarray(fitted) - np.asarray(truth)).max() < 0.02
            assert np.allclose(sorted(model.mixture(a)["weights"]), [0.5, 0.5], atol=0.1)


def test_sampler_reproduces_the_distributions(known):
    model, rng = known
    for name, atom in ATOMS.items():
        a = _atom_of(model, name, rng)
        samples = model.sample_offsets(a, 4000, np.random.default_rng(1))
        true_mean = sum(w * np.asarray(m) for w, m in atom["modes"])
        assert np.abs(samples.mean(0) - true_mean).max() < 0.02, name
        if len(atom["modes"]) == 1:
            assert np.allclose(samples.std(0), STD, atol=0.005)
        else:  # y1 is bimodal: both modes show up in equal shares
            high = (samples[:, 1] > 0.12).mean()
            assert 0.4 < high < 0.6
    # proposals for a person: boxes around the GT box with that atom's offsets
    person = _person(rng, "arms_up")
    boxes = np.array([model.sample(person["keypoints"], np.asarray(person["bbox"]), rng) for _ in range(500)])
    offsets = box_offsets(xywh_to_xyxy(boxes), np.repeat(np.asarray(person["bbox"])[None], 500, 0))
    assert abs(offsets[:, 1].mean() - 0.12) < 0.02


def test_save_load_roundtrip(known, tmp_path):
    model, _ = known
    path = model.save(tmp_path / "m.json")
    again = PGPGModel.load(path)
    assert np.allclose(again.centres, model.centres) and again.counts == model.counts
    for a in range(model.num_atoms):
        assert np.allclose(again.mean_offset(a), model.mean_offset(a))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="not a PGPG model"):
        PGPGModel.load(tmp_path / "bad.json")


def test_offsets_roundtrip_and_matching():
    gt = np.array([[10.0, 20.0, 40.0, 80.0], [200.0, 50.0, 30.0, 60.0]])
    d = np.array([[0.1, -0.05, 0.0, 0.2], [0.0, 0.0, 0.0, 0.0]])
    det = apply_offsets(gt, d)
    assert np.allclose(box_offsets(xywh_to_xyxy(det), gt), d)
    pairs = match_detections(gt, xywh_to_xyxy(det[::-1]), 0.5)
    assert sorted(pairs) == [(0, 1), (1, 0)]
    assert match_detections(gt, np.array([[500.0, 500, 510, 510]]), 0.5) == []


def test_normalised_poses_are_translation_and_scale_free():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 100, (1, 17, 2)), np.full((1, 17, 1), 2.0)], -1)
    box = np.array([[0.0, 0.0, 100.0, 100.0]])
    moved = kp.copy()
    moved[..., :2] = kp[..., :2] * 2 + 30
    a, _ = normalise_poses(kp, box)
    b, _ = normalise_poses(moved, box * 2 + np.array([30, 30, 0, 0]))
    assert np.allclose(a, b)


def test_too_few_people_for_the_atoms():
    kp = np.concatenate([np.random.default_rng(0).uniform(0, 1, (2, 17, 2)), np.ones((2, 17, 1))], -1)
    with pytest.raises(UserError, match="fewer than pgpg.atoms"):
        fit_pgpg(kp, np.ones((2, 4)), np.ones((2, 4)), atoms=3)
