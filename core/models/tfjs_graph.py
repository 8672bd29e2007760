"""Execute a TensorFlow.js graph model (GraphDef JSON + float16 weight shards) as a torch module.

``model.json`` (``format: graph-model``) holds a TF GraphDef in JSON and a weights manifest; the
``.bin`` shards hold the weights back to back in manifest order, floats stored as float16
(dequantised here to float32 exactly as the JS runtime does, so results match it to float32
rounding) and int32 raw. The graph is pruned to the tensors asked for (any internal tensor can be
an output: MoveNet's heatmaps are tapped before its in-graph argmax), constant sub-graphs (shape
plumbing such as NanoDet's SparseToDense) are folded at build time, and every runtime op becomes a
small :class:`Step` module run in order.

Layout. Each runtime tensor is held as ``physical = logical.permute(perm)`` where ``logical`` is
the tensor in TF's meaning. A ``Transpose`` only changes ``perm`` (no copy); ops that care about
memory layout (convolutions, pooling, resizing: NHWC in TF) ask for the NCHW physical layout torch
wants, and a real permute is inserted only when the tensor is not already held that way. NanoDet
came through ONNX→TF and wraps every conv in a Transpose pair (NCHW→NHWC→conv→NCHW); with this
bookkeeping all 83 of its Transposes cost nothing. Elementwise ops, pads, concats and splits work
on the physical tensor with their axes/constants remapped; reshapes materialise the logical layout.

Batch. Dimension 0 is the batch: a graph traced at batch 1 runs with any N. An ``Unpack`` or
``Squeeze`` of a size-1 batch axis (MoveNet's pre-processing) keeps the batch physically and marks
the tensor unbatched until an ``ExpandDims`` on axis 0 restores it.

Input size. ``input_shape`` may differ from the shipped one (NanoDet at other multiples of 32):
constant resize targets are then scaled by the same ratio as their input, measured by building
the shipped-size graph once.

An op outside :data:`SUPPORTED_OPS` raises :class:`UnsupportedTFJSOp` naming it and the node.
"""
from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError
from core.models import file_sha256, onnx_backend
from core.models.graph_exec import ConvBody, same_pads
from core.models.onnx_backend import ONNX_CACHE_FORMAT, OnnxGraph

log = logging.getLogger("rmpe.tfjs")

# Bump when the graph this module builds changes (folding, op rules): cached exports are rebuilt.
TFJS_EXPORT_FORMAT = "rmpe-tfjs/2"
NCHW = (0, 3, 1, 2)  # physical NCHW of a logical NHWC tensor
_TF_DTYPES = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_INT64": np.int64,
              "DT_BOOL": np.bool_}


class UnsupportedTFJSOp(UserError):
    """The graph uses an op (or op mode) this executor does not implement."""


# ------------------------------------------------------------------------------ file format


