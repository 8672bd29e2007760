"""Execute a float TFLite graph as a ``torch.nn.Module`` (batched, CPU or CUDA, jit-traceable).

The flatbuffer is read with the ``tflite`` package. Constant sub-graphs (DEQUANTIZE of float16
weights, DENSIFY of sparse weights) are evaluated once at load time and cached as safetensors
next to the ``.tflite`` file, so later loads skip the decoding. Runtime ops become small modules
run in order.

Layout: TFLite is NHWC; torch convolutions want NCHW. Every rank-4 runtime tensor is held in NCHW
internally (the graph input is permuted on entry, rank-4 outputs on exit), RESHAPE permutes back
to NHWC before reshaping, and CONCATENATION axes are remapped. Dimension 0 is the batch: the
graph's batch of 1 runs with any N. Outputs are returned in their TFLite shapes (NHWC) keyed by
output tensor name.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from torch import nn

from core.errors import UserError
from core.models import (WEIGHT_CACHE_FORMAT, file_sha256, weight_cache_is_current,
                         weight_cache_path)
from core.models.graph_exec import ConvBody, activate, same_pads

log = logging.getLogger("rmpe.tflite")

OP_NAMES = {code: name for name, code in vars(tflite.BuiltinOperator).items()
            if not name.startswith("_")}
_NUMPY_DTYPES = {
    tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32, tflite.TensorType.INT64: np.int64,
    tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT8: np.int8,
    tflite.TensorType.INT16: np.int16, tflite.TensorType.BOOL: np.bool_,
}
_INDEX_VECTORS = {
    tflite.SparseIndexVector.Int32Vector: tflite.Int32Vector,
    tflite.SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
    tflite.SparseIndexVector.Uint8Vector: tflite.Uint8Vector,
}
_ACTIVATIONS = {
    tflite.ActivationFunctionType.NONE: "none", tflite.ActivationFunctionType.RELU: "relu",
    tflite.ActivationFunctionType.RELU_N1_TO_1: "relu_n1_to_1",
    tflite.ActivationFunctionType.RELU6: "relu6", tflite.ActivationFunctionType.TANH: "tanh",
}
NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)  # NHWC axis a is NCHW axis NHWC_TO_NCHW_AXIS[a]


class UnsupportedTFLiteOp(UserError):
    """The graph uses an op (or an op mode) this executor does not implement."""


# ------------------------------------------------------------------------------ flatbuffer


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: type
    data: np.ndarray | None  # constant contents (raw, possibly sparse) or None for activations
    sparsity: object | None  # tflite.SparsityParameters


@dataclass
class OpInfo:
    index: int
    name: str  # builtin name, or CUSTOM(<code>)
    inputs: list[int]  # -1 = optional input left out
    outputs: list[int]
    options: object | None  # the op's tflite *Options table, already initialised


def _op_name(model: tflite.Model, op: tflite.Operator) -> str:
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == tflite.BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        return f"CUSTOM({custom.decode() if custom else '?'})"
    return OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


_OPTION_CLASSES = {code: name for name, code in vars(tflite.BuiltinOptions).items()
                   if not name.startswith("_")}


def _op_options(op: tflite.Operator):
    """The op's options table as the matching tflite class (None if the op has none)."""
    table = op.BuiltinOptions()
    if table is None:
        return None
    class_name = _OPTION_CLASSES.get(op.BuiltinOptionsType())
    cls = getattr(tflite, class_name, None) if class_name else None
    if cls is None:
        return None
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def _buffer_bytes(model: tflite.Model, data: bytes, buffer_index: int) -> np.ndarray | None:
    buf = model.Buffers(buffer_index)
    offset = buf.Offset() if hasattr(buf, "Offset") else 0
    if offset > 1:  # large models store buffers after the flatbuffer
        return np.frombuffer(data, np.uint8, count=buf.Size(), offset=offset)
    if buf.DataLength() == 0:
        return None
    return buf.DataAsNumpy()


