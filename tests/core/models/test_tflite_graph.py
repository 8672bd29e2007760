"""TFLite graph executor: parity with LiteRT on the real BlazePose models and on one-op graphs."""
from __future__ import annotations

import importlib
import shutil

import flatbuffers
import numpy as np
import pytest
import tflite
import torch
from ai_edge_litert.interpreter import Interpreter

from core.models import read_weight_cache_metadata, weight_cache_path
from core.models.tflite_graph import TFLiteGraph, UnsupportedTFLiteOp

INPUT_RANGES = {"pose_detection": (-1.0, 1.0), "pose_landmark_full": (0.0, 1.0)}
# (model, output, tolerance on max |torch - LiteRT|, relative to max |LiteRT| or absolute)
PARITY = [
    ("pose_detection", "Identity", "abs", 1e-3),  # boxes + keypoints, 224-px units
    ("pose_detection", "Identity_1", "abs", 1e-3),  # score logits
    ("pose_landmark_full", "Identity", "abs", 1e-2),  # landmark regression, crop pixels
    ("pose_landmark_full", "Identity_1", "abs", 1e-3),  # pose presence
    ("pose_landmark_full", "Identity_3", "abs", 1e-3),  # heatmaps
    ("pose_landmark_full", "Identity_4", "abs", 1e-3),  # world landmarks (m)
    # segmentation logits reach ~1.4e3 on noise; fp32 summation order alone moves them ~0.2
    ("pose_landmark_full", "Identity_2", "rel", 1e-3),
]


def random_inputs(name: str, n: int, seed: int = 0) -> np.ndarray:
    size = 224 if name == "pose_detection" else 256
    lo, hi = INPUT_RANGES[name]
    return np.random.default_rng(seed).uniform(lo, hi, (n, size, size, 3)).astype(np.float32)


