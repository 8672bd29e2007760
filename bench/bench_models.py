"""CPU latency of the embedded BlazePose models per backend, against LiteRT (XNNPACK), same run.

    python bench/bench_models.py [--threads N] [--repeats R] [--batches 1 3 8]

For each model and batch size, every backend (eager, channels_last, jit = trace+freeze) and the
LiteRT reference run once per round, rounds interleaved, so that load from other processes hits
all of them alike. LiteRT's graphs have a fixed batch of 1, so its batch-N time is N invocations.
Prints a table (median and min ms per call, ms per item, ratio to LiteRT's median) and writes
bench/results/bench_models.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Before torch loads OpenMP: spinning OpenMP workers on a busy (oversubscribed) CPU made 2-thread
# torch 10-30x slower here; sleeping workers cost little. Override with OMP_WAIT_POLICY=ACTIVE.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.assets import artefact_path  # noqa: E402
from core.config import RuntimeConfig  # noqa: E402
from core.models import zoo  # noqa: E402

BACKENDS = ("eager", "channels_last", "jit")


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 3, 8])
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "bench_models.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit's notices
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    rows = []
    for spec in (zoo.DETECTOR, zoo.LANDMARK):
        runners = {b: zoo.load_model(spec, "cpu", RuntimeConfig(backend=b)) for b in BACKENDS}
        litert = litert_runner(artefact_path(spec.artefact), args.threads)
        for batch in args.batches:
            x = zoo.probe_input(spec, batch=batch)
            x_np = x.numpy()
            calls = {b: (lambda m=m: m(x)) for b, m in runners.items()}
            calls["litert_xnnpack"] = lambda: litert(x_np)
            samples: dict[str, list[float]] = {name: [] for name in calls}
            for name, call in calls.items():
                for _ in range(args.warmup):
                    call()
            for _ in range(args.repeats):
                for name, call in calls.items():
                    t0 = time.perf_counter()
                    call()
                    samples[name].append((time.perf_counter() - t0) * 1000)
            ref = statistics.median(samples["litert_xnnpack"])
            for name, ms in samples.items():
                med = statistics.median(ms)
                rows.append({"model": spec.artefact, "batch": batch, "backend": name,
                             "median_ms": round(med, 2), "min_ms": round(min(ms), 2),
                             "ms_per_item": round(med / batch, 2),
                             "ratio_vs_litert": round(med / ref, 2)})

    header = f"{'model':20s} {'batch':>5s} {'backend':15s} {'median ms':>10s} {'min ms':>8s} " \
             f"{'ms/item':>8s} {'x LiteRT':>8s}"
    print(f"CPU, {args.threads} torch/LiteRT threads, OMP_WAIT_POLICY="
          f"{os.environ['OMP_WAIT_POLICY']}, {args.repeats} interleaved rounds; "
          f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:20s} {r['batch']:5d} {r['backend']:15s} {r['median_ms']:10.2f} "
              f"{r['min_ms']:8.2f} {r['ms_per_item']:8.2f} {r['ratio_vs_litert']:8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "bench_models", "reference": "litert_xnnpack",
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "threads": args.threads, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "repeats": args.repeats, "torch": torch.__version__,
        "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0],
        "results": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