def read_model(json_path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(model.json as a dict, {weight name: array}) from a graph-model file and its shards."""
    json_path = Path(json_path)
    try:
        model = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{json_path} is not a readable TFJS model.json ({exc})") from None
    if model.get("format") != "graph-model" or "modelTopology" not in model:
        raise UserError(f"{json_path} is not a TFJS graph model (format "
                        f"{model.get('format')!r})")
    weights: dict[str, np.ndarray] = {}
    for group in model.get("weightsManifest", []):
        data = b"".join((json_path.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = tuple(int(s) for s in spec["shape"])
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            if quant is not None:
                if quant.get("dtype") != "float16":
                    raise UnsupportedTFJSOp(f"weight {spec['name']}: {quant.get('dtype')} "
                                            "quantisation (only float16 is supported)")
                raw = np.frombuffer(data, np.float16, count, offset).astype(np.float32)
                offset += 2 * count
            elif spec["dtype"] in ("float32", "int32"):
                raw = np.frombuffer(data, np.dtype(spec["dtype"]), count, offset).copy()
                offset += 4 * count
            else:
                raise UnsupportedTFJSOp(f"weight {spec['name']} of dtype {spec['dtype']}")
            weights[spec["name"]] = raw.reshape(shape)
        if offset != len(data):
            raise UserError(f"{json_path}: weight shards hold {len(data)} bytes, the manifest "
                            f"describes {offset}")
    return model, weights


def _attr(node: dict, key: str, default=None):
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        return []
    return default


def _split_ref(ref: str) -> tuple[str, int]:
    """``name:k`` -> (name, k); plain ``name`` is output 0."""
    name, _, k = ref.rpartition(":")
    if name and k.isdigit():
        return name, int(k)
    return ref, 0


def _key(ref: str) -> str:
    name, k = _split_ref(ref)
    return f"{name}:{k}"


# ------------------------------------------------------------------------------- runtime ops


class Step(nn.Module):
    """One runtime op: reads env[inputs], writes env[outputs] (one or several tensors)."""

    def __init__(self, node: str, inputs: list[str], outputs: list[str]):
        super().__init__()
        self.node, self.inputs, self.outputs = node, inputs, outputs


class Permute(Step):
    def __init__(self, node, inputs, outputs, dims):
        super().__init__(node, inputs, outputs)
        self.dims = tuple(dims)

    def forward(self, x):
        return x.permute(self.dims)


class Conv(ConvBody, Step):
    """Conv2D / depthwise conv on NCHW (weights OIHW); TF SAME padding's odd pixel goes after."""

    def __init__(self, node, inputs, outputs, weight, bias, stride, dilation, pads, groups, act):
        super().__init__(node, inputs, outputs)
        self.set_conv(weight, bias, stride, dilation, pads, groups, act)


class MaxPool(Step):
    def __init__(self, node, inputs, outputs, kernel, stride, pads):
        super().__init__(node, inputs, outputs)
        top, bottom, left, right = pads
        self.pre_pad = (left, right, top, bottom) if any(pads) else None
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class Binary(Step):
    """Elementwise op of two runtime tensors, or of one and a constant (in either order)."""

    def __init__(self, node, inputs, outputs, op: str, const: torch.Tensor | None,
                 const_first: bool):
        super().__init__(node, inputs, outputs)
        self.op, self.const_first = op, const_first
        self.register_buffer("const", const)

    def forward(self, *xs):
        if self.const is None:
            a, b = xs
        elif self.const_first:
            a, b = self.const, xs[0]
        else:
            a, b = xs[0], self.const
        if self.op == "add":
            return a + b
        if self.op == "sub":
            return a - b
        if self.op == "mul":
            return a * b
        if self.op == "div":
            return a / b
        if self.op == "sqdiff":
            return (a - b) * (a - b)
        if self.op == "max":
            return torch.maximum(a, b)
        return torch.minimum(a, b)


class Unary(Step):
    def __init__(self, node, inputs, outputs, op: str, alpha: float = 0.0):
        super().__init__(node, inputs, outputs)
        self.op, self.alpha = op, alpha

    def forward(self, x):
        if self.op == "sigmoid":
            return torch.sigmoid(x)
        if self.op == "relu":
            return F.relu(x)
        if self.op == "relu6":
            return F.hardtanh(x, 0.0, 6.0)
        if self.op == "leaky_relu":
            return F.leaky_relu(x, self.alpha)
        if self.op == "sqrt":
            return torch.sqrt(x)
        if self.op == "tanh":
            return torch.tanh(x)
        return x.float()  # cast to float32


class Pad(Step):
    def __init__(self, node, inputs, outputs, pads: tuple[int, ...], value: float):
        super().__init__(node, inputs, outputs)
        self.pads, self.value = pads, value

    def forward(self, x):
        return F.pad(x, self.pads, value=self.value)


class Concat(Step):
    def __init__(self, node, inputs, outputs, dim: int):
        super().__init__(node, inputs, outputs)
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, self.dim)


class Split(Step):
    def __init__(self, node, inputs, outputs, sizes: list[int], dim: int):
        super().__init__(node, inputs, outputs)
        self.sizes, self.dim = sizes, dim

    def forward(self, x):
        return tuple(torch.split(x, self.sizes, self.dim))


class Reshape(Step):
    def __init__(self, node, inputs, outputs, shape: tuple[int, ...]):
        super().__init__(node, inputs, outputs)
        self.shape = shape

    def forward(self, x):
        return x.reshape(self.shape)


class ResizeBilinear(Step):
    def __init__(self, node, inputs, outputs, size: tuple[int, int], align_corners: bool):
        super().__init__(node, inputs, outputs)
        self.size, self.align_corners = size, align_corners

    def forward(self, x):
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)


# ---------------------------------------------------------------------------------- builder


@dataclass
class Value:
    """A runtime tensor at build time: where it lives in env, its layout and a probe value."""

    phys: str  # env key of the physical tensor
    perm: tuple[int, ...]  # physical = logical.permute(perm)
    batched: bool  # dim 0 of the physical tensor is the batch and is part of the logical shape
    probe: torch.Tensor  # the physical tensor for the probe input (batch 1)

    @property
    def logical_shape(self) -> tuple[int, ...]:
        inv = np.argsort(self.perm)
        shape = tuple(self.probe.shape[i] for i in inv)
        return shape if self.batched else shape[1:]


def _inverse(perm) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


_BINARY = {"Add": "add", "AddV2": "add", "BiasAdd": "add", "Sub": "sub", "Mul": "mul",
           "RealDiv": "div", "SquaredDifference": "sqdiff", "Maximum": "max", "Minimum": "min"}
_UNARY = {"Sigmoid": "sigmoid", "Relu": "relu", "Relu6": "relu6", "LeakyRelu": "leaky_relu",
          "Sqrt": "sqrt", "Tanh": "tanh"}
_METHODS = {"_FusedConv2D": "_fused_conv2d"}  # a leading "__" would be name-mangled
_NUMPY_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
                 "max": np.maximum, "min": np.minimum,
                 "sqdiff": lambda a, b: (a - b) * (a - b)}


