"""SPPE protocol: the embedded BlazePose landmark model on real demo crops, and trained SPPEs
through make_sppe.

Crops come from ROIs measured on the demo's first frame: the jumping-jacks man on the box
(mid-hip (654, 265), body radius ~200 px, upright) and a patch of background sky and building.
"""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from core.config import SPPEConfig
from core.errors import UserError
from core.heatmaps import decode_heatmaps, heatmap_to_crop
from core.models.build import make_sppe
from core.models.sppe import SPPEOutput
from core.models.sstn import crop, roi_to_affine

PERSON_ROIS = ([[654.0, 265.0], [650.0, 255.0], [660.0, 280.0]], [500.0, 470.0, 540.0], [0.0, 0.1, -0.1])
BACKGROUND_ROI = ([[1300.0, 250.0]], [400.0], [0.0])


@pytest.fixture(scope="module")
def frame0(demo_video):
    with av.open(str(demo_video)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def sppe(blazepose_models):
    return make_sppe(SPPEConfig(), "cpu")


def crops_of(frame, rois):
    centres, sides, rotations = (np.asarray(v, dtype=np.float64) for v in rois)
    theta = roi_to_affine(centres, sides, rotations, (256, 256))
    image = torch.from_numpy(frame.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    return crop(image, torch.from_numpy(theta).float(), (256, 256)), theta


@pytest.fixture(scope="module")
def person_out(sppe, frame0):
    crops, _ = crops_of(frame0, PERSON_ROIS)
    return crops, sppe(crops)


def test_output_shapes_and_ranges(sppe, person_out):
    crops, out = person_out
    assert isinstance(out, SPPEOutput)
    assert sppe.input_size == (256, 256) and sppe.layout == "blazepose33"
    assert out.heatmaps.shape == (3, 33, 64, 64) and out.coords.shape == (3, 33, 2)
    assert out.scores.shape == (3, 33) and out.presence.shape == (3,) and out.aux_coords.shape == (3, 6, 2)
    assert float(out.heatmaps.min()) >= 0.0 and float(out.heatmaps.max()) <= 1.0
    assert ((out.scores >= 0) & (out.scores <= 1)).all()


def test_presence_separates_person_from_background(sppe, frame0, person_out):
    _, out = person_out
    assert (out.presence > 0.9).all()
    bg, _ = crops_of(frame0, BACKGROUND_ROI)
    assert float(sppe(bg).presence[0]) < 0.1


def test_batched_crops_equal_single_crops(sppe, person_out):
    crops, batched = person_out
    for i in range(len(crops)):
        single = sppe(crops[i:i + 1])
        assert torch.allclose(single.coords[0], batched.coords[i], atol=1e-2)
        assert torch.allclose(single.heatmaps[0], batched.heatmaps[i], atol=1e-3)
        assert torch.allclose(single.presence[0], batched.presence[i], atol=1e-4)


def test_auxiliary_points_are_the_alignment_points(person_out):
    """Point 33 is the mid-hip centre and 34 the size/rotation point straight above it."""
    _, out = person_out
    hips = out.coords[:, [23, 24]].mean(1)
    aux = out.aux_coords
    assert (torch.linalg.norm(aux[:, 0] - hips, dim=1) < 6).all()
    up = aux[:, 1] - aux[:, 0]
    assert (up[:, 1] < -60).all() and (up[:, 1].abs() > 3 * up[:, 0].abs()).all()
    # ROI side = 2·|34 − 33|·1.25 reproduces the crop the person was seen in (the 256-px crop)
    side = 2 * torch.linalg.norm(up, dim=1) * 1.25
    assert ((side > 200) & (side < 320)).all()


def test_anatomy_in_crop(person_out):
    _, out = person_out
    y = out.coords[..., 1]
    assert (y[:, 0] < y[:, 23]).all() and (y[:, 23] < y[:, 27]).all()  # nose above hip above ankle


def test_heatmap_mapping_matches_regression(sppe, person_out):
    """Heatmap cell i sits at crop pixel 4·i − 0.5: DARK peaks land on the regressed points;
    the generic half-pixel-centre grid (4·i + 1.5) is 2 px off on both axes."""
    _, out = person_out
    hm, _ = decode_heatmaps(out.heatmaps, "dark", 11)
    reg = out.coords.numpy()
    ours = np.median(np.linalg.norm(sppe.codec.to_crop(hm) - reg, axis=-1))
    generic = np.median(np.linalg.norm(heatmap_to_crop(hm, (64, 64), (256, 256)) - reg, axis=-1))
    assert ours < 2.5 and generic > ours + 1.0


def test_make_sppe_errors():
    with pytest.raises(UserError, match="unknown SPPE"):
        make_sppe(SPPEConfig(model="vitpose"))
    with pytest.raises(UserError, match="needs a checkpoint"):
        make_sppe(SPPEConfig(model="hourglass", weights=None))
    with pytest.raises(UserError, match="not found"):
        make_sppe(SPPEConfig(model="resnet", weights="/nonexistent/ckpt.pt"))


def test_make_sppe_loads_a_trained_checkpoint(tmp_path):
    from core.models.trained_sppe import SPPEModelSpec, build_sppe_model
    from training.checkpoint import save_checkpoint

    spec = SPPEModelSpec(arch="hourglass", input_size=(64, 48), stacks=1, features=16, depth=2).validate()
    path = save_checkpoint(tmp_path / "tiny.pt", kind="sppe", spec=spec, config={}, model=build_sppe_model(spec),
                           epoch=0)
    sppe = make_sppe(SPPEConfig(model="hourglass", weights=str(path)), "cpu")
    assert sppe.input_size == (64, 48) and sppe.layout == "coco17"
    out = sppe(torch.rand(2, 3, 64, 48))
    assert out.heatmaps.shape == (2, 17, 16, 12) and out.coords is None