def litert_run(model: str | bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """Reference outputs, one LiteRT invocation (XNNPACK, batch 1) per item of x."""
    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    interp = Interpreter(num_threads=1, **kwargs)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    outs = []
    for item in x:
        interp.set_tensor(inp, item[None])
        interp.invoke()
        outs.append({d["name"]: interp.get_tensor(d["index"]).copy()
                     for d in interp.get_output_details()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def torch_run(graph: TFLiteGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in graph(torch.from_numpy(x)).items()}


@pytest.fixture(scope="module")
def graphs(blazepose_models):
    return {name: TFLiteGraph.from_file(path).eval() for name, path in blazepose_models.items()}


@pytest.fixture(scope="module")
def parity_outputs(blazepose_models, graphs):
    """Torch and LiteRT outputs of each model on two seeded random inputs."""
    runs = {}
    for name, path in blazepose_models.items():
        x = random_inputs(name, 2)
        runs[name] = (torch_run(graphs[name], x), litert_run(path, x))
    return runs


@pytest.mark.parametrize("name,output,kind,tolerance", PARITY)
def test_parity_with_litert(parity_outputs, name, output, kind, tolerance, record_property):
    ours, ref = parity_outputs[name]
    assert ours[output].shape == ref[output].shape
    diff = float(np.abs(ours[output] - ref[output]).max())
    scale = float(np.abs(ref[output]).max())
    record_property("max_abs_diff", diff)
    print(f"{name}/{output}: max|torch-LiteRT| = {diff:.3g} (max|LiteRT| = {scale:.3g})")
    assert diff <= (tolerance * scale if kind == "rel" else tolerance)


def test_every_output_compared(parity_outputs):
    for name, (ours, ref) in parity_outputs.items():
        assert set(ours) == set(ref)
        assert {o for n, o, _, _ in PARITY if n == name} == set(ref)


@pytest.mark.parametrize("name", ["pose_detection", "pose_landmark_full"])
def test_batch_of_8_equals_8_single_runs(graphs, name):
    x = random_inputs(name, 8, seed=1)
    batched = torch_run(graphs[name], x)
    for i in range(8):
        single = torch_run(graphs[name], x[i:i + 1])
        for key, value in single.items():
            scale = max(float(np.abs(value).max()), 1.0)
            assert np.abs(batched[key][i:i + 1] - value).max() <= 1e-5 * scale, key


def test_weight_cache_written_once_and_reused(blazepose_models, tmp_path):
    path = tmp_path / "pose_detection.tflite"
    shutil.copy(blazepose_models["pose_detection"], path)
    fresh = TFLiteGraph.from_file(path).eval()
    cache = weight_cache_path(path)
    meta = read_weight_cache_metadata(cache)
    assert meta and meta["source_sha256"]
    mtime = cache.stat().st_mtime_ns
    cached = TFLiteGraph.from_file(path).eval()
    assert cache.stat().st_mtime_ns == mtime  # read, not rewritten
    x = random_inputs("pose_detection", 1)
    for key, value in torch_run(fresh, x).items():
        np.testing.assert_array_equal(torch_run(cached, x)[key], value)
    cache.write_bytes(b"not a safetensors file")  # a damaged cache is rebuilt, not trusted
    TFLiteGraph.from_file(path)
    assert read_weight_cache_metadata(cache) == meta


# ----------------------------------------------------------------- one-op graphs vs LiteRT


def _ivec(b, start, values):
    start(b, len(values))
    for v in reversed(values):
        b.PrependInt32(int(v))
    return b.EndVector()


def _tvec(b, start, offsets):
    start(b, len(offsets))
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def build_tflite(tensors, ops) -> bytes:
    """A TFLite flatbuffer. tensors: [(name, shape, constant (float32/int32) or None)], the first
    is the input and the last the output;
    ops: [(op name, inputs, outputs, options table name, {field: value})]."""
    mod = {n: importlib.import_module(f"tflite.{n}") for n in
           ("Buffer", "Tensor", "Operator", "OperatorCode", "SubGraph", "Model")}
    b = flatbuffers.Builder(1024)
    buffers = []
    mod["Buffer"].Start(b)
    buffers.append(mod["Buffer"].End(b))  # buffer 0: the empty sentinel
    for _, _, data in tensors:
        vec = None
        if data is not None:
            raw = np.ascontiguousarray(data).tobytes()
            b.StartVector(1, len(raw), 16)
            for byte in reversed(raw):
                b.PrependUint8(byte)
            vec = b.EndVector()
        mod["Buffer"].Start(b)
        if vec is not None:
            mod["Buffer"].AddData(b, vec)
        buffers.append(mod["Buffer"].End(b))
    tens = []
    for i, (name, shape, data) in enumerate(tensors):
        T = mod["Tensor"]
        nm, sh = b.CreateString(name), _ivec(b, T.StartShapeVector, shape)
        kind = tflite.TensorType.INT32 if data is not None and data.dtype == np.int32 \
            else tflite.TensorType.FLOAT32
        T.Start(b)
        T.AddShape(b, sh)
        T.AddType(b, kind)
        T.AddBuffer(b, i + 1)
        T.AddName(b, nm)
        tens.append(T.End(b))
    names = sorted({op[0] for op in ops})
    codes = []
    for n in names:
        code, C = getattr(tflite.BuiltinOperator, n), mod["OperatorCode"]
        C.Start(b)
        C.AddDeprecatedBuiltinCode(b, min(code, 127))
        C.AddBuiltinCode(b, code)
        C.AddVersion(b, 1)
        codes.append(C.End(b))
    operators = []
    for name, ins, outs, opt_name, fields in ops:
        options = None
        if opt_name:
            m = importlib.import_module(f"tflite.{opt_name}")
            m.Start(b)
            for key, value in fields.items():
                getattr(m, "Add" + key)(b, value)
            options = m.End(b)
        O = mod["Operator"]
        iv, ov = _ivec(b, O.StartInputsVector, ins), _ivec(b, O.StartOutputsVector, outs)
        O.Start(b)
        O.AddOpcodeIndex(b, names.index(name))
        O.AddInputs(b, iv)
        O.AddOutputs(b, ov)
        if options is not None:
            O.AddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, opt_name))
            O.AddBuiltinOptions(b, options)
        operators.append(O.End(b))
    S, M = mod["SubGraph"], mod["Model"]
    tv, opv = _tvec(b, S.StartTensorsVector, tens), _tvec(b, S.StartOperatorsVector, operators)
    iv = _ivec(b, S.StartInputsVector, [0])
    ov = _ivec(b, S.StartOutputsVector, [len(tensors) - 1])
    S.Start(b)
    S.AddTensors(b, tv)
    S.AddInputs(b, iv)
    S.AddOutputs(b, ov)
    S.AddOperators(b, opv)
    sub = S.End(b)
    subv = _tvec(b, M.StartSubgraphsVector, [sub])
    codev = _tvec(b, M.StartOperatorCodesVector, codes)
    bufv = _tvec(b, M.StartBuffersVector, buffers)
    M.Start(b)
    M.AddVersion(b, 3)
    M.AddOperatorCodes(b, codev)
    M.AddSubgraphs(b, subv)
    M.AddBuffers(b, bufv)
    b.Finish(M.End(b), file_identifier=b"TFL3")
    return bytes(b.Output())


RNG = np.random.default_rng(0)
W_CONV = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)  # O,H,W,I
W_DW = RNG.normal(size=(1, 3, 3, 6)).astype(np.float32)  # 1,H,W,I*multiplier (multiplier 2)
BIAS4, BIAS6 = RNG.normal(size=4).astype(np.float32), RNG.normal(size=6).astype(np.float32)


