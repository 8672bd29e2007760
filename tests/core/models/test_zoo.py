"""Embedded-model zoo: contract shapes, backends agree, per-process cache, fp16 gate,
the ONNX Runtime backend (parity with eager torch and LiteRT, ONNX cache, auto fallback)."""
from __future__ import annotations

import logging
import shutil
import sys

import numpy as np
import pytest
import torch

from core.config import RuntimeConfig
from core.errors import ModelsNotInstalled, UserError
from core.models import zoo
from core.models.onnx_backend import ONNX_CACHE_FORMAT, OnnxGraph, onnx_cache_path

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


@pytest.mark.parametrize("backend", ["onnxruntime", "eager"])
def test_landmark_contract(blazepose_models, backend):
    """The segmentation mask is pruned away; the regression-only model also drops the heatmaps,
    and what it keeps equals the full model's outputs."""
    x = zoo.probe_input(zoo.LANDMARK, batch=2)
    runtime = RuntimeConfig(backend=backend)
    out = zoo.load_landmark_model("cpu", runtime)(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "Identity": (2, 195), "Identity_1": (2, 1), "Identity_3": (2, 64, 64, 39), "Identity_4": (2, 117)}
    points = zoo.load_landmark_model("cpu", runtime, heatmaps=False)(x)
    assert set(points) == {"Identity", "Identity_1", "Identity_4"}
    for name, value in points.items():
        torch.testing.assert_close(value, out[name], rtol=0, atol=1e-4)


def test_pruning_names_unknown_outputs(blazepose_models):
    from core.models.tflite_graph import TFLiteGraph

    graph = TFLiteGraph.from_file(zoo.artefact_path("pose_landmark_full"))
    steps = len(graph.steps)
    assert len(graph.keep_outputs(["Identity", "Identity_1"]).steps) < steps
    with pytest.raises(ValueError, match="no graph outputs named"):
        graph.keep_outputs(["Identity_2"])


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
    assert first.backend == ("onnxruntime" if zoo.onnxruntime_available() else "jit")
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
    text = zoo.runtime_description("cpu", RuntimeConfig(backend="auto", threads=3))
    assert text.startswith("cpu (3 threads)") and zoo.resolve_backend("auto") in text
    assert "float32" in text


def test_cuda_request_without_gpu_is_a_user_error_or_resolves():
    if torch.cuda.is_available():
        assert zoo.resolve_device("cuda").type == "cuda"
    else:
        assert zoo.resolve_device("auto").type == "cpu"
        with pytest.raises(UserError, match="no CUDA"):
            zoo.resolve_device("cuda")


# ------------------------------------------------------------------------------ onnxruntime

needs_ort = pytest.mark.skipif(not zoo.onnxruntime_available(),
                               reason="onnxruntime/onnx not installed")
# Same limits as the LiteRT parity tests (tests/core/models/test_tflite_graph.py):
# (output, "abs" | "rel" to max |reference|, tolerance)
PARITY = {
    "detector": [(0, "abs", 1e-3), (1, "abs", 1e-3)],  # boxes+keypoints (224 px), logits
    "landmark": [("Identity", "abs", 1e-2), ("Identity_1", "abs", 1e-3),
                 ("Identity_3", "abs", 1e-3), ("Identity_4", "abs", 1e-3)],
}