class _Builder:
    """Turns pruned nodes into Steps, running each on the probe to know shapes and layouts."""

    def __init__(self, nodes: dict[str, dict], weights: dict[str, np.ndarray],
                 resize_ratio: dict[str, tuple[float, float]] | None):
        self.nodes, self.weights = nodes, weights
        self.consts: dict[str, np.ndarray] = {}  # "name:k" -> folded constant
        self.values: dict[str, Value] = {}  # "name:k" -> runtime tensor
        self.steps: list[Step] = []
        self.resize_ratio = resize_ratio or {}
        self.resize_inputs: dict[str, tuple[int, int]] = {}  # node -> input (h, w), for ratios
        self._permuted: dict[tuple[str, tuple[int, ...]], str] = {}

    # -- helpers
    def is_const(self, ref: str) -> bool:
        return _key(ref) in self.consts

    def const(self, ref: str) -> np.ndarray:
        return self.consts[_key(ref)]

    def value(self, ref: str, node: dict) -> Value:
        key = _key(ref)
        if key not in self.values:
            raise UnsupportedTFJSOp(f"{node['op']} node {node['name']} reads {ref}, which is "
                                    "neither a runtime tensor nor a foldable constant")
        return self.values[key]

    def add(self, step: Step, probes) -> None:
        self.steps.append(step)
        self.probe_env.update(zip(step.outputs, probes))

    def run_step(self, step: Step, outs_meta: list[tuple[tuple[int, ...], bool]]) -> list[Value]:
        xs = [self.probe_env[i] for i in step.inputs]
        with torch.no_grad():
            y = step(*xs)
        ys = list(y) if isinstance(y, tuple) else [y]
        self.add(step, ys)
        return [Value(name, perm, batched, probe)
                for name, (perm, batched), probe in zip(step.outputs, outs_meta, ys)]

    def in_layout(self, v: Value, perm: tuple[int, ...], node: dict) -> str:
        """Env key of ``v`` held physically as logical.permute(perm) (a permute step if needed)."""
        if not v.batched:
            raise UnsupportedTFJSOp(f"{node['op']} node {node['name']} on a tensor whose batch "
                                    "axis was removed (only ExpandDims can restore it)")
        if v.perm == tuple(perm):
            return v.phys
        key = (v.phys, tuple(perm))
        if key not in self._permuted:
            # physical now: logical.permute(v.perm); wanted: logical.permute(perm)
            dims = tuple(v.perm.index(p) for p in perm)
            name = f"{v.phys}@{''.join(map(str, perm))}"
            self.run_step(Permute(node["name"], [v.phys], [name], dims), [(perm, True)])
            self._permuted[key] = name
        return self._permuted[key]

    def set(self, node: dict, value: Value, k: int = 0) -> None:
        self.values[f"{node['name']}:{k}"] = value

    # -- dispatch
    def build(self, node: dict) -> None:
        op = node["op"]
        inputs = [i for i in node.get("input", []) if not i.startswith("^")]
        node = {**node, "input": inputs}
        if op == "Const":
            if node["name"] not in self.weights:
                raise UnsupportedTFJSOp(f"Const {node['name']} has no weight in the manifest")
            self.consts[f"{node['name']}:0"] = self.weights[node["name"]]
            return
        if op == "Placeholder":
            raise UnsupportedTFJSOp(f"a second graph input {node['name']} (one is supported)")
        if inputs and all(self.is_const(i) for i in inputs) and self.fold(node):
            return
        method = getattr(self, _METHODS.get(op, "_" + op.lower()), None)
        if op in _BINARY:
            method = self._binary
        elif op in _UNARY:
            method = self._unary
        if method is None:
            raise UnsupportedTFJSOp(f"unsupported TFJS op {op} (node {node['name']}); "
                                    f"supported: {', '.join(SUPPORTED_OPS)}")
        method(node)

    def fold(self, node: dict) -> bool:
        """Evaluate an all-constant node in numpy; False if this op is not foldable."""
        op, xs = node["op"], [self.const(i) for i in node["input"]]
        if op in _BINARY and _BINARY[op] in _NUMPY_BINARY:
            y = _NUMPY_BINARY[_BINARY[op]](xs[0], xs[1])
        elif op in ("Identity", "Cast"):
            y = xs[0]
            if op == "Cast":
                dst = node["attr"]["DstT"]["type"]
                if dst not in _TF_DTYPES:
                    return False
                y = y.astype(_TF_DTYPES[dst])
        elif op == "SparseToDense":
            indices, shape, values, default = xs
            y = np.full(tuple(int(s) for s in np.atleast_1d(shape)), default,
                        dtype=np.asarray(values).dtype if np.asarray(values).size else
                        np.asarray(default).dtype)
            idx = np.asarray(indices).reshape(-1, y.ndim) if y.ndim else np.zeros((0, 0), int)
            vals = np.broadcast_to(values, (len(idx),))
            for i, v in zip(idx, vals):
                y[tuple(i)] = v
        elif op == "Reshape":
            y = xs[0].reshape(tuple(int(s) for s in xs[1]))
        elif op == "ExpandDims":
            y = np.expand_dims(xs[0], int(xs[1]))
        elif op == "Pack":
            y = np.stack(xs, _attr(node, "axis", 0))
        elif op == "ConcatV2":
            y = np.concatenate(xs[:-1], int(xs[-1]))
        else:
            return False
        self.consts[f"{node['name']}:0"] = np.asarray(y)
        return True

    # -- ops
    def _identity(self, node):
        self.set(node, self.value(node["input"][0], node))

    _stopgradient = _identity

    def _transpose(self, node):
        x, perm_ref = node["input"]
        v = self.value(x, node)
        p = tuple(int(i) for i in self.const(perm_ref))
        if not v.batched or p[0] != 0:
            raise UnsupportedTFJSOp(f"Transpose {node['name']} moves the batch axis ({p})")
        inv = _inverse(p)
        self.set(node, Value(v.phys, tuple(inv[i] for i in v.perm), True, v.probe))

    def _cast(self, node):
        v = self.value(node["input"][0], node)
        dst = node["attr"]["DstT"]["type"]
        if dst != "DT_FLOAT":
            raise UnsupportedTFJSOp(f"Cast {node['name']} to {dst} (only to float32)")
        out = self.run_step(Unary(node["name"], [v.phys], [node["name"] + ":0"], "cast"),
                            [(v.perm, v.batched)])[0]
        self.set(node, out)

    def _unpack(self, node):
        v = self.value(node["input"][0], node)
        if _attr(node, "axis", 0) != 0 or _attr(node, "num") != 1 or not v.batched \
                or v.perm[0] != 0:
            raise UnsupportedTFJSOp(f"Unpack {node['name']} (only of a size-1 batch axis)")
        self.set(node, Value(v.phys, v.perm, False, v.probe))

    def _squeeze(self, node):
        v = self.value(node["input"][0], node)
        dims = _attr(node, "squeeze_dims", [])
        if dims != [0] or not v.batched or v.perm[0] != 0:
            raise UnsupportedTFJSOp(f"Squeeze {node['name']} of axes {dims} (only the batch)")
        self.set(node, Value(v.phys, v.perm, False, v.probe))

    def _expanddims(self, node):
        v = self.value(node["input"][0], node)
        axis = int(self.const(node["input"][1]))
        if axis != 0 or v.batched:
            raise UnsupportedTFJSOp(f"ExpandDims {node['name']} on axis {axis} (only restoring "
                                    "a removed batch axis)")
        self.set(node, Value(v.phys, v.perm, True, v.probe))

    def _binary(self, node):
        a, b = node["input"]
        op = _BINARY[node["op"]]
        name = node["name"] + ":0"
        if self.is_const(a) or self.is_const(b):
            const_first = self.is_const(a)
            v = self.value(b if const_first else a, node)
            c = np.asarray(self.const(a if const_first else b), np.float32)
            rank = len(v.perm)
            if not v.batched:
                raise UnsupportedTFJSOp(f"{node['op']} {node['name']} on an unbatched tensor")
            if c.ndim > rank:
                raise UnsupportedTFJSOp(f"{node['op']} {node['name']}: constant of rank {c.ndim}")
            c = c.reshape((1,) * (rank - c.ndim) + c.shape).transpose(v.perm)
            step = Binary(node["name"], [v.phys], [name], op,
                          torch.from_numpy(np.ascontiguousarray(c)), const_first)
            self.set(node, self.run_step(step, [(v.perm, True)])[0])
            return
        va, vb = self.value(a, node), self.value(b, node)
        if len(va.perm) != len(vb.perm):
            raise UnsupportedTFJSOp(f"{node['op']} {node['name']} of rank {len(va.perm)} and "
                                    f"{len(vb.perm)} tensors")
        pa = self.in_layout(va, va.perm, node)
        pb = self.in_layout(vb, va.perm, node)
        self.set(node, self.run_step(Binary(node["name"], [pa, pb], [name], op, None, False),
                                     [(va.perm, True)])[0])

    def _unary(self, node):
        v = self.value(node["input"][0], node)
        op = _UNARY[node["op"]]
        step = Unary(node["name"], [v.phys], [node["name"] + ":0"], op,
                     _attr(node, "alpha", 0.2) if op == "leaky_relu" else 0.0)
        self.set(node, self.run_step(step, [(v.perm, v.batched)])[0])

    def _nhwc(self, node) -> None:
        fmt = _attr(node, "data_format", "NHWC")
        if fmt != "NHWC":
            raise UnsupportedTFJSOp(f"{node['op']} {node['name']} with data_format {fmt}")

    def _conv(self, node, depthwise: bool):
        self._nhwc(node)
        x, w_ref = node["input"][:2]
        v = self.value(x, node)
        if len(v.perm) != 4:
            raise UnsupportedTFJSOp(f"{node['op']} {node['name']} on a rank-{len(v.perm)} tensor")
        w = np.asarray(self.const(w_ref), np.float32)  # [kh, kw, in, out] / [kh, kw, in, mult]
        in_ch = v.logical_shape[3]
        if depthwise:
            weight = w.transpose(2, 3, 0, 1).reshape(-1, 1, w.shape[0], w.shape[1])
            groups = in_ch
        else:
            weight = w.transpose(3, 2, 0, 1)
            groups = in_ch // w.shape[2]
        bias, act = None, "none"
        if node["op"].startswith(("_Fused", "Fused")):
            fused = _attr(node, "fused_ops", [])
            if not fused or fused[0] != "BiasAdd" or len(fused) > 2 \
                    or (len(fused) == 2 and fused[1] not in ("Relu", "Relu6")):
                raise UnsupportedTFJSOp(f"{node['op']} {node['name']} with fused ops {fused}")
            bias = torch.from_numpy(np.asarray(self.const(node["input"][2]), np.float32).copy())
            act = fused[1].lower() if len(fused) == 2 else "none"
        strides = _attr(node, "strides", [1, 1, 1, 1])
        dil = _attr(node, "dilations", [1, 1, 1, 1])
        stride, dilation = (strides[1], strides[2]), (dil[1], dil[2])
        pads = self._pads(node, v.logical_shape, weight.shape[2:], stride, dilation)
        phys = self.in_layout(v, NCHW, node)
        step = Conv(node["name"], [phys], [node["name"] + ":0"],
                    torch.from_numpy(np.ascontiguousarray(weight)), bias, stride, dilation,
                    pads, groups, act)
        self.set(node, self.run_step(step, [(NCHW, True)])[0])

    def _pads(self, node, shape, kernel, stride, dilation=(1, 1)):
        padding = _attr(node, "padding", "VALID")
        if padding == "VALID":
            return 0, 0, 0, 0
        if padding != "SAME":
            raise UnsupportedTFJSOp(f"{node['op']} {node['name']} with padding {padding}")
        top, bottom = same_pads(shape[1], kernel[0], stride[0], dilation[0])
        left, right = same_pads(shape[2], kernel[1], stride[1], dilation[1])
        return top, bottom, left, right

    def _conv2d(self, node):
        self._conv(node, False)

    def _fused_conv2d(self, node):
        self._conv(node, False)

    def _depthwiseconv2dnative(self, node):
        self._conv(node, True)

    def _fuseddepthwiseconv2dnative(self, node):
        self._conv(node, True)

    def _maxpool(self, node):
        self._nhwc(node)
        v = self.value(node["input"][0], node)
        k, s = _attr(node, "ksize"), _attr(node, "strides")
        kernel, stride = (k[1], k[2]), (s[1], s[2])
        pads = self._pads(node, v.logical_shape, kernel, stride)
        phys = self.in_layout(v, NCHW, node)
        step = MaxPool(node["name"], [phys], [node["name"] + ":0"], kernel, stride, pads)
        self.set(node, self.run_step(step, [(NCHW, True)])[0])

    def _pad(self, node):
        v = self.value(node["input"][0], node)
        pads = np.asarray(self.const(node["input"][1])).astype(np.int64).reshape(-1, 2)
        value = float(np.asarray(self.const(node["input"][2])).reshape(())) \
            if node["op"] == "PadV2" else 0.0
        if not v.batched or pads[0].any():
            raise UnsupportedTFJSOp(f"{node['op']} {node['name']} pads the batch axis")
        phys_pads = pads[list(v.perm)]  # row i: pads of physical dim i
        torch_pads = tuple(int(p) for row in phys_pads[::-1] for p in row)
        step = Pad(node["name"], [v.phys], [node["name"] + ":0"], torch_pads, value)
        self.set(node, self.run_step(step, [(v.perm, True)])[0])

    _padv2 = _pad

    def _concatv2(self, node):
        refs, axis_ref = node["input"][:-1], node["input"][-1]
        if any(self.is_const(r) for r in refs):
            raise UnsupportedTFJSOp(f"ConcatV2 {node['name']} with a constant part")
        vals = [self.value(r, node) for r in refs]
        perm = vals[0].perm
        axis = int(self.const(axis_ref)) % len(perm)
        phys = [self.in_layout(v, perm, node) for v in vals]
        step = Concat(node["name"], phys, [node["name"] + ":0"], perm.index(axis))
        self.set(node, self.run_step(step, [(perm, True)])[0])

    def _splitv(self, node):
        x, sizes_ref, axis_ref = node["input"]
        v = self.value(x, node)
        if not v.batched:
            raise UnsupportedTFJSOp(f"SplitV {node['name']} on an unbatched tensor")
        axis = int(self.const(axis_ref)) % len(v.perm)
        if axis == 0:
            raise UnsupportedTFJSOp(f"SplitV {node['name']} along the batch axis")
        sizes = [int(s) for s in self.const(sizes_ref)]
        total = v.logical_shape[axis]
        if -1 in sizes:
            sizes[sizes.index(-1)] = total - (sum(sizes) + 1)
        names = [f"{node['name']}:{k}" for k in range(len(sizes))]
        step = Split(node["name"], [v.phys], names, sizes, v.perm.index(axis))
        outs = self.run_step(step, [(v.perm, True)] * len(sizes))
        for k, out in enumerate(outs):
            self.set(node, out, k)

    def _reshape(self, node):
        v = self.value(node["input"][0], node)
        if not v.batched:
            raise UnsupportedTFJSOp(f"Reshape {node['name']} of an unbatched tensor")
        target = [int(s) for s in np.asarray(self.const(node["input"][1])).reshape(-1)]
        if not target or target[0] != 1:
            raise UnsupportedTFJSOp(f"Reshape {node['name']} to {target} changes the batch axis")
        rest = target[1:]
        elements = int(np.prod(v.probe.shape))  # per batch item: the probe has batch 1
        if -1 in rest:
            i = rest.index(-1)
            rest[i] = elements // int(np.prod([s for j, s in enumerate(rest) if j != i]))
        elif int(np.prod(rest)) != elements and rest:
            # input size other than the shipped one: the last axis absorbs the difference
            rest[-1] = elements // int(np.prod(rest[:-1]))
        shape = [-1] + rest
        phys = self.in_layout(v, tuple(range(len(v.perm))), node)
        step = Reshape(node["name"], [phys], [node["name"] + ":0"], tuple(shape))
        self.set(node, self.run_step(step, [(tuple(range(len(shape))), True)])[0])

    def _resizebilinear(self, node):
        v = self.value(node["input"][0], node)
        if len(v.perm) != 4:
            raise UnsupportedTFJSOp(f"ResizeBilinear {node['name']} on a rank-{len(v.perm)} "
                                    "tensor")
        if _attr(node, "align_corners", False):
            align = True
        elif _attr(node, "half_pixel_centers", False):
            align = False
        else:
            raise UnsupportedTFJSOp(f"ResizeBilinear {node['name']} without half_pixel_centers "
                                    "or align_corners (legacy TF1 sampling)")
        size = tuple(int(s) for s in self.const(node["input"][1]))
        in_hw = v.logical_shape[1:3]
        self.resize_inputs[node["name"]] = in_hw
        if node["name"] in self.resize_ratio:
            ry, rx = self.resize_ratio[node["name"]]
            size = (int(round(in_hw[0] * ry)), int(round(in_hw[1] * rx)))
        phys = self.in_layout(v, NCHW, node)
        step = ResizeBilinear(node["name"], [phys], [node["name"] + ":0"], size, align)
        self.set(node, self.run_step(step, [(NCHW, True)])[0])


