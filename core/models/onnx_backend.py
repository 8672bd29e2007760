"""The TFLite graph executor exported to ONNX (cached) and run with ONNX Runtime on the CPU.

The export traces :class:`~core.models.tflite_graph.TFLiteGraph` with torch's TorchScript-based
ONNX exporter (dynamic batch), stamps the file with the source's sha256 and
``ONNX_CACHE_FORMAT`` and writes it atomically next to the .tflite file (``<name>.onnx``). A
cache whose stamp does not match, or that ONNX Runtime cannot read, is rebuilt. ``onnxruntime``
(and ``onnx``, which torch's exporter needs) are optional: :func:`onnxruntime_available` says
whether this backend can run.
"""
from __future__ import annotations

import importlib.util
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from core.models import file_sha256

log = logging.getLogger("rmpe.models")

# Bump when the export changes (opset, names, graph rewrites): older caches are then rebuilt.
ONNX_CACHE_FORMAT = "rmpe-onnx/1"
OPSET = 17
INPUT_NAME = "input"


def onnxruntime_available() -> bool:
    """True when both onnxruntime (to run) and onnx (torch's exporter needs it) are importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def onnx_cache_path(tflite_path: str | Path) -> Path:
    return Path(tflite_path).with_suffix(".onnx")


def export_onnx(graph: torch.nn.Module, example: torch.Tensor, output_names: list[str],
                metadata: dict[str, str]) -> bytes:
    """ONNX bytes of ``graph`` (one NHWC input, dict outputs) with a dynamic batch dimension.

    The exporter's shape inference gives the outputs made-up symbolic dims (one even reuses the
    batch symbol for a spatial dim), so the declared output shapes are rewritten from an eager
    run: ``batch`` then the concrete dims.
    """
    import onnx

    with torch.no_grad():
        shapes = {k: tuple(v.shape[1:]) for k, v in graph(example).items()}
        buf = io.BytesIO()
        with warnings.catch_warnings():
            # the legacy-exporter notice, and "Constant folding - Only steps=1" for F.pad's
            # reversed Slice, which ONNX Runtime folds itself at load
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (example,), buf, dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=list(output_names),
                              dynamic_axes={INPUT_NAME: {0: "batch"}})
    model = onnx.load_model_from_string(buf.getvalue())
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        del dims[:]
        dims.add().dim_param = "batch"
        for size in shapes[out.name]:
            dims.add().dim_value = size
    onnx.helper.set_model_props(model, metadata)
    return model.SerializeToString()


def _write_atomically(path: Path, data: bytes) -> None:
    from core.fileio import atomic_write_bytes  # unique temporary names: processes may export at once

    try:
        atomic_write_bytes(path, data)
        from core.models.verify import record

        record(path)  # what later loads check it against
    except OSError as exc:  # a read-only cache only costs the export time next load
        log.warning("could not write ONNX cache %s: %s", path, exc)


def session_options(threads: int):
    """Sequential execution on ``threads`` intra-op threads, every graph optimisation on.

    Worker spinning follows OMP_WAIT_POLICY (PASSIVE unless set, see core/__init__.py): on 2 shared
    cores spinning ORT workers made the landmark model up to 2x slower in bench/bench_models.py.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "1" if os.environ.get("OMP_WAIT_POLICY", "PASSIVE").upper() == "ACTIVE" else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.log_severity_level = 3  # errors only: its load-time notices are not ours to show
    return options


def _session(model: str | bytes, threads: int):
    import onnxruntime as ort

    return ort.InferenceSession(model, session_options(threads), providers=["CPUExecutionProvider"])


def _session_on(data: bytes, threads: int, outputs: tuple[str, ...] | None = None):
    """(session, its output names) on the serialised model ``data``, pruned to ``outputs`` when
    given: one session per load, on exactly the graph that runs."""
    if outputs is not None:
        data = _pruned(data, outputs)
    session = _session(data, threads)
    return session, [o.name for o in session.get_outputs()]


def _pruned(data: bytes, outputs: tuple[str, ...]) -> bytes:
    """``data`` cut down to the nodes ``outputs`` need (onnx's extractor), in the graph's output
    order, keeping its opsets and metadata (the cache stamp); ``data`` itself when that is all."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load_model_from_string(data)
    names = [o.name for o in model.graph.output]
    unknown = set(outputs) - set(names)
    if unknown:
        raise ValueError(f"no graph outputs named {sorted(unknown)}; outputs: {names}")
    if set(outputs) == set(names):
        return data
    cut = Extractor(model).extract_model([INPUT_NAME], [n for n in names if n in outputs])
    cut.ir_version = model.ir_version
    del cut.opset_import[:]
    cut.opset_import.extend(model.opset_import)
    onnx.helper.set_model_props(cut, {p.key: p.value for p in model.metadata_props})
    return cut.SerializeToString()


def _stamp_matches(session, metadata: dict[str, str]) -> bool:
    stamp = session.get_modelmeta().custom_metadata_map
    return all(stamp.get(k) == v for k, v in metadata.items())


class OnnxGraph:
    """A TFLiteGraph's ONNX Runtime session behind the executor's call signature:
    NHWC float32 CPU tensor in, ``{output name: tensor}`` (CPU, float32) out."""

    def __init__(self, session, output_names: list[str], threads: int):
        self.session, self.output_names, self.threads = session, output_names, threads

    @classmethod
    def from_tflite(cls, tflite_path: str | Path, example: torch.Tensor, threads: int,
                    outputs: tuple[str, ...] | None = None) -> "OnnxGraph":
        """Load ``tflite_path``'s ONNX cache (exporting it first when absent or stale). With
        ``outputs``, the session runs the graph pruned to those outputs (the cache keeps them all:
        one export serves every pruning)."""
        from google.protobuf.message import DecodeError
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        from core.models.tflite_graph import TFLiteGraph

        tflite_path = Path(tflite_path)
        cache = onnx_cache_path(tflite_path)
        metadata = {"format": ONNX_CACHE_FORMAT, "source_sha256": file_sha256(tflite_path)}
        if cache.exists():
            try:
                session, names = _session_on(cache.read_bytes(), threads, outputs)
                if _stamp_matches(session, metadata):
                    return cls(session, names, threads)
                log.info("ONNX cache %s is stale; exporting again", cache)
            except (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph,
                    ort_errors.InvalidArgument, ort_errors.NoSuchFile, DecodeError, OSError) as exc:
                log.warning("rebuilding unreadable ONNX cache %s (%s)", cache, exc)
        graph = TFLiteGraph.from_file(tflite_path).eval()
        data = export_onnx(graph, example, graph.output_names, metadata)
        _write_atomically(cache, data)
        log.info("exported %s to ONNX (%s)", tflite_path.name, cache)
        return cls(*_session_on(data, threads, outputs), threads)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # .numpy() of a contiguous CPU float32 tensor shares its memory: no copy on the way in
        feed = {INPUT_NAME: np.ascontiguousarray(x.detach().cpu().float().numpy())}
        outputs = self.session.run(None, feed)
        return {name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)}
