"""Embedded-model zoo: contract shapes, backends agree, per-process cache, fp16 gate."""
from __future__ import annotations

import pytest
import torch

from core.config import RuntimeConfig
from core.errors import ModelsNotInstalled, UserError
from core.models import zoo

LOADERS = {"detector": zoo.load_detector_model, "landmark": zoo.load_landmark_model}
SPECS = {"detector": zoo.DETECTOR, "landmark": zoo.LANDMARK}


def outputs_as_dict(out) -> dict[str, torch.Tensor]:
    return out if isinstance(out, dict) else dict(enumerate(out))


@pytest.fixture(scope="module")
def eager_models(blazepose_models):
    return {k: load("cpu", RuntimeConfig(backend="eager")) for k, load in LOADERS.items()}


def test_detector_contract(blazepose_models):
    model = zoo.load_detector_model("cpu")
    boxes, logits = model(zoo.probe_input(zoo.DETECTOR, batch=2))
    assert boxes.shape == (2, 2254, 12) and logits.shape == (2, 2254, 1)
    assert boxes.dtype == logits.dtype == torch.float32


def test_landmark_contract(blazepose_models):
    out = zoo.load_landmark_model("cpu")(zoo.probe_input(zoo.LANDMARK, batch=2))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "Identity": (2, 195), "Identity_1": (2, 1), "Identity_2": (2, 256, 256, 1),
        "Identity_3": (2, 64, 64, 39), "Identity_4": (2, 117)}


@pytest.mark.parametrize("backend", ["jit", "channels_last"])
@pytest.mark.parametrize("kind", ["detector", "landmark"])
def test_backend_equals_eager(eager_models, kind, backend):
    """Traced+frozen (and channels-last) models give the eager executor's outputs, batch 3."""
    model = LOADERS[kind]("cpu", RuntimeConfig(backend=backend))
    x = zoo.probe_input(SPECS[kind], batch=3)
    ours, ref = outputs_as_dict(model(x)), outputs_as_dict(eager_models[kind](x))
    for key, value in ref.items():
        scale = max(value.abs().max().item(), 1.0)
        assert (ours[key] - value).abs().max().item() <= 1e-4 * scale, key


def test_auto_backend_is_the_measured_best_and_cached(blazepose_models):
    first = zoo.load_detector_model("cpu", RuntimeConfig(backend="auto"))
    assert first.backend == zoo.AUTO_BACKEND == "jit"
    assert zoo.load_detector_model("cpu") is first  # one instance per process and key
    assert zoo.load_detector_model("cpu", RuntimeConfig(backend="eager")) is not first


def test_wrong_input_shape_is_rejected(blazepose_models):
    with pytest.raises(ValueError, match=r"\[N, 224, 224, 3\]"):
        zoo.load_detector_model("cpu")(torch.zeros(1, 3, 224, 224))


def test_unknown_backend_is_a_user_error():
    with pytest.raises(UserError, match="unknown backend"):
        zoo.load_detector_model("cpu", RuntimeConfig(backend="tensorrt"))


def test_missing_models_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RMPE_LIVE_CACHE", str(tmp_path))
    with pytest.raises(ModelsNotInstalled, match="run: python main.py models install"):
        zoo.load_landmark_model("cpu")


def test_device_description_names_device_backend_and_precision():
    text = zoo.runtime_description("cpu", RuntimeConfig(backend="auto"))
    assert text.startswith("cpu (") and "jit" in text and "float32" in text


def test_cuda_request_without_gpu_is_a_user_error_or_resolves():
    if torch.cuda.is_available():
        assert zoo.resolve_device("cuda").type == "cuda"
    else:
        assert zoo.resolve_device("auto").type == "cpu"
        with pytest.raises(UserError, match="no CUDA"):
            zoo.resolve_device("cuda")