def parse_graph(data: bytes) -> tuple[dict[int, TensorInfo], list[OpInfo], list[int], list[int]]:
    """Tensors, ops (in execution order), input and output tensor indices of subgraph 0."""
    model = tflite.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() != 1:
        raise UnsupportedTFLiteOp(f"graphs with {model.SubgraphsLength()} subgraphs are not "
                                  "supported (control flow)")
    graph = model.Subgraphs(0)
    tensors = {}
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        raw = _buffer_bytes(model, data, t.Buffer())
        dtype = _NUMPY_DTYPES.get(t.Type())
        if dtype is None:
            raise UnsupportedTFLiteOp(f"tensor {t.Name().decode()} has unsupported type {t.Type()}")
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        sparsity = t.Sparsity()
        value = None
        if raw is not None:  # sparse values stay flat until DENSIFY
            value = raw.view(dtype).copy()
            value = value if sparsity is not None else value.reshape(shape)
        tensors[i] = TensorInfo(index=i, name=t.Name().decode(), shape=shape, dtype=dtype,
                                data=value, sparsity=sparsity)
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        ops.append(OpInfo(index=i, name=_op_name(model, op),
                          inputs=[int(x) for x in op.InputsAsNumpy()],
                          outputs=[int(x) for x in op.OutputsAsNumpy()], options=_op_options(op)))
    return tensors, ops, [int(x) for x in graph.InputsAsNumpy()], \
        [int(x) for x in graph.OutputsAsNumpy()]


# ------------------------------------------------------------------------- constant folding


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity) -> np.ndarray:
    """Dense array from TFLite's sparse storage (traversal order, block map, DENSE/CSR levels).

    Level l of the storage walks dimension ``traversal_order[l]`` of the expanded shape (original
    dims, then block dims). A DENSE level enumerates ``dense_size`` children per parent; a
    SPARSE_CSR level enumerates ``array_indices[segments[p]:segments[p+1]]`` for parent p. The
    leaves, in order, are the stored values.
    """
    rank = len(shape)
    levels = [sparsity.DimMetadata(i) for i in range(sparsity.DimMetadataLength())]
    order = [int(x) for x in sparsity.TraversalOrderAsNumpy()] if \
        sparsity.TraversalOrderLength() else list(range(len(levels)))
    block_map = [int(x) for x in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    if len(levels) != len(order) or len(order) != rank + len(block_map):
        raise UnsupportedTFLiteOp("inconsistent sparsity parameters")
    level_of = {dim: level for level, dim in enumerate(order)}
    block_size = [levels[level_of[rank + b]].DenseSize() for b in range(len(block_map))]

    parents = np.zeros(1, np.int64)  # storage position of each node at the current level
    index = {}  # expanded dim -> its index for each node
    for level, meta in enumerate(levels):
        if meta.Format() == tflite.DimensionType.DENSE:
            size = meta.DenseSize()
            children = (parents[:, None] * size + np.arange(size)).ravel()
            index = {d: np.repeat(v, size) for d, v in index.items()}
            index[order[level]] = np.tile(np.arange(size), len(parents))
        else:
            segments = _index_vector(meta.ArraySegmentsType(), meta.ArraySegments())
            indices = _index_vector(meta.ArrayIndicesType(), meta.ArrayIndices())
            starts, counts = segments[parents], segments[parents + 1] - segments[parents]
            owner = np.repeat(np.arange(len(parents)), counts)
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            children = starts[owner] + within
            index = {d: v[owner] for d, v in index.items()}
            index[order[level]] = indices[children]
        parents = children
    if len(parents) != values.size:
        raise UnsupportedTFLiteOp(f"sparse tensor holds {values.size} values, its sparsity "
                                  f"describes {len(parents)}")
    original = [index[d].astype(np.int64) for d in range(rank)]
    for b, dim in enumerate(block_map):
        original[dim] = original[dim] * block_size[b] + index[rank + b]
    dense = np.zeros(shape, values.dtype)
    dense[tuple(original)] = values.ravel()
    return dense


def _index_vector(kind: int, table) -> np.ndarray:
    cls = _INDEX_VECTORS.get(kind)
    if cls is None or table is None:
        raise UnsupportedTFLiteOp(f"sparse index vector type {kind} is not supported")
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64)


