"""PoseFix network pieces: input-pose heatmaps, the bilinear target and soft-argmax round trip,
the loss, the crop of an input pose, flip test, both backbones, spec validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import UserError
from core.models.posefix import (PoseFixSpec, bilinear_one_hot, build_posefix, flip_pose, pose_crop_theta,
                                 pose_heatmaps, posefix_loss, refine_crops, soft_argmax)
from core.models.sstn import image_to_crop
from core.skeleton import get_skeleton


def test_pose_heatmaps_peak_at_the_keypoint_and_vanish_where_missing():
    xy = torch.tensor([[[10.0, 20.0], [31.0, 5.0]]])
    heat = pose_heatmaps(xy, torch.tensor([[1.0, 0.0]]), (40, 32), sigma=3.0)
    assert heat.shape == (1, 2, 40, 32)
    assert heat[0, 0, 20, 10] == pytest.approx(1.0) and heat[0, 0].argmax() == 20 * 32 + 10
    assert heat[0, 0, 20, 13] == pytest.approx(np.exp(-0.5), rel=1e-5)  # one σ away
    assert float(heat[0, 1].abs().max()) == 0.0


@pytest.mark.parametrize("xy", [(0.0, 0.0), (3.25, 7.5), (11.0, 15.0), (5.9, 0.1)])
def test_bilinear_target_and_soft_argmax_recover_sub_pixel_positions(xy):
    size = (16, 12)
    target = bilinear_one_hot(torch.tensor([[xy]]), size)
    assert target.sum().item() == pytest.approx(1.0) and (target >= 0).all()
    logits = torch.log(target.clamp_min(1e-30)).reshape(1, 1, *size)
    got, prob = soft_argmax(logits)
    np.testing.assert_allclose(got[0, 0].numpy(), xy, atol=1e-4)
    assert prob.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_loss_is_lower_for_the_right_answer_and_ignores_unweighted_joints():
    size = (16, 12)
    target = torch.tensor([[[4.3, 9.6], [2.0, 2.0]]])
    right = torch.log(bilinear_one_hot(target, size).clamp_min(1e-6)).reshape(1, 2, *size)
    wrong = torch.log(bilinear_one_hot(target + 3, size).clamp_min(1e-6)).reshape(1, 2, *size)
    w = torch.tensor([[1.0, 0.0]])
    assert posefix_loss(right, target, w) < posefix_loss(wrong, target, w)
    moved = right.clone()
    moved[0, 1] = wrong[0, 1]  # the unweighted joint does not count
    assert posefix_loss(moved, target, w).item() == pytest.approx(posefix_loss(right, target, w).item())


def test_crop_of_an_input_pose_holds_it_centred_and_mirrors_with_flip():
    spec = PoseFixSpec(input_size=(96, 64)).validate()
    rng = np.random.default_rng(0)
    xy = rng.uniform([100, 50], [160, 200], (3, 17, 2))
    valid = np.ones((3, 17), bool)
    valid[1, :15] = False  # two valid keypoints only
    theta = pose_crop_theta(xy, valid, spec)
    crop = image_to_crop(xy, theta)
    for i in range(3):
        pts = crop[i][valid[i]]
        assert (pts >= 0).all() and (pts[:, 0] <= 63).all() and (pts[:, 1] <= 95).all()
        np.testing.assert_allclose((pts.min(0) + pts.max(0)) / 2, [31.5, 47.5], atol=1e-6)
    flipped = image_to_crop(xy, pose_crop_theta(xy, valid, spec, flip=[True, False, False]))
    np.testing.assert_allclose(flipped[0, :, 0], 63 - crop[0, :, 0], atol=1e-6)


def test_flip_pose_round_trip():
    flip = get_skeleton("coco17").flip_index
    xy = torch.rand(2, 17, 2) * 40
    valid = (torch.rand(2, 17) > 0.3).float()
    back = flip_pose(*flip_pose(xy, valid, 48, flip), 48, flip)
    assert torch.allclose(back[0], xy) and torch.equal(back[1], valid)


def test_resnet_refiner_shapes_and_flip_test_symmetry():
    """An untrained net is not mirror-symmetric, but the flip-tested estimate of a mirrored input is
    the mirror of the flip-tested estimate (the average is symmetric by construction)."""
    torch.manual_seed(0)
    spec = PoseFixSpec(input_size=(64, 64), width=8, deconv_channels=16)
    net = build_posefix(spec).eval()
    image = torch.rand(2, 3, 64, 64)
    xy = torch.rand(2, 17, 2) * 63
    valid = torch.ones(2, 17)
    assert net(image, xy, valid).shape == (2, 17, 16, 16)
    a = refine_crops(net, image, xy, valid, flip_test=True)
    fxy, fvalid = flip_pose(xy, valid, 64, get_skeleton("coco17").flip_index)
    b = refine_crops(net, torch.flip(image, dims=[3]), fxy, fvalid, flip_test=True)
    b, _ = flip_pose(b, fvalid, 64, get_skeleton("coco17").flip_index)
    assert torch.allclose(a, b, atol=1e-3)


def test_blazepose_backbone_is_frozen_and_stays_out_of_the_state_dict(blazepose_models):
    spec = PoseFixSpec(backbone="blazepose", input_size=(256, 256), width=8, deconv_channels=16)
    net = build_posefix(spec)
    out = net(torch.rand(1, 3, 256, 256), torch.rand(1, 17, 2) * 255, torch.ones(1, 17))
    assert out.shape == (1, 17, 64, 64)
    assert not any(k.startswith("trunk.") for k in net.state_dict())
    assert all(not p.requires_grad for p in net.trunk.parameters())
    assert not any(n.startswith("trunk.") for n, _ in net.named_parameters())
    other = build_posefix(spec)
    other.load_state_dict(net.state_dict())
    with pytest.raises(RuntimeError):
        other.load_state_dict({"final.weight": torch.zeros(1)})


@pytest.mark.parametrize("data, message", [
    ({"backbone": "vgg"}, "posefix.backbone"),
    ({"backbone": "blazepose"}, "256, 256"),
    ({"input_size": [60, 48]}, "multiples of 32"),
    ({"resnet_depth": 20}, "resnet_depth"),
    ({"colour": 1}, "unknown key"),
])
def test_bad_specs_are_user_errors(data, message):
    with pytest.raises(UserError, match=message):
        PoseFixSpec.from_dict(data)
