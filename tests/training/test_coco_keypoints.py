"""Top-down samples: targets sit on the joints, flips swap left/right, augmentation is seeded,
RMPE context samples carry consistent proposal / centre-located frames."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from core.errors import UserError
from core.heatmaps import decode_heatmaps, heatmap_to_crop
from core.models.sstn import crop, crop_to_image
from core.skeleton import COCO17, get_skeleton
from training.datasets.coco_keypoints import AugmentConfig, CocoKeypoints, SampleGeometry, box_to_centre_size
from training.datasets.synthetic import SyntheticSpec, generate_dataset
from training.pgpg import JitterProposals

GEOMETRY = SampleGeometry(input_size=(128, 96), heatmap_size=(32, 24), sigma=1.0)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco")
    ann = generate_dataset(out, SyntheticSpec(num_images=10, image_size=(160, 200), people=(1, 3), seed=4,
                                              occluder_prob=0.0, outside_prob=0.0))
    return out / "images", ann


def _image_keypoints(sample, geometry=GEOMETRY):
    """Decode a sample's targets back to image pixels through its θ (the evaluation path)."""
    coords, _ = decode_heatmaps(sample["target"][None].numpy(), "dark", 5)
    crop_xy = heatmap_to_crop(coords[0].astype(np.float64), geometry.heatmap_size, geometry.input_size)
    return crop_to_image(crop_xy[None], sample["theta"].numpy()[None])[0]


def _truth(ds, i):
    return np.asarray(ds.samples[i]["keypoints"], np.float64).reshape(17, 3)


@pytest.mark.parametrize("augment", [AugmentConfig.none(), AugmentConfig(half_body_prob=0.0, colour=0.0)])
def test_targets_decode_to_the_annotated_joints(coco, augment):
    ds = CocoKeypoints(*coco, GEOMETRY, augment, seed=1)
    checked = 0
    for i in range(len(ds)):
        s = ds[i]
        xy = _image_keypoints(s)
        kp = _truth(ds, i)
        if s["flip"]:
            kp = kp[get_skeleton(COCO17).flip_index]
        w = s["target_weight"].numpy() > 0
        # DARK on an exact Gaussian target is sub-pixel exact; 4 image px of slack for heatmap quantisation
        err = np.linalg.norm(xy[w] - kp[w, :2], axis=1)
        assert err.max() < 0.6 * (ds.images[ds.samples[i]["image_id"]]["height"] / 32), (i, err.max())
        checked += int(w.sum())
    assert checked > 100


def test_flip_swaps_left_and_right(coco):
    """A mirrored crop swaps the labels: channel 'left wrist' holds the annotated right wrist (which
    looks like a left wrist once mirrored), so in every crop, flipped or not, the 'left shoulder'
    channel of a person facing the camera stays on the crop's right, as in COCO's convention."""
    ds = CocoKeypoints(*coco, GEOMETRY, AugmentConfig(scale=0, shift=0, rotation=0, half_body_prob=0, colour=0,
                                                      grey_prob=0, flip=True), seed=3)
    perm = get_skeleton(COCO17).flip_index
    flips = 0
    for i in range(len(ds)):
        s = ds[i]
        xy = _image_keypoints(s)
        kp = _truth(ds, i)
        w = s["target_weight"].numpy() > 0
        lw = 9  # left wrist
        source = perm[lw] if s["flip"] else lw
        if w[lw]:
            assert np.linalg.norm(xy[lw] - kp[source, :2]) < 3.0
        hm_x = decode_heatmaps(s["target"][None].numpy(), "argmax")[0][0, :, 0]
        if w[5] and w[6]:
            assert hm_x[5] > hm_x[6]
        flips += s["flip"]
    assert 3 < flips < len(ds) - 3


def test_augmentation_is_seeded_per_epoch_and_index(coco):
    ds = CocoKeypoints(*coco, GEOMETRY, AugmentConfig(), seed=0)
    a = ds[2]
    b = ds[2]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["theta"], b["theta"])
    ds.set_epoch(1)
    c = ds[2]
    assert not torch.equal(a["theta"], c["theta"])