def conv(padding, stride, act=0):
    out_h = -(-8 // stride) if padding == 0 else (8 - 3) // stride + 1
    out_w = -(-7 // stride) if padding == 0 else (7 - 3) // stride + 1
    return ([("x", (1, 8, 7, 3), None), ("w", W_CONV.shape, W_CONV), ("b", (4,), BIAS4),
             ("y", (1, out_h, out_w, 4), None)],
            [("CONV_2D", [0, 1, 2], [3], "Conv2DOptions",
              dict(Padding=padding, StrideW=stride, StrideH=stride, DilationWFactor=1,
                   DilationHFactor=1, FusedActivationFunction=act))])


def depthwise(padding, stride):
    out = (-(-8 // stride), -(-7 // stride)) if padding == 0 else \
        ((8 - 3) // stride + 1, (7 - 3) // stride + 1)
    return ([("x", (1, 8, 7, 3), None), ("w", W_DW.shape, W_DW), ("b", (6,), BIAS6),
             ("y", (1, *out, 6), None)],
            [("DEPTHWISE_CONV_2D", [0, 1, 2], [3], "DepthwiseConv2DOptions",
              dict(Padding=padding, StrideW=stride, StrideH=stride, DepthMultiplier=2,
                   DilationWFactor=1, DilationHFactor=1, FusedActivationFunction=3))])


def max_pool(padding):
    out = (4, 4) if padding == 0 else (3, 3)
    return ([("x", (1, 8, 7, 3), None), ("y", (1, *out, 3), None)],
            [("MAX_POOL_2D", [0], [1], "Pool2DOptions",
              dict(Padding=padding, StrideW=2, StrideH=2, FilterWidth=3, FilterHeight=3,
                   FusedActivationFunction=0))])


def resize(align_corners, half_pixel):
    return ([("x", (1, 5, 4, 3), None), ("size", (2,), np.array([10, 8], np.int32)),
             ("y", (1, 10, 8, 3), None)],
            [("RESIZE_BILINEAR", [0, 1], [2], "ResizeBilinearOptions",
              dict(AlignCorners=align_corners, HalfPixelCenters=half_pixel))])


PAD_THEN_CONV = (  # the PAD is folded into the conv's own padding (asymmetric here)
    [("x", (1, 8, 7, 3), None), ("p", (4, 2), np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)),
     ("xp", (1, 11, 8, 3), None), ("w", W_CONV.shape, W_CONV), ("b", (4,), BIAS4),
     ("y", (1, 5, 3, 4), None)],
    [("PAD", [0, 1], [2], "PadOptions", {}),
     ("CONV_2D", [2, 3, 4], [5], "Conv2DOptions",
      dict(Padding=1, StrideW=2, StrideH=2, DilationWFactor=1, DilationHFactor=1,
           FusedActivationFunction=0))])
PAD_CHANNELS = (  # pads channels too: kept as a PAD step
    [("x", (1, 4, 5, 3), None), ("p", (4, 2), np.array([[0, 0], [1, 0], [0, 2], [0, 3]], np.int32)),
     ("y", (1, 5, 7, 6), None)],
    [("PAD", [0, 1], [2], "PadOptions", {})])
DEPTH_TO_SPACE = ([("x", (1, 3, 2, 12), None), ("y", (1, 6, 4, 3), None)],
                  [("DEPTH_TO_SPACE", [0], [1], "DepthToSpaceOptions", dict(BlockSize=2))])

ONE_OP_CASES = {
    # SAME stride 2 on 8x7: 1 padding row, at the bottom only; columns 1 + 1
    "conv_same_stride2": conv(0, 2),
    "conv_same_stride1_relu": conv(0, 1, act=1),
    "conv_valid_stride2_relu6": conv(1, 2, act=3),
    "depthwise_same_stride2_multiplier2": depthwise(0, 2),
    "depthwise_valid_stride1_multiplier2": depthwise(1, 1),
    "max_pool_same_stride2": max_pool(0),
    "max_pool_valid_stride2": max_pool(1),
    "resize_half_pixel": resize(False, True),
    "resize_align_corners": resize(True, False),
    "depth_to_space": DEPTH_TO_SPACE,
    "pad_then_conv": PAD_THEN_CONV,
    "pad_channels": PAD_CHANNELS,
}


@pytest.mark.parametrize("case", sorted(ONE_OP_CASES))
def test_one_op_graph_matches_litert(case):
    tensors, ops = ONE_OP_CASES[case]
    model = build_tflite(tensors, ops)
    x = np.random.default_rng(3).normal(size=(2, *tensors[0][1][1:])).astype(np.float32)
    ref = litert_run(model, x)["y"]
    graph = TFLiteGraph(model).eval()
    ours = torch_run(graph, x)["y"]
    assert len(graph.steps) == (1 if case == "pad_then_conv" else len(ops))
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)


def test_same_padding_puts_the_extra_row_at_the_bottom():
    """By hand: a 1x1-output-channel 3x3 SAME stride-2 conv of ones over an all-ones 8x7 image
    counts the in-image taps, so the border rows/cols that touch padding read 6 (or 4)."""
    ones = np.ones((1, 3, 3, 1), np.float32)
    model = build_tflite([("x", (1, 8, 7, 1), None), ("w", (1, 3, 3, 1), ones),
                          ("y", (1, 4, 4, 1), None)],
                         [("CONV_2D", [0, 1, -1], [2], "Conv2DOptions",
                           dict(Padding=0, StrideW=2, StrideH=2, DilationWFactor=1,
                                DilationHFactor=1, FusedActivationFunction=0))])
    y = torch_run(TFLiteGraph(model), np.ones((1, 8, 7, 1), np.float32))["y"][0, :, :, 0]
    # rows: total pad 1 -> top 0, bottom 1: the last output row loses one tap row
    # cols: total pad 2 -> left 1, right 1: first and last output columns lose one tap column
    expected = np.array([[6, 9, 9, 6]] * 3 + [[4, 6, 6, 4]], np.float32)
    np.testing.assert_array_equal(y, expected)


def test_depth_to_space_follows_the_tflite_formula():
    """out[h*b + i, w*b + j, c] = in[h, w, (i*b + j)*C + c] (DCR order, unlike pixel_shuffle)."""
    tensors, ops = DEPTH_TO_SPACE
    x = np.arange(1 * 3 * 2 * 12, dtype=np.float32).reshape(1, 3, 2, 12)
    y = torch_run(TFLiteGraph(build_tflite(tensors, ops)), x)["y"]
    b, c = 2, 3
    for h, w, i, j, k in np.ndindex(3, 2, b, b, c):
        assert y[0, h * b + i, w * b + j, k] == x[0, h, w, (i * b + j) * c + k]


def test_unknown_op_raises_with_its_name():
    model = build_tflite([("x", (1, 4, 4, 3), None), ("y", (1, 4, 4, 3), None)],
                         [("SOFTMAX", [0], [1], "SoftmaxOptions", dict(Beta=1.0))])
    litert_run(model, np.zeros((1, 4, 4, 3), np.float32))  # a valid graph LiteRT runs
    with pytest.raises(UnsupportedTFLiteOp, match="SOFTMAX"):
        TFLiteGraph(model)
