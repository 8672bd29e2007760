"""CPU latency of the embedded BlazePose models per backend, against LiteRT (XNNPACK), same run.

    python bench/bench_models.py [--threads N] [--repeats R] [--batches 1 3 8]
                                 [--models detector landmark] [--busy-fps FPS]

For each model and batch size, every backend (eager, channels_last, jit = trace+freeze,
onnxruntime) and the LiteRT reference run once per round, rounds interleaved, so that load from
other processes hits all of them alike. LiteRT's graphs have a fixed batch of 1, so its batch-N
time is N invocations. ONNX Runtime and torch jit are also timed at 1 and 2 threads
(``onnxruntime_1t``, ``jit_2t``, ...; the unsuffixed rows use --threads).

``--busy-fps FPS`` keeps a thread of this process decoding the demo video scaled to width 640
(the pipeline's VideoFileSource) at FPS frames per second (0 = as fast as it can) while timing:
the competition a decode stage puts on the cores. Prints a table (median and min ms per call,
ms per item, ratio to LiteRT's median, median of the per-round ratios to LiteRT) and writes
bench/results/bench_models[_busy].json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Before torch loads OpenMP: spinning OpenMP workers on a busy (oversubscribed) CPU made 2-thread
# torch 10-30x slower here; sleeping workers cost little. Override with OMP_WAIT_POLICY=ACTIVE.
# ONNX Runtime's own pool follows the same variable (core/models/onnx_backend.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.assets import artefact_path  # noqa: E402
from core.config import RuntimeConfig  # noqa: E402
from core.models import zoo  # noqa: E402

TORCH_BACKENDS = ("eager", "channels_last", "jit")
THREAD_VARIANTS = (1, 2)
SPECS = {"detector": zoo.DETECTOR, "landmark": zoo.LANDMARK}


def litert_runner(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]

    def run(x: np.ndarray) -> None:
        for item in x:
            interp.set_tensor(index, item[None])
            interp.invoke()
    return run


class BusyDecoder(threading.Thread):
    """Decodes the demo video (width 640, RGB, looped) at ``fps`` (0 = flat out) until stopped."""

    def __init__(self, fps: float):
        super().__init__(daemon=True, name="busy-decode")
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.stop_event, self.frames = threading.Event(), 0

    def run(self):
        from core.io.sources import VideoFileSource

        path = artefact_path("demo_video")
        next_at = time.perf_counter()
        while not self.stop_event.is_set():
            with VideoFileSource(path, width=640) as source:
                while not self.stop_event.is_set() and source.read() is not None:
                    self.frames += 1
                    next_at += self.period
                    self.stop_event.wait(max(0.0, next_at - time.perf_counter()))


def model_calls(spec: zoo.ModelSpec, x: torch.Tensor, threads: int,
                has_ort: bool) -> dict[str, tuple[int, object]]:
    """Name -> (torch threads to set before timing, zero-argument call running one batch)."""
    calls = {}
    for backend in TORCH_BACKENDS:
        model = zoo.load_model(spec, "cpu", RuntimeConfig(backend=backend))
        calls[backend] = (threads, lambda m=model: m(x))
    for n in THREAD_VARIANTS:
        if n != threads:
            calls[f"jit_{n}t"] = (n, calls["jit"][1])
    if has_ort:  # an ONNX Runtime session's pool size is fixed when it is created
        for n in dict.fromkeys((threads, *THREAD_VARIANTS)):
            model = zoo.load_model(spec, "cpu", RuntimeConfig(backend="onnxruntime", threads=n))
            calls["onnxruntime" if n == threads else f"onnxruntime_{n}t"] = \
                (threads, lambda m=model: m(x))
    return calls


def time_calls(calls: dict[str, tuple[int, object]], warmup: int,
               repeats: int) -> dict[str, list[float]]:
    """Per-call ms over ``repeats`` interleaved rounds, torch's thread count set outside the
    timed region."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for threads, call in calls.values():
        torch.set_num_threads(threads)
        for _ in range(warmup):
            call()
    for _ in range(repeats):
        for name, (threads, call) in calls.items():
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - t0) * 1000)
    return samples


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 3, 8])
    parser.add_argument("--models", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--busy-fps", type=float, default=None, metavar="FPS",
                        help="decode the demo video in another thread at FPS (0 = flat out)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    busy = args.busy_fps is not None
    out = args.out or ROOT / "bench" / "results" / f"bench_models{'_busy' if busy else ''}.json"
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit's notices
    torch.set_num_threads(args.threads)
    has_ort = zoo.onnxruntime_available()
    threads_before = torch.get_num_threads()
    decoder = BusyDecoder(args.busy_fps) if busy else None
    if decoder is not None:
        decoder.start()
    load_before = os.getloadavg()
    started = time.perf_counter()

    rows = []
    for spec in (SPECS[m] for m in args.models):
        litert = litert_runner(artefact_path(spec.artefact), args.threads)
        for batch in args.batches:
            x = zoo.probe_input(spec, batch=batch)
            calls = model_calls(spec, x, args.threads, has_ort)
            calls["litert_xnnpack"] = (args.threads, lambda x_np=x.numpy(): litert(x_np))
            samples = time_calls(calls, args.warmup, args.repeats)
            ref_ms = samples["litert_xnnpack"]
            for name, ms in samples.items():
                med = statistics.median(ms)
                # per-round ratio: both timed seconds apart, so slow load drift cancels
                paired = statistics.median(a / b for a, b in zip(ms, ref_ms))
                rows.append({"model": spec.artefact, "batch": batch, "backend": name,
                             "median_ms": round(med, 2), "min_ms": round(min(ms), 2),
                             "ms_per_item": round(med / batch, 2),
                             "ratio_vs_litert": round(med / statistics.median(ref_ms), 2),
                             "paired_ratio_vs_litert": round(paired, 2)})

    torch.set_num_threads(threads_before)
    decode_fps = None
    if decoder is not None:
        decoder.stop_event.set()
        decoder.join()
        decode_fps = round(decoder.frames / (time.perf_counter() - started), 1)

    header = f"{'model':20s} {'batch':>5s} {'backend':16s} {'median ms':>10s} {'min ms':>8s} " \
             f"{'ms/item':>8s} {'x LiteRT':>8s} {'paired x':>8s}"
    print(f"CPU, {args.threads} torch/ORT/LiteRT threads unless suffixed, OMP_WAIT_POLICY="
          f"{os.environ['OMP_WAIT_POLICY']}, {args.repeats} interleaved rounds; "
          f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    if decoder is not None:
        print(f"busy: a thread decoded the demo video (width 640) at {decode_fps} fps meanwhile")
    if not has_ort:
        print("onnxruntime/onnx not installed: no ONNX Runtime rows")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:20s} {r['batch']:5d} {r['backend']:16s} {r['median_ms']:10.2f} "
              f"{r['min_ms']:8.2f} {r['ms_per_item']:8.2f} {r['ratio_vs_litert']:8.2f} "
              f"{r['paired_ratio_vs_litert']:8.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "bench_models", "reference": "litert_xnnpack",
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "threads": args.threads, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "repeats": args.repeats, "torch": torch.__version__, "onnxruntime": _version("onnxruntime"),
        "busy_decode_fps_target": args.busy_fps, "busy_decode_fps": decode_fps,
        "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0],
        "results": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