SUPPORTED_OPS = tuple(sorted(
    {"Const", "Placeholder", "Identity", "StopGradient", "Transpose", "Cast", "Unpack",
     "Squeeze", "ExpandDims", "Conv2D", "_FusedConv2D", "DepthwiseConv2dNative",
     "FusedDepthwiseConv2dNative", "MaxPool", "Pad", "PadV2", "ConcatV2", "SplitV", "Reshape",
     "ResizeBilinear", "SparseToDense (constant)", "Pack (constant)"} | set(_BINARY)
    | set(_UNARY)))


# ----------------------------------------------------------------------------------- folding


def fold_into_convs(steps: list[Step], keep: set[str]) -> list[Step]:
    """Fold a zero Pad of H/W into the conv that alone reads it, and a constant per-channel Add
    into the (activation-free) conv it alone follows: NanoDet (ONNX->TF) pads and adds its bias
    as separate ops around every conv. ``keep``: env keys that are outputs (never folded away).
    """
    readers: dict[str, int] = {}
    for st in steps:
        for i in st.inputs:
            readers[i] = readers.get(i, 0) + 1
    producer = {st.outputs[0]: st for st in steps if len(st.outputs) == 1}
    dropped: set[int] = set()
    for st in steps:
        if not isinstance(st, Conv) or len(st.inputs) != 1:
            continue
        pad = producer.get(st.inputs[0])
        if isinstance(pad, Pad) and pad.value == 0.0 and readers[st.inputs[0]] == 1 \
                and st.inputs[0] not in keep and len(pad.pads) == 8 and not any(pad.pads[4:]):
            left, right, top, bottom = pad.pads[:4]
            if st.pre_pad is not None:
                l0, r0, t0, b0 = st.pre_pad
            else:
                t0 = b0 = st.padding[0]
                l0 = r0 = st.padding[1]
            pads = (l0 + left, r0 + right, t0 + top, b0 + bottom)
            if pads[0] == pads[1] and pads[2] == pads[3]:
                st.pre_pad, st.padding = None, (pads[2], pads[0])
            else:
                st.pre_pad, st.padding = pads, (0, 0)
            st.inputs = list(pad.inputs)
            dropped.add(id(pad))
    for st in steps:
        if not (isinstance(st, Binary) and st.op == "add" and st.const is not None
                and not st.const_first):
            continue
        conv = producer.get(st.inputs[0])
        c = st.const
        if isinstance(conv, Conv) and conv.act == "none" and readers[st.inputs[0]] == 1 \
                and st.inputs[0] not in keep and id(conv) not in dropped and c.ndim == 4 \
                and tuple(c.shape) == (1, conv.weight.shape[0], 1, 1):
            bias = c.reshape(-1) if conv.bias is None else conv.bias + c.reshape(-1)
            conv.register_buffer("bias", bias.contiguous())
            conv.outputs = list(st.outputs)
            dropped.add(id(st))
    return [st for st in steps if id(st) not in dropped]


