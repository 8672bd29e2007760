"""The embedded BlazePose models (detector, full landmark model) as ready-to-run models.

``load_detector_model(device)`` and ``load_landmark_model(device)`` load the fetched TFLite files
through :class:`~core.models.tflite_graph.TFLiteGraph` (decoded weights cached as safetensors),
pick an execution backend and keep one instance per (model, device, backend, precision, ONNX
Runtime threads) for the process. Every backend takes and returns torch tensors the same way.

Backends (``RuntimeConfig.backend``): ``eager`` (the graph executor as is), ``channels_last``
(the same with channels-last weights), ``jit`` (``torch.jit.trace`` + ``freeze``: weights become
constants, no per-op Python dispatch), ``onnxruntime`` (CPU only: the executor exported to ONNX
once, cached next to the .tflite, see core/models/onnx_backend.py, run with every graph
optimisation and ``RuntimeConfig.threads`` intra-op threads, 0 = torch's count).

Decision: ``auto`` = ``onnxruntime`` on CPU, ``jit`` on CUDA (and on CPU when onnxruntime/onnx are
not installed, logged). On CPU ONNX Runtime measured ~1.1x LiteRT XNNPACK at batch 1 where jit was
1.3-1.9x; figures and how to regenerate them: docs/backends.md (bench/bench_models.py).
Outputs stay on the model's device.

On CUDA with ``RuntimeConfig.half`` the models run in float16 (channels-last) only if a probe
shows the drift from float32 stays within ``HALF_REL_TOLERANCE`` of each checked output's range;
otherwise they stay float32 and the measured drift is logged.
"""
from __future__ import annotations

import functools
import logging
import threading
import typing
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from core.assets import artefact, artefact_path
from core.config import Backend, RuntimeConfig
from core.errors import UserError
from core.models.onnx_backend import OnnxGraph, onnxruntime_available
from core.models.tflite_graph import TFLiteGraph
from core.models.verify import check_model

log = logging.getLogger("rmpe.models")

BACKENDS = tuple(b for b in typing.get_args(Backend) if b != "auto")
AUTO_CPU_BACKEND = "onnxruntime"
AUTO_FALLBACK_BACKEND = "jit"  # auto on CUDA, and on CPU without onnxruntime
BACKEND_WORDS = {"eager": "eager", "channels_last": "eager, channels-last weights",
                 "jit": "torch.jit trace+freeze", "onnxruntime": "ONNX Runtime CPU"}
# fp16 is accepted on CUDA when max |fp16 - fp32| <= this fraction of max |fp32| for every
# checked output on the probe (seeded noise in the input range: harsher than real images).
HALF_REL_TOLERANCE = 0.005


@dataclass(frozen=True)
class ModelSpec:
    artefact: str  # name in assets/manifest.yaml
    input_size: tuple[int, int]  # (h, w) of the NHWC input
    input_range: tuple[float, float]
    tuple_outputs: tuple[str, ...] | None  # return these outputs as a tuple (else the dict)
    half_checked: tuple[str, ...]  # outputs whose fp16 drift decides whether fp16 is used
    outputs: tuple[str, ...] | None = None  # run the graph pruned to these outputs (None: all)


DETECTOR = ModelSpec("pose_detection", (224, 224), (-1.0, 1.0), ("Identity", "Identity_1"),
                     ("Identity", "Identity_1"))
# Identity_2 (segmentation logits) is not used by the pipeline, so the graph is pruned to the
# other outputs: the mask head was a third of the full model's time per crop on CPU.
LANDMARK = ModelSpec("pose_landmark_full", (256, 256), (0.0, 1.0), None,
                     ("Identity", "Identity_1", "Identity_3", "Identity_4"),
                     ("Identity", "Identity_1", "Identity_3", "Identity_4"))
# The BlazePose landmark ladder: lite and heavy come from npm (@mediapipe/pose), same I/O as full.
LANDMARKS = {"lite": replace(LANDMARK, artefact="pose_landmark_lite"), "full": LANDMARK,
             "heavy": replace(LANDMARK, artefact="pose_landmark_heavy")}
# The same without the heatmap head (Identity_3), for the default regression decode: the points,
# presence and world points only (bench/bench_models.py measures both).
REGRESSION_OUTPUTS = ("Identity", "Identity_1", "Identity_4")
LANDMARKS_REGRESSION = {v: replace(spec, outputs=REGRESSION_OUTPUTS, half_checked=REGRESSION_OUTPUTS)
                        for v, spec in LANDMARKS.items()}