def _fold_constant(op: OpInfo, tensors: dict[int, TensorInfo], consts: dict[int, np.ndarray]):
    src = tensors[op.inputs[0]]
    value = consts[src.index]
    if op.name == "DENSIFY":
        if src.sparsity is None:
            return value.reshape(src.shape)
        return densify(value, src.shape, src.sparsity)
    if op.name == "DEQUANTIZE":
        if value.dtype != np.float16:
            raise UnsupportedTFLiteOp(f"DEQUANTIZE from {value.dtype} (only float16 weights are "
                                      "supported; quantised int8 graphs are not)")
        return value.astype(np.float32).reshape(tensors[op.outputs[0]].shape)
    raise UnsupportedTFLiteOp(f"constant {op.name} cannot be folded")


FOLDED_OPS = ("DEQUANTIZE", "DENSIFY")


# ------------------------------------------------------------------------------- runtime ops


def _activation(options) -> str:
    code = options.FusedActivationFunction() if options is not None else 0
    if code not in _ACTIVATIONS:
        raise UnsupportedTFLiteOp(f"fused activation {code} is not supported")
    return _ACTIVATIONS[code]


class Step(nn.Module):
    """One runtime op: reads env[inputs], writes env[outputs[0]]."""

    def __init__(self, op: OpInfo, inputs: list[int], output: int):
        super().__init__()
        self.op_name = op.name
        self.inputs = inputs
        self.output = output


class Conv(ConvBody, Step):
    """CONV_2D and DEPTHWISE_CONV_2D (weights OIHW; SAME/VALID; asymmetric SAME via F.pad)."""

    def __init__(self, op, inputs, output, weight, bias, stride, dilation, pads, groups, act):
        super().__init__(op, inputs, output)
        self.set_conv(weight, bias, stride, dilation, pads, groups, act)


class MaxPool(Step):
    def __init__(self, op, inputs, output, kernel, stride, pads, act):
        super().__init__(op, inputs, output)
        top, bottom, left, right = pads
        self.pre_pad = (left, right, top, bottom) if any(pads) else None
        self.kernel, self.stride, self.act = kernel, stride, act

    def forward(self, x):
        if self.pre_pad is not None:  # padded cells never win the max, as in TFLite SAME pooling
            x = F.pad(x, self.pre_pad, value=float("-inf"))
        return activate(F.max_pool2d(x, self.kernel, self.stride), self.act)


class Add(Step):
    def __init__(self, op, inputs, output, act, const: torch.Tensor | None):
        super().__init__(op, inputs, output)
        self.act = act
        self.register_buffer("const", const)

    def forward(self, *xs):
        y = xs[0] + xs[1] if self.const is None else xs[0] + self.const
        return activate(y, self.act)


class Pad(Step):
    def __init__(self, op, inputs, output, pads: tuple[int, ...]):
        super().__init__(op, inputs, output)
        self.pads = pads

    def forward(self, x):
        return F.pad(x, self.pads)


class Reshape(Step):
    def __init__(self, op, inputs, output, shape: tuple[int, ...], from_4d: bool, to_4d: bool):
        super().__init__(op, inputs, output)
        self.shape, self.from_4d, self.to_4d = (-1,) + tuple(shape[1:]), from_4d, to_4d

    def forward(self, x):
        if self.from_4d:
            x = x.permute(0, 2, 3, 1)
        y = x.reshape(self.shape)
        return y.permute(0, 3, 1, 2) if self.to_4d else y