# ----------------------------------------------------------------------------------- module


def _prune(nodes: dict[str, dict], outputs: list[str]) -> list[dict]:
    """The nodes the outputs depend on, in dependency order (iterative DFS post-order)."""
    order, state = [], {}
    for out in outputs:
        name = _split_ref(out)[0]
        if name not in nodes:
            raise UserError(f"the graph has no tensor {out!r}")
        stack = [(name, False)]
        while stack:
            n, done = stack.pop()
            if done:
                if state.get(n) != 2:
                    state[n] = 2
                    order.append(nodes[n])
                continue
            if state.get(n):
                continue
            state[n] = 1
            stack.append((n, True))
            for ref in nodes[n].get("input", []):
                dep = _split_ref(ref.lstrip("^"))[0]
                if ref.startswith("^"):
                    continue
                if dep not in nodes:
                    raise UserError(f"node {n} reads {ref!r}, which is not in the graph")
                if not state.get(dep):
                    stack.append((dep, False))
    return order


class TFJSGraph(nn.Module):
    """A TFJS graph model pruned to ``outputs``, as a torch module.

    ``forward(x)`` takes the graph's single input in TF layout (e.g. NHWC, or NCHW for NanoDet)
    with any batch size (float; an int32 input such as MoveNet's is cast inside) and returns
    ``{output name: tensor}`` in TF layout (contiguous) with that batch size.
    """

    def __init__(self, model: dict, weights: dict[str, np.ndarray], outputs: list[str],
                 input_shape: tuple[int, ...] | None = None):
        super().__init__()
        nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
        placeholders = [n for n in nodes.values() if n["op"] == "Placeholder"]
        if len(placeholders) != 1:
            raise UnsupportedTFJSOp(f"graphs with {len(placeholders)} inputs (one is supported)")
        inp = placeholders[0]
        shipped = tuple(int(d.get("size", -1)) for d in
                        inp["attr"]["shape"]["shape"].get("dim", []))
        shipped = (1,) + shipped[1:] if shipped and shipped[0] in (-1, 1) else shipped
        shape = tuple(input_shape) if input_shape is not None else shipped
        if any(s < 1 for s in shape) or len(shape) != len(shipped) or shape[0] != 1:
            raise UserError(f"input shape {shape} does not fit the graph's {shipped} (batch 1)")
        ratio = None
        if shape != shipped:  # scale constant resize targets like their inputs
            ref = _Builder(nodes, weights, None)
            self._build(ref, nodes, inp, shipped, outputs)
            ratio = {}
            for name, (h, w) in ref.resize_inputs.items():
                size = [int(s) for s in ref.consts[_key(nodes[name]["input"][1])]]
                ratio[name] = (size[0] / h, size[1] / w)
        builder = _Builder(nodes, weights, ratio)
        self._build(builder, nodes, inp, shape, outputs)
        keep = {builder.values[_key(o)].phys for o in outputs if _key(o) in builder.values}
        self.steps = nn.ModuleList(fold_into_convs(builder.steps, keep))
        self.input_name = f"{inp['name']}:0"
        self.input_shape = shape
        self.output_names = list(outputs)
        self.output_keys, self.output_perms = [], []
        for out in outputs:
            v = builder.values.get(_key(out))
            if v is None or not v.batched:
                raise UnsupportedTFJSOp(f"output {out} is a constant or unbatched tensor")
            self.output_keys.append(v.phys)
            self.output_perms.append(_inverse(v.perm))
        self.output_shapes = {o: builder.values[_key(o)].logical_shape for o in outputs}

    @staticmethod
    def _build(builder: _Builder, nodes, inp, shape, outputs) -> None:
        probe = torch.zeros(shape)
        builder.probe_env = {f"{inp['name']}:0": probe}
        builder.values[f"{inp['name']}:0"] = Value(f"{inp['name']}:0", tuple(range(len(shape))),
                                                   True, probe)
        for node in _prune(nodes, outputs):
            if node["op"] == "Placeholder" and node["name"] == inp["name"]:
                continue
            builder.build(node)
        builder.probe_env = None

    @classmethod
    def from_file(cls, json_path: str | Path, outputs: list[str],
                  input_shape: tuple[int, ...] | None = None) -> "TFJSGraph":
        model, weights = read_model(json_path)
        return cls(model, weights, outputs, input_shape)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not torch.jit.is_tracing() and tuple(x.shape[1:]) != tuple(self.input_shape[1:]):
            raise ValueError(f"input shape {tuple(x.shape)} does not match the graph's "
                             f"(N, {', '.join(map(str, self.input_shape[1:]))})")
        env = {self.input_name: x}
        for step in self.steps:
            y = step(*[env[i] for i in step.inputs])
            if len(step.outputs) == 1:
                env[step.outputs[0]] = y
            else:
                for name, t in zip(step.outputs, y):
                    env[name] = t
        return {name: env[key].permute(perm).contiguous()
                for name, key, perm in zip(self.output_names, self.output_keys,
                                           self.output_perms)}