def resolve_device(device: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """The one device rule (inference and training): ``auto``/None -> cuda when available, else
    cpu; a bare ``cuda`` becomes ``cuda:<local_rank>`` when a DDP rank is given. A device that is
    not auto/cpu/cuda[:N], or cuda without a GPU, is a UserError."""
    text = str(device if device is not None else "auto").lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text != "cpu" and not text.startswith("cuda"):
        raise UserError(f"unknown device {text!r}; choose auto, cpu or cuda")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise UserError(f"unknown device {text!r}; choose auto, cpu or cuda[:N]") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device cuda requested but torch sees no CUDA GPU; use --device cpu")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
    return dev


@functools.lru_cache(maxsize=1)
def _onnxruntime_usable() -> bool:
    usable = onnxruntime_available()
    if not usable:
        log.warning("onnxruntime/onnx not installed: backend auto uses %s on CPU",
                    AUTO_FALLBACK_BACKEND)
    return usable


def resolve_backend(backend: str, device: str | torch.device = "cpu") -> str:
    """``auto`` -> onnxruntime on CPU (jit when it is not installed), jit on CUDA."""
    cpu = torch.device(device).type == "cpu"
    if backend == "auto":
        return AUTO_CPU_BACKEND if cpu and _onnxruntime_usable() else AUTO_FALLBACK_BACKEND
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        if not cpu:
            raise UserError("backend onnxruntime runs on the CPU only; use --device cpu or "
                            "another backend")
        if not onnxruntime_available():
            raise UserError("backend onnxruntime needs the onnxruntime and onnx packages "
                            "(pip install onnxruntime onnx)")
    return backend


def resolve_threads(runtime: RuntimeConfig) -> int:
    """``RuntimeConfig.threads``, or torch's intra-op thread count when 0."""
    return int(runtime.threads) if runtime.threads and runtime.threads > 0 \
        else torch.get_num_threads()


def runtime_description(device: str | torch.device | None = "auto",
                        runtime: RuntimeConfig | None = None, half: bool | None = None) -> str:
    """One line for logs: device, threads, backend, precision."""
    runtime = runtime or RuntimeConfig()
    dev = resolve_device(device if device is not None else runtime.device)
    backend = resolve_backend(runtime.backend, dev)
    if half is None:
        half = dev.type == "cuda" and runtime.half and backend != "onnxruntime"
    where = (f"cuda:{torch.cuda.get_device_name(dev)}" if dev.type == "cuda"
             else f"cpu ({resolve_threads(runtime)} threads)")
    return f"{where}, {backend} ({BACKEND_WORDS[backend]}), {'float16' if half else 'float32'}"


class LoadedModel(nn.Module):
    """Checks the NHWC input, moves it to the model's device and dtype, runs the core module
    without autograd and returns float32 outputs (a tuple or the dict, per the spec)."""

    def __init__(self, core: nn.Module | OnnxGraph, spec: ModelSpec, device: torch.device,
                 backend: str, half: bool, threads: int = 0):
        super().__init__()
        self.core, self.spec, self.device, self.backend = core, spec, device, backend
        self.is_half = half
        self.dtype = torch.float16 if half else torch.float32
        self.input_size = spec.input_size
        self.description = runtime_description(
            device, RuntimeConfig(backend=backend, threads=threads), half)

    def forward(self, x: torch.Tensor):
        h, w = self.spec.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (h, w, 3):
            raise ValueError(f"{self.spec.artefact} expects NHWC [N, {h}, {w}, 3], "
                             f"got {tuple(x.shape)}")
        with torch.no_grad():
            out = self.core(x.to(self.device, self.dtype, non_blocking=True))
        out = {k: v.float() for k, v in out.items()}
        if self.spec.tuple_outputs is not None:
            return tuple(out[name] for name in self.spec.tuple_outputs)
        return out


def probe_input(spec: ModelSpec, batch: int = 2, device="cpu") -> torch.Tensor:
    """Seeded uniform noise over the model's input range."""
    gen = torch.Generator().manual_seed(0)
    lo, hi = spec.input_range
    x = torch.rand((batch, *spec.input_size, 3), generator=gen) * (hi - lo) + lo
    return x.to(device)


def half_drift(core32: nn.Module, core16: nn.Module, spec: ModelSpec,
               device: torch.device) -> dict[str, float]:
    """max |fp16 - fp32| / max |fp32| per checked output on the probe (inf if not finite)."""
    x = probe_input(spec, device=device)
    with torch.no_grad():
        ref, low = core32(x), core16(x.half())
    drift = {}
    for name in (n for n in spec.half_checked if n in ref):
        a, b = ref[name].float(), low[name].float()
        err = (b - a).abs().max().item() if torch.isfinite(b).all() else float("inf")
        drift[name] = err / max(a.abs().max().item(), 1e-6)
    return drift


def _build_core(path: Path, spec: ModelSpec, device: torch.device, backend: str,
                half: bool) -> nn.Module:
    graph = TFLiteGraph.from_file(path).eval().to(device)
    if spec.outputs is not None:
        graph.keep_outputs(spec.outputs)
    if half:
        graph = graph.half()
    if backend == "channels_last" or (backend == "jit" and device.type == "cuda"):
        graph = graph.to(memory_format=torch.channels_last)
    if backend != "jit":
        return graph
    example = probe_input(spec, batch=1, device=device).to(torch.float16 if half else torch.float32)
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13 marks trace/freeze deprecated in favour of torch.compile, which needs a C++
        # toolchain at run time and minutes of compiling on 2 cores; trace+freeze needs neither.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(graph, example, strict=False, check_trace=False)
        return torch.jit.freeze(traced.eval())


_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _load(path: Path, spec: ModelSpec, device: torch.device, backend: str, half: bool,
          threads: int) -> LoadedModel:
    if backend == "onnxruntime":  # CPU float32 only (resolve_backend checked the device)
        core = OnnxGraph.from_tflite(path, probe_input(spec, batch=1), threads, spec.outputs)
        return LoadedModel(core, spec, device, backend, False, threads)
    if half:
        core16 = _build_core(path, spec, device, backend, True)
        drift = half_drift(_build_core(path, spec, device, "eager", False), core16, spec, device)
        worst = max(drift.values())
        if worst <= HALF_REL_TOLERANCE:
            log.info("%s: float16 on %s (probe drift %.2e of range)", spec.artefact, device, worst)
            return LoadedModel(core16, spec, device, backend, True)
        log.warning("%s: float16 drift %.2e exceeds %.1e; running float32", spec.artefact,
                    worst, HALF_REL_TOLERANCE)
    return LoadedModel(_build_core(path, spec, device, backend, False), spec, device, backend,
                       False)


def model_path(name: str) -> tuple[Path, str]:
    """(installed file, its manifest sha256) of a model: a PyPI artefact, or the first file of an
    npm model (BlazePose landmark lite/heavy)."""
    from core.models import npm_fetch

    if name in npm_fetch.npm_models():
        return npm_fetch.model_paths(name)[0], npm_fetch.npm_model(name).files[0].sha256
    return artefact_path(name), artefact(name).sha256


def load_model(spec: ModelSpec, device="auto", runtime: RuntimeConfig | None = None) -> LoadedModel:
    runtime = runtime or RuntimeConfig()
    dev = resolve_device(device if device is not None else runtime.device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    backend = resolve_backend(runtime.backend, dev)
    if runtime.threads and runtime.threads > 0 and torch.get_num_threads() != runtime.threads:
        torch.set_num_threads(int(runtime.threads))  # process-wide: torch has one intra-op pool
    path, sha256 = model_path(spec.artefact)  # ModelsNotInstalled names the install command
    check_model(path, sha256)  # .tflite and its caches; cheap when stamped
    # ONNX Runtime owns its thread pool (fixed per session); torch backends use torch's
    threads = resolve_threads(runtime) if backend == "onnxruntime" else 0
    with _lock:  # one build per key even when several threads ask at once
        return _load(path, spec, dev, backend, bool(runtime.half and dev.type == "cuda"),
                     threads)


def load_detector_model(device="auto", runtime: RuntimeConfig | None = None) -> LoadedModel:
    """NHWC float [N,224,224,3] in [-1,1] -> (boxes [N,2254,12], logits [N,2254,1])."""
    return load_model(DETECTOR, device, runtime)


def load_landmark_model(device="auto", runtime: RuntimeConfig | None = None,
                        variant: str = "full", heatmaps: bool = True) -> LoadedModel:
    """NHWC float [N,256,256,3] in [0,1] -> {"Identity" [N,195], "Identity_1" [N,1],
    "Identity_3" [N,64,64,39] (only with ``heatmaps``), "Identity_4" [N,117]}; the segmentation
    mask (Identity_2) is pruned away. ``variant``: lite | full | heavy (the BlazePose landmark
    ladder)."""
    if variant not in LANDMARKS:
        raise UserError(f"unknown BlazePose landmark variant {variant!r}; choose one of: "
                        f"{', '.join(LANDMARKS)}")
    return load_model((LANDMARKS if heatmaps else LANDMARKS_REGRESSION)[variant], device, runtime)