def test_half_body_crops_part_of_the_person(coco):
    full = CocoKeypoints(*coco, GEOMETRY, AugmentConfig.none(), seed=0)
    half = CocoKeypoints(*coco, GEOMETRY, AugmentConfig(scale=0, shift=0, rotation=0, flip=False, colour=0,
                                                       grey_prob=0, half_body_prob=1.0, half_body_min_keypoints=8),
                         seed=0)
    smaller = 0
    for i in range(len(full)):
        s_full = np.linalg.norm(full[i]["theta"].numpy()[:, 0])
        s_half = np.linalg.norm(half[i]["theta"].numpy()[:, 0])
        smaller += s_half < 0.9 * s_full  # fewer image pixels per crop pixel: zoomed in
    assert smaller >= len(full) // 2


def test_normalisation_and_colour_jitter(coco):
    ds = CocoKeypoints(*coco, GEOMETRY, AugmentConfig.none(), seed=0)
    jit = CocoKeypoints(*coco, GEOMETRY, AugmentConfig(scale=0, shift=0, rotation=0, flip=False, half_body_prob=0,
                                                       colour=0.4, grey_prob=0.0), seed=0)
    a, b = ds[0]["image"], jit[0]["image"]
    assert a.shape == (3, 128, 96) and a.dtype == torch.float32
    assert not torch.allclose(a, b)
    # the sample is (rgb/255 − mean) / std of its geometry
    img = ds.load_image(ds.samples[0]["image_id"])
    assert img.dtype == np.uint8 and a.min() < 0 < a.max()


def test_rmpe_sample_frames(coco):
    g = copy.deepcopy(GEOMETRY)
    g.context = 1.5
    ds = CocoKeypoints(*coco, g, AugmentConfig.none(), seed=0)
    s = ds[1]
    assert s["image"].shape == (3, 192, 144) and 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    # GT box as proposal: the centre-located targets are the proposal-frame targets
    assert torch.allclose(s["centred_target"], s["target"], atol=1e-6)
    # cropping the context through θ_box gives the direct image crop of the proposal
    direct = CocoKeypoints(*coco, GEOMETRY, AugmentConfig.none(), seed=0)[1]
    via = crop(s["image"][None], s["theta_box"][None].float(), GEOMETRY.input_size)[0]
    mean, std = torch.tensor(GEOMETRY.mean).view(3, 1, 1), torch.tensor(GEOMETRY.std).view(3, 1, 1)
    assert ((via - mean) / std - direct["image"]).abs().mean() < 0.02


def test_rmpe_proposals_move_the_frame_but_not_the_centred_target(coco):
    g = copy.deepcopy(GEOMETRY)
    g.context = 1.5
    aug = AugmentConfig.none()
    aug.proposal_prob = 1.0
    plain = CocoKeypoints(*coco, g, AugmentConfig.none(), seed=0)
    jittered = CocoKeypoints(*coco, g, aug, proposals=JitterProposals([0.1, 0.0, 0.1, 0.0], [0, 0, 0, 0]), seed=0)
    a, b = plain[0], jittered[0]
    assert torch.allclose(a["centred_target"], b["centred_target"], atol=1e-6)
    # the proposal is shifted right by 10% of the box: the joints move left in its frame
    xa = decode_heatmaps(a["target"][None].numpy(), "dark", 5)[0][0, :, 0]
    xb = decode_heatmaps(b["target"][None].numpy(), "dark", 5)[0][0, :, 0]
    w = (a["target_weight"] > 0) & (b["target_weight"] > 0)
    assert (xb[w.numpy()] < xa[w.numpy()]).all()


def test_box_centre_uses_pixel_centres():
    centre, size = box_to_centre_size([10, 20, 30, 60], aspect=0.75, scale=1.0)
    assert np.allclose(centre, [24.5, 49.5]) and np.allclose(size, [45, 60])
    centre, size = box_to_centre_size([0, 0, 90, 60], aspect=0.75, scale=1.25)
    assert np.allclose(size, [112.5, 150])


def test_bad_inputs(coco, tmp_path):
    images, ann = coco
    with pytest.raises(UserError, match="not found"):
        CocoKeypoints(images, tmp_path / "missing.json", GEOMETRY)
    (tmp_path / "empty.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(UserError, match="no person"):
        CocoKeypoints(images, tmp_path / "empty.json", GEOMETRY)
    ds = CocoKeypoints(tmp_path, ann, GEOMETRY)
    with pytest.raises(UserError, match="cannot read image"):
        ds[0]