def litert_outputs(path, x: torch.Tensor, order) -> dict:
    """LiteRT (XNNPACK, 1 thread) outputs, one invocation per item; keyed like ours."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]
    runs = []
    for item in x.numpy():
        interp.set_tensor(index, item[None])
        interp.invoke()
        runs.append({d["name"]: interp.get_tensor(d["index"]).copy()
                     for d in interp.get_output_details()})
    names = {i: n for i, n in enumerate(order)} if order else {n: n for n in runs[0]}
    return {k: torch.from_numpy(np.concatenate([r[n] for r in runs])) for k, n in names.items()}


@pytest.fixture(scope="module")
def ort_models(blazepose_models):
    return {k: load("cpu", RuntimeConfig(backend="onnxruntime")) for k, load in LOADERS.items()}


@needs_ort
@pytest.mark.parametrize("reference", ["eager", "litert"])
@pytest.mark.parametrize("kind", ["detector", "landmark"])
def test_onnxruntime_parity(ort_models, eager_models, blazepose_models, kind, reference):
    """ONNX Runtime outputs match eager torch and LiteRT within the LiteRT parity limits."""
    spec = SPECS[kind]
    x = zoo.probe_input(spec, batch=2)
    ours = outputs_as_dict(ort_models[kind](x))
    if reference == "eager":
        ref = outputs_as_dict(eager_models[kind](x))
    else:
        ref = litert_outputs(blazepose_models[spec.artefact], x, spec.tuple_outputs)
        ref.pop("Identity_2", None)  # LiteRT computes the mask; ours is pruned of it
    assert {k for k, _, _ in PARITY[kind]} == set(ref) == set(ours)
    for key, mode, tolerance in PARITY[kind]:
        assert ours[key].shape == ref[key].shape and ours[key].dtype == torch.float32, key
        diff = (ours[key] - ref[key]).abs().max().item()
        scale = ref[key].abs().max().item() if mode == "rel" else 1.0
        print(f"{kind}/{key}: max|ORT-{reference}| = {diff:.3g}")
        assert diff <= tolerance * scale, key


@needs_ort
@pytest.mark.parametrize("kind", ["detector", "landmark"])
def test_onnxruntime_batch_of_8_equals_8_singles(ort_models, kind):
    x = zoo.probe_input(SPECS[kind], batch=8)
    batched = outputs_as_dict(ort_models[kind](x))
    for i in range(8):
        for key, value in outputs_as_dict(ort_models[kind](x[i:i + 1])).items():
            scale = max(value.abs().max().item(), 1.0)
            assert (batched[key][i:i + 1] - value).abs().max().item() <= 1e-5 * scale, (i, key)


@needs_ort
def test_onnx_cache_is_stamped_reused_and_rebuilt(blazepose_models, tmp_path):
    """The export is cached next to the .tflite with its sha256; a damaged or stale cache is
    exported again; the session uses the requested thread count."""
    import onnx

    path = tmp_path / "pose_detection.tflite"
    shutil.copy(blazepose_models["pose_detection"], path)
    example = zoo.probe_input(zoo.DETECTOR, batch=1)
    first = OnnxGraph.from_tflite(path, example, threads=1)
    cache = onnx_cache_path(path)
    props = {p.key: p.value for p in onnx.load(cache).metadata_props}
    assert props["format"] == ONNX_CACHE_FORMAT and len(props["source_sha256"]) == 64
    assert first.session.get_session_options().intra_op_num_threads == 1
    assert [o.shape for o in first.session.get_outputs()] == [["batch", 2254, 12],
                                                              ["batch", 2254, 1]]
    mtime = cache.stat().st_mtime_ns
    reused = OnnxGraph.from_tflite(path, example, threads=2)
    assert cache.stat().st_mtime_ns == mtime  # read, not exported again
    expected = first(example)
    for key, value in reused(example).items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)

    cache.write_bytes(b"not an onnx file")
    OnnxGraph.from_tflite(path, example, threads=1)
    assert {p.key: p.value for p in onnx.load(cache).metadata_props} == props

    stale = onnx.load(cache)
    onnx.helper.set_model_props(stale, {**props, "source_sha256": "0" * 64})
    onnx.save(stale, cache)
    OnnxGraph.from_tflite(path, example, threads=1)
    assert {p.key: p.value for p in onnx.load(cache).metadata_props} == props
    assert not list(tmp_path.glob(".*.part"))  # atomic writes leave no temporaries


def test_auto_falls_back_to_jit_without_onnxruntime(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    zoo._onnxruntime_usable.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="rmpe.models"):
            assert zoo.resolve_backend("auto", "cpu") == "jit"
        assert "onnxruntime/onnx not installed" in caplog.text
        with pytest.raises(UserError, match="pip install onnxruntime onnx"):
            zoo.resolve_backend("onnxruntime", "cpu")
    finally:
        zoo._onnxruntime_usable.cache_clear()


def test_onnxruntime_is_cpu_only_and_auto_keeps_torch_on_cuda():
    assert zoo.resolve_backend("auto", "cuda") == "jit"
    with pytest.raises(UserError, match="CPU only"):
        zoo.resolve_backend("onnxruntime", "cuda")