class Concat(Step):
    def __init__(self, op, inputs, output, dim: int, act: str, consts: dict[int, torch.Tensor]):
        super().__init__(op, inputs, output)
        self.dim, self.act = dim, act
        # constant parts, by position among the op's inputs
        self.const_slots = sorted(consts)
        for slot, value in consts.items():
            self.register_buffer(f"const_{slot}", value)

    def forward(self, *xs):
        parts, it = [], iter(xs)
        for slot in range(len(xs) + len(self.const_slots)):
            if slot in self.const_slots:
                c = getattr(self, f"const_{slot}")
                parts.append(c.expand((xs[0].shape[0],) + tuple(c.shape[1:])))
            else:
                parts.append(next(it))
        return activate(torch.cat(parts, self.dim), self.act)


class DepthToSpace(Step):
    """TFLite/TF DEPTH_TO_SPACE (DCR order): out[h*b+i, w*b+j, c] = in[h, w, (i*b+j)*C + c]."""

    def __init__(self, op, inputs, output, block: int):
        super().__init__(op, inputs, output)
        self.block = block

    def forward(self, x):
        n, c, h, w = x.shape
        b = self.block
        x = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
        return x.reshape(n, c // (b * b), h * b, w * b)


class ResizeBilinear(Step):
    def __init__(self, op, inputs, output, size: tuple[int, int], align_corners: bool):
        super().__init__(op, inputs, output)
        self.size, self.align_corners = size, align_corners

    def forward(self, x):
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)


class Logistic(Step):
    def forward(self, x):
        return torch.sigmoid(x)


# ---------------------------------------------------------------------------------- builder