# ----------------------------------------------------------------------------------- loading


def source_digest(json_path: str | Path) -> str:
    """sha256 over model.json and its weight shards (what a cached export was built from)."""
    import hashlib

    json_path = Path(json_path)
    digest = hashlib.sha256(json_path.read_bytes())
    model = json.loads(json_path.read_text())
    for group in model.get("weightsManifest", []):
        for p in group["paths"]:
            digest.update(file_sha256(json_path.parent / p).encode())
    return digest.hexdigest()


def onnx_export_path(json_path: str | Path, outputs: list[str],
                     input_shape: tuple[int, ...]) -> Path:
    """``<model>.<tag>.onnx`` beside the model; the tag names the outputs and input size."""
    import hashlib

    tag = hashlib.sha256(json.dumps([list(outputs), list(input_shape)]).encode()).hexdigest()
    return Path(json_path).with_name(f"{Path(json_path).stem}.{tag[:10]}.onnx")


def _onnx_graph(json_path: Path, outputs: list[str], input_shape: tuple[int, ...],
                threads: int) -> OnnxGraph:
    """ONNX Runtime session of the pruned graph, exported once and cached (stamped)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    cache = onnx_export_path(json_path, outputs, input_shape)
    metadata = {"format": ONNX_CACHE_FORMAT, "tfjs_format": TFJS_EXPORT_FORMAT,
                "source_sha256": source_digest(json_path),
                "outputs": json.dumps(list(outputs)), "input_shape": json.dumps(input_shape)}
    from core.models import verify

    if cache.exists() and (why := verify.problem(cache)) is not None:
        log.warning("rebuilding ONNX cache %s: %s", cache, why)  # derived: rebuilt, never used damaged
        cache.unlink()
    if cache.exists():
        try:
            session = onnx_backend._session(str(cache), threads)
            if onnx_backend._stamp_matches(session, metadata):
                return OnnxGraph(session, [o.name for o in session.get_outputs()], threads)
            log.info("ONNX cache %s is stale; exporting again", cache)
        except (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph,
                ort_errors.InvalidArgument, ort_errors.NoSuchFile) as exc:
            log.warning("rebuilding unreadable ONNX cache %s (%s)", cache, exc)
    graph = TFJSGraph.from_file(json_path, outputs, input_shape).eval()
    example = torch.zeros((1, *input_shape[1:]))
    data = onnx_backend.export_onnx(graph, example, graph.output_names, metadata)
    onnx_backend._write_atomically(cache, data)
    verify.record(cache)
    log.info("exported %s (%d outputs) to ONNX (%s)", json_path.name, len(outputs), cache)
    return OnnxGraph(onnx_backend._session(data, threads), list(graph.output_names), threads)


class TFJSModel(nn.Module):
    """A loaded TFJS graph: input in the graph's TF layout (any batch), moved to the model's
    device; returns ``{output name: float32 tensor}`` without autograd."""

    def __init__(self, core, input_shape: tuple[int, ...], device: torch.device, backend: str,
                 description: str):
        super().__init__()
        self.core, self.input_shape, self.device, self.backend = core, input_shape, device, \
            backend
        self.description = description

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if tuple(x.shape[1:]) != tuple(self.input_shape[1:]):
            raise ValueError(f"expected input [N, {', '.join(map(str, self.input_shape[1:]))}], "
                             f"got {tuple(x.shape)}")
        with torch.no_grad():
            out = self.core(x.to(self.device, torch.float32, non_blocking=True))
        return {k: v.float() for k, v in out.items()}


_cache: dict[tuple, TFJSModel] = {}


def load_tfjs_model(json_path: str | Path, outputs: list[str],
                    input_shape: tuple[int, ...] | None = None, device="auto",
                    runtime=None) -> TFJSModel:
    """The pruned graph on ``device`` with ``runtime``'s backend (``core.models.zoo`` rules:
    auto = ONNX Runtime on CPU, torch.jit trace+freeze on CUDA); one instance per key."""
    from core.config import RuntimeConfig
    from core.models import zoo

    runtime = runtime or RuntimeConfig()
    dev = zoo.resolve_device(device if device is not None else runtime.device)
    backend = zoo.resolve_backend(runtime.backend, dev)
    json_path = Path(json_path)
    if input_shape is None:
        model = json.loads(json_path.read_text())
        inp = next(n for n in model["modelTopology"]["node"] if n["op"] == "Placeholder")
        input_shape = (1,) + tuple(int(d["size"]) for d in
                                   inp["attr"]["shape"]["shape"]["dim"])[1:]
    input_shape = (1,) + tuple(input_shape)[1:]
    threads = zoo.resolve_threads(runtime) if backend == "onnxruntime" else 0
    key = (json_path, tuple(outputs), input_shape, dev, backend, threads)
    with zoo._lock:
        if key not in _cache:
            if backend == "onnxruntime":
                core = _onnx_graph(json_path, list(outputs), input_shape, threads)
            else:
                core = TFJSGraph.from_file(json_path, list(outputs), input_shape).eval().to(dev)
                if backend == "channels_last":
                    core = core.to(memory_format=torch.channels_last)
                if backend == "jit":
                    import warnings

                    with torch.no_grad(), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        traced = torch.jit.trace(core, torch.zeros((1, *input_shape[1:]),
                                                                   device=dev),
                                                 strict=False, check_trace=False)
                        core = torch.jit.freeze(traced.eval())
            description = zoo.runtime_description(dev, RuntimeConfig(backend=backend,
                                                                      threads=threads), False)
            _cache[key] = TFJSModel(core, input_shape, dev, backend, description)
        return _cache[key]
