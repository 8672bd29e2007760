"""Fixtures for the model tests.

Reference outputs of TFJS graph models from the pure-JavaScript @tensorflow/tfjs, run by node.

The package is installed with npm into the test cache (``<cache>/test/tfjs-node``) on first use;
each result is stored under ``<cache>/test/tfjs-reference/<key>.npz``, the key hashing the model
files, the input, the tensor names, the tfjs version and the script, so the slow JS run (6-13 s)
happens once per cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from core.assets import cache_dir
from core.models.tfjs_graph import source_digest

TFJS_VERSION = "4.22.0"
SCRIPT = Path(__file__).with_name("tfjs_reference.js")


class NodeMissing(RuntimeError):
    pass


def node_modules() -> Path:
    """Folder holding @tensorflow/tfjs (installed with npm on first use)."""
    prefix = cache_dir() / "test" / "tfjs-node"
    modules = prefix / "node_modules"
    stamp = modules / "@tensorflow" / "tfjs" / "package.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("version") == TFJS_VERSION:
        return modules
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise NodeMissing("node/npm not on PATH")
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-save", "--no-audit",
                    "--no-fund", "--loglevel=error", f"@tensorflow/tfjs@{TFJS_VERSION}"],
                   check=True, timeout=900, stdout=subprocess.DEVNULL)
    return modules


def js_outputs(model_json: Path, x: np.ndarray, names: list[str], dtype: str = "float32"
               ) -> dict[str, np.ndarray]:
    """{name: output} of ``model.execute(x, names)`` in @tensorflow/tfjs (CPU backend)."""
    x = np.ascontiguousarray(x, np.float32)
    key = hashlib.sha256(json.dumps([source_digest(model_json), names, dtype, x.shape,
                                     TFJS_VERSION]).encode()
                         + x.tobytes() + SCRIPT.read_bytes()).hexdigest()[:20]
    store = cache_dir() / "test" / "tfjs-reference" / f"{model_json.stem}-{key}.npz"
    if store.exists():
        with np.load(store) as data:
            return {n: data[f"o{k}"] for k, n in enumerate(names)}
    modules = node_modules()
    with tempfile.TemporaryDirectory(prefix="rmpe-tfjs-") as tmp:
        tmp = Path(tmp)
        (tmp / "input.bin").write_bytes(x.tobytes())
        subprocess.run(["node", str(SCRIPT), str(model_json), str(tmp / "input.bin"),
                        ",".join(map(str, x.shape)), dtype, str(tmp), *names], check=True,
                       timeout=900, env={**os.environ, "NODE_PATH": str(modules)})
        shapes = json.loads((tmp / "shapes.json").read_text())
        outs = {n: np.fromfile(tmp / f"{k}.bin", np.float32).reshape(shapes[k])
                for k, n in enumerate(names)}
    store.parent.mkdir(parents=True, exist_ok=True)
    part = store.with_name(f".{store.name}.{os.getpid()}.npz")
    np.savez(part, **{f"o{k}": outs[n] for k, n in enumerate(names)})
    part.replace(store)
    return outs


@pytest.fixture(scope="session")
def tfjs_reference():
    """``js_outputs(model_json, x, names, dtype)``; fails (not skips) without node: CI has it."""
    try:
        node_modules()
    except NodeMissing:
        pytest.fail("node and npm are test requirements (the TFJS parity reference runs on them)")
    return js_outputs


@pytest.fixture(scope="session")
def npm_models():
    """{name: [paths]} of the npm models, skipping when not installed (make test installs them)."""
    from core.models import npm_fetch

    missing = [m.name for m in npm_fetch.npm_models().values() if not npm_fetch.is_installed(m)]
    if missing:
        pytest.skip(f"npm models not installed: {', '.join(missing)} "
                    "(python main.py models install --all)")
    return {name: npm_fetch.model_paths(name) for name in npm_fetch.npm_models()}