class _Builder:
    """Turns parsed ops into Steps, converting constants and axes to the NCHW-internal layout."""

    def __init__(self, tensors: dict[int, TensorInfo], consts: dict[int, np.ndarray]):
        self.tensors, self.consts = tensors, consts
        # PAD output -> (PAD input, (top, bottom, left, right)) for PADs folded into convs
        self.spatial_pads: dict[int, tuple[int, tuple[int, int, int, int]]] = {}

    def fold_pads_into_convs(self, ops: list[OpInfo], graph_outputs: list[int]) -> list[OpInfo]:
        """Drop zero PADs of H/W whose only readers are convolutions; the convs pad instead.

        BlazePose pads explicitly before its stride-2 and 5x5 convs; folding saves one copy of
        the activation per PAD. Returns the ops left to build.
        """
        readers: dict[int, list[str]] = {}
        for op in ops:
            for i in op.inputs:
                readers.setdefault(i, []).append(op.name)
        kept = []
        for op in ops:
            if op.name == "PAD" and len(self.shape(op.inputs[0])) == 4 \
                    and self.is_const(op.inputs[1]) and op.outputs[0] not in graph_outputs \
                    and set(readers.get(op.outputs[0], ["?"])) <= {"CONV_2D", "DEPTHWISE_CONV_2D"}:
                pads = self.const(op.inputs[1]).astype(np.int64).reshape(4, 2)
                if not pads[0].any() and not pads[3].any():
                    (top, bottom), (left, right) = pads[1], pads[2]
                    self.spatial_pads[op.outputs[0]] = (op.inputs[0], (int(top), int(bottom),
                                                                       int(left), int(right)))
                    continue
            kept.append(op)
        return kept

    def const(self, index: int) -> np.ndarray:
        return self.consts[index]

    def is_const(self, index: int) -> bool:
        return index in self.consts

    def shape(self, index: int) -> tuple[int, ...]:
        return self.tensors[index].shape

    def layout_const(self, index: int, like_rank: int) -> torch.Tensor:
        """A constant operand broadcast the NHWC way, stored the NCHW way when rank 4."""
        value = np.asarray(self.const(index), np.float32)
        if like_rank == 4:
            value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(value))

    def runtime_inputs(self, op: OpInfo) -> list[int]:
        return [i for i in op.inputs if i >= 0 and not self.is_const(i)]

    def build(self, op: OpInfo) -> Step:
        method = getattr(self, "_" + op.name.lower(), None)
        if method is None:
            raise UnsupportedTFLiteOp(f"unsupported TFLite op {op.name} (operator #{op.index}); "
                                      f"supported: {', '.join(SUPPORTED_OPS)}")
        for i in op.inputs + op.outputs:
            if i >= 0 and not self.is_const(i) and self.tensors[i].dtype != np.float32:
                raise UnsupportedTFLiteOp(f"{op.name} on a {np.dtype(self.tensors[i].dtype).name} "
                                          "tensor (only float32 activations are supported)")
        return method(op)

    def _conv(self, op: OpInfo, depthwise: bool) -> Step:
        o = op.options
        x, w_idx = op.inputs[0], op.inputs[1]
        bias_idx = op.inputs[2] if len(op.inputs) > 2 else -1
        weight = self.const(w_idx).astype(np.float32)  # CONV: O,H,W,I   DEPTHWISE: 1,H,W,O
        in_channels = self.shape(x)[3]
        if depthwise:
            weight = weight.transpose(3, 0, 1, 2)  # -> O,1,H,W (out channel = in*mult + m)
            groups = in_channels
        else:
            weight = weight.transpose(0, 3, 1, 2)  # -> O,I,H,W
            groups = in_channels // weight.shape[1]
        kh, kw = weight.shape[2:]
        stride = (o.StrideH(), o.StrideW())
        dilation = (o.DilationHFactor(), o.DilationWFactor())
        pads = self._pads(o.Padding(), self.shape(x), (kh, kw), stride, dilation)
        if x in self.spatial_pads:  # read the PAD's input and pad inside the conv instead
            x, extra = self.spatial_pads[x]
            pads = tuple(a + b for a, b in zip(pads, extra))
        bias = torch.from_numpy(self.const(bias_idx).astype(np.float32)) if bias_idx >= 0 else None
        return Conv(op, [x], op.outputs[0], torch.from_numpy(np.ascontiguousarray(weight)), bias,
                    stride, dilation, pads, groups, _activation(o))

    def _pads(self, padding, in_shape, kernel, stride, dilation=(1, 1)):
        if padding == tflite.Padding.VALID:
            return 0, 0, 0, 0
        top, bottom = same_pads(in_shape[1], kernel[0], stride[0], dilation[0])
        left, right = same_pads(in_shape[2], kernel[1], stride[1], dilation[1])
        return top, bottom, left, right

    def _conv_2d(self, op):
        return self._conv(op, depthwise=False)

    def _depthwise_conv_2d(self, op):
        return self._conv(op, depthwise=True)

    def _max_pool_2d(self, op):
        o = op.options
        kernel, stride = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
        pads = self._pads(o.Padding(), self.shape(op.inputs[0]), kernel, stride)
        return MaxPool(op, [op.inputs[0]], op.outputs[0], kernel, stride, pads, _activation(o))

    def _add(self, op):
        a, b = op.inputs[:2]
        act = _activation(op.options)
        if not self.is_const(a) and not self.is_const(b):
            if len(self.shape(a)) != len(self.shape(b)):
                raise UnsupportedTFLiteOp(f"ADD of rank {len(self.shape(a))} and rank "
                                          f"{len(self.shape(b))} activations")
            return Add(op, [a, b], op.outputs[0], act, None)
        if self.is_const(a) and self.is_const(b):
            raise UnsupportedTFLiteOp(f"ADD of two constants (operator #{op.index})")
        x, c = (b, a) if self.is_const(a) else (a, b)
        return Add(op, [x], op.outputs[0], act, self.layout_const(c, len(self.shape(x))))

    def _pad(self, op):
        x = op.inputs[0]
        pads = self.const(op.inputs[1]).astype(np.int64).reshape(-1, 2)
        if pads[0].any():
            raise UnsupportedTFLiteOp("PAD of the batch dimension")
        if len(self.shape(x)) == 4:
            pads = pads[list((0, 3, 1, 2))]  # NHWC rows -> NCHW rows
        torch_pads = tuple(int(v) for row in pads[::-1] for v in row)  # last dim first
        return Pad(op, [x], op.outputs[0], torch_pads)

    def _reshape(self, op):
        x, out = op.inputs[0], op.outputs[0]
        in_shape, out_shape = self.shape(x), self.shape(out)
        if not in_shape or not out_shape or in_shape[0] != out_shape[0]:
            raise UnsupportedTFLiteOp(f"RESHAPE {in_shape} -> {out_shape} changes the batch "
                                      "dimension")
        return Reshape(op, [x], out, out_shape, len(in_shape) == 4, len(out_shape) == 4)

    def _concatenation(self, op):
        rank = len(self.shape(op.outputs[0]))
        axis = op.options.Axis() % rank
        dim = NHWC_TO_NCHW_AXIS[axis] if rank == 4 else axis
        consts = {slot: self.layout_const(i, rank) for slot, i in enumerate(op.inputs)
                  if self.is_const(i)}
        if len(consts) == len(op.inputs):
            raise UnsupportedTFLiteOp(f"CONCATENATION of constants (operator #{op.index})")
        return Concat(op, self.runtime_inputs(op), op.outputs[0], dim, _activation(op.options),
                      consts)

    def _depth_to_space(self, op):
        return DepthToSpace(op, [op.inputs[0]], op.outputs[0], op.options.BlockSize())

    def _resize_bilinear(self, op):
        o = op.options
        out_shape = self.shape(op.outputs[0])
        if o.AlignCorners():
            align = True
        elif o.HalfPixelCenters():
            align = False
        else:
            raise UnsupportedTFLiteOp("RESIZE_BILINEAR without half_pixel_centers or "
                                      "align_corners (legacy TF1 sampling)")
        return ResizeBilinear(op, [op.inputs[0]], op.outputs[0], out_shape[1:3], align)

    def _logistic(self, op):
        return Logistic(op, [op.inputs[0]], op.outputs[0])


