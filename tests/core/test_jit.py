"""numba kernels: cache folder under the app's cache, declared hot-path signatures, no compile once
frames flow (cold cache: the pipeline waits for the background warm-up before its first frame)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core import PROJECT_ROOT, jit


def _run(code: str, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), full.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_kernel_modules_list_every_numba_user():
    """Every module of core/trackers/training that jits is in KERNEL_MODULES and goes through
    ``core.jit.kernel`` (so its cache lands in the app's folder and warm_up knows its kernels)."""
    users = set()
    for package in ("core", "trackers", "training"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            if module == "core.jit":
                continue
            assert not re.search(r"numba\.(njit|jit|vectorize|guvectorize)|from numba import", text), \
                f"{module} jits without core.jit.kernel"
            if re.search(r"^@kernel\(", text, re.M):
                users.add(module)
    assert users == set(jit.KERNEL_MODULES)


@pytest.mark.parametrize("numba_first", [False, True])
def test_cache_folder_is_under_the_app_cache(tmp_path, numba_first):
    """$RMPE_LIVE_CACHE/numba (a read-only install never writes next to its sources), also when
    numba was imported before core.jit; a user's NUMBA_CACHE_DIR wins."""
    code = f"""
        {"import numba" if numba_first else ""}
        import core.heatmaps
        from numba.core import config
        print(config.CACHE_DIR)
        print(core.heatmaps._decode_serial.stats.cache_path)
    """
    out = _run(code, {"RMPE_LIVE_CACHE": str(tmp_path / "app")})
    assert out.returncode == 0, out.stderr
    folder, cache_path = out.stdout.split()
    assert Path(folder) == tmp_path / "app" / "numba" and Path(cache_path).is_relative_to(tmp_path / "app" / "numba")
    out = _run(code, {"RMPE_LIVE_CACHE": str(tmp_path / "app"), "NUMBA_CACHE_DIR": str(tmp_path / "mine")})
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.split()[0]) == tmp_path / "mine"


def test_hot_paths_call_only_the_declared_signatures(rng):
    """After warm_up, the decoder (serial, parallel, every method) and pose NMS (both presets, σ1 ≠ 1,
    one to many poses) add no specialisation: nothing left to compile on the hot path."""
    from core.heatmaps import METHODS, decode_heatmaps
    from core.pose_nms import get_params, pose_nms_arrays

    jit.warm_up()
    before = {d: len(d.signatures) for d, _ in jit.kernels()}
    assert all(before[d] == len(sigs) for d, sigs in jit.kernels())
    maps = rng.random((3, 17, 64, 48), dtype=np.float32)
    for method in METHODS:
        for parallel in (False, True):
            decode_heatmaps(maps, method, 11, parallel=parallel)
    decode_heatmaps(maps[:1, :1].copy(), "dark")
    for n in (2, 5):
        kp = np.concatenate([rng.uniform(0, 300, (n, 17, 2)), rng.uniform(0, 1, (n, 17, 1))], -1).astype(np.float32)
        boxes = np.concatenate([kp[..., :2].min(1), kp[..., :2].max(1)], -1)
        for params in (get_params("paper"), get_params("alphapose"), get_params("paper", sigma1=0.5)):
            pose_nms_arrays(kp, boxes, rng.uniform(0, 1, n), params)
    assert {d: len(d.signatures) for d, _ in jit.kernels()} == before


COLD_RUN = """
    import json, sys, time
    from numba.core import event

    compiles = []

    class Compiles(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            compiles.append(time.perf_counter())

    event.register("numba:compile", Compiles())
    from core.assets import artefact_path
    from core.cli import build_post_steps
    from core.config import Config
    from core.io import VideoFileSource
    from core.pipeline import Pipeline

    config = Config.load()
    frames = []
    source = VideoFileSource(artefact_path("demo_video"))
    source.seek(30)  # the walker joins the jumper at frames 40-47: pose NMS first runs there
    pipeline = Pipeline(source, config, render=False, max_frames=60, mode="file", on_result=frames.append,
                        post_steps=build_post_steps(config, source.fps))
    pipeline.start()
    pipeline.wait()
    source.close()
    first = min(f.captured_at for f in frames)
    print(json.dumps({
        "compiles_before": sum(t < first for t in compiles),
        "compiles_after": sum(t >= first for t in compiles),
        "ms": [f.timings["infer"] + f.timings["post"] for f in frames],
        "post_ms": [f.timings["post"] for f in frames],
        "people": [len(f.poses) for f in frames],
    }))
"""


@pytest.mark.slow
def test_cold_cache_run_never_waits_on_a_compile(tmp_path, blazepose_models, demo_video):
    """A fresh numba cache: the demo (frames 30-89, full resolution: at 640 px the walker is found
    too late) starts once the kernels are compiled, and no compile happens once frames flow.

    Two checks. The compile count after the first frame is exact: zero. And the frame where a
    second person first appears (pose NMS first runs there: a 12.7 s compile before this fix)
    spends at most 3× the median two-person post stage (NMS, tracking, smoothing) plus 100 ms.
    The post stage is compared, not the whole frame: that frame is a detection frame (tiled
    detection costs several median frames at full resolution) and on a loaded 2-core machine
    single frames swing by whole seconds (measured: 0.05-1.9 s at load 14). The 100 ms margin
    covers a few descheduled scheduler ticks; a compile there costs ≥ 5 s."""
    out = _run(COLD_RUN, {"NUMBA_CACHE_DIR": str(tmp_path / "numba")})
    assert out.returncode == 0, out.stderr[-2000:]
    run = json.loads(out.stdout.strip().splitlines()[-1])
    assert run["compiles_before"] > 0  # the cache was cold: the warm-up compiled
    assert run["compiles_after"] == 0
    post, people = np.array(run["post_ms"]), np.array(run["people"])
    assert len(post) == 60 and (people >= 2).any()
    first_two = int(np.argmax(people >= 2))
    typical = np.median(post[people >= 2])
    assert post[first_two] <= 3 * typical + 100, (first_two, post[first_two], typical)