SUPPORTED_OPS = ("ADD", "CONCATENATION", "CONV_2D", "DENSIFY", "DEPTHWISE_CONV_2D",
                 "DEPTH_TO_SPACE", "DEQUANTIZE", "LOGISTIC", "MAX_POOL_2D", "PAD", "RESHAPE",
                 "RESIZE_BILINEAR")


# ----------------------------------------------------------------------------------- module


class TFLiteGraph(nn.Module):
    """A float TFLite graph as a torch module.

    ``forward(*inputs)`` takes the graph's inputs in TFLite layout (NHWC for images) with any
    batch size and returns ``{output name: tensor}`` in TFLite layout with that batch size.
    """

    def __init__(self, data: bytes, folded: dict[int, np.ndarray] | None = None):
        super().__init__()
        tensors, ops, inputs, outputs = parse_graph(data)
        # Which tensors are constant is decided by structure; their values come from the
        # flatbuffer, from folding, or from the weight cache.
        const_ids = {i for i, t in tensors.items() if t.data is not None}
        fold_ops, runtime_ops = [], []
        for op in ops:
            if op.name in FOLDED_OPS and all(i in const_ids for i in op.inputs if i >= 0):
                const_ids.add(op.outputs[0])
                fold_ops.append(op)
            else:
                runtime_ops.append(op)
        needed = {i for op in runtime_ops for i in op.inputs
                  if i in const_ids and tensors[i].data is None}
        consts = {i: t.data for i, t in tensors.items() if t.data is not None}
        if folded is None:
            values = dict(consts)
            for op in fold_ops:
                values[op.outputs[0]] = _fold_constant(op, tensors, values)
            folded = {i: values[i] for i in needed}
        elif not needed <= folded.keys():
            raise ValueError("weight cache lacks folded tensors")
        consts.update({i: folded[i] for i in needed})
        self.folded_weights = folded  # kept until from_file has written the cache
        builder = _Builder(tensors, consts)
        runtime_ops = builder.fold_pads_into_convs(runtime_ops, outputs)
        self.steps = nn.ModuleList(builder.build(op) for op in runtime_ops)
        self.input_ids = inputs
        self.input_ranks = [len(tensors[i].shape) for i in inputs]
        self.input_shapes = [tensors[i].shape[1:] for i in inputs]
        self.output_ids = outputs
        self.output_names = [tensors[i].name for i in outputs]
        self.output_ranks = [len(tensors[i].shape) for i in outputs]

    def steps_for(self, tensors) -> list:
        """The steps, in execution order, that the tensor ids ``tensors`` depend on."""
        wanted, steps = set(tensors), []
        for step in reversed(self.steps):  # steps are in execution (topological) order
            if step.output in wanted:
                steps.append(step)
                wanted.update(step.inputs)
        return steps[::-1]

    def keep_outputs(self, names) -> "TFLiteGraph":
        """Return only the outputs ``names`` (in the graph's order) and drop the steps no kept
        output depends on: an unused head (BlazePose's segmentation mask) then costs nothing."""
        names = set(names)
        unknown = names - set(self.output_names)
        if unknown:
            raise ValueError(f"no graph outputs named {sorted(unknown)}; outputs: {self.output_names}")
        kept = [i for i, name in enumerate(self.output_names) if name in names]
        self.steps = nn.ModuleList(self.steps_for(self.output_ids[i] for i in kept))
        self.output_ids = [self.output_ids[i] for i in kept]
        self.output_names = [self.output_names[i] for i in kept]
        self.output_ranks = [self.output_ranks[i] for i in kept]
        return self

    @classmethod
    def from_file(cls, path: str | Path, use_cache: bool = True) -> "TFLiteGraph":
        """Load a .tflite file, reading/writing decoded weights in its safetensors cache."""
        path = Path(path)
        data = path.read_bytes()
        if not use_cache:
            return cls(data)
        digest = file_sha256(path)
        cache = weight_cache_path(path)
        if weight_cache_is_current(path, digest):
            try:
                folded = {int(k[1:]): v for k, v in load_file(cache).items()}
                graph = cls(data, folded)
                graph.folded_weights = None
                return graph
            except (OSError, ValueError, SafetensorError) as exc:
                log.warning("rebuilding unreadable weight cache %s (%s)", cache, exc)
        graph = cls(data)
        _write_weight_cache(cache, graph.folded_weights, digest)
        graph.folded_weights = None
        return graph

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        env: dict[int, torch.Tensor] = {}
        for idx, x, rank, shape in zip(self.input_ids, inputs, self.input_ranks,
                                       self.input_shapes):
            if not torch.jit.is_tracing() and tuple(x.shape[1:]) != tuple(shape):
                raise ValueError(f"input shape {tuple(x.shape)} does not match the graph's "
                                 f"(N, {', '.join(map(str, shape))})")
            env[idx] = x.permute(0, 3, 1, 2) if rank == 4 else x
        for step in self.steps:
            env[step.output] = step(*[env[i] for i in step.inputs])
        out = {}
        for idx, name, rank in zip(self.output_ids, self.output_names, self.output_ranks):
            y = env[idx]
            out[name] = y.permute(0, 2, 3, 1).contiguous() if rank == 4 else y
        return out


def _write_weight_cache(cache: Path, folded: dict[int, np.ndarray], source_sha256: str) -> None:
    """Write atomically (temp file + rename) so an interrupted write never leaves a bad cache."""
    from core.fileio import atomic_write

    try:
        with atomic_write(cache) as tmp:
            save_file({f"t{k}": np.ascontiguousarray(v) for k, v in folded.items()}, tmp,
                      metadata={"format": WEIGHT_CACHE_FORMAT, "source_sha256": source_sha256})
            tmp.chmod(0o644)  # safetensors writes 0600; the cache is ordinary shared data
        from core.models.verify import record

        record(cache)  # what later loads check it against
    except OSError as exc:  # a read-only cache folder only costs the decoding time next load
        log.warning("could not write weight cache %s: %s", cache, exc)


def build_weight_cache(path: str | Path) -> Path:
    """Decode a .tflite file's constant weights into its safetensors cache (if not current)."""
    TFLiteGraph.from_file(path)
    return weight_cache_path(path)
