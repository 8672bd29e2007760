"""numba for every jitted kernel: one on-disk cache under the app's cache folder, and a warm-up
that compiles (or loads from that cache) each kernel's hot-path signatures before frames flow.

Why. A kernel compiled on first call stalls the frame that calls it: on a fresh install the pose
NMS took 12.7 s the first time two people were in view and the DARK decoder 4.6 s. numba's default
cache sits next to the sources (``__pycache__``), which an installed, read-only package cannot
write, so such an install recompiled on every launch.

Contract
    ``kernel(*signatures, **options)``  ``numba.njit(cache=True, **options)``. ``signatures`` are
        the argument types the hot path calls the kernel with (numba type strings, e.g.
        ``"(float32[:, :, ::1], int64)"``); ``warm_up`` compiles exactly those. Kernels only called
        from other kernels (inlined helpers) declare none: they are compiled into their callers.
    ``warm_up()``  imports ``KERNEL_MODULES`` and compiles every declared signature; with a warm
        cache this loads machine code (tens of ms), cold it compiles (~20 s on 2 cores).
        ``models install`` runs it, so the first launch finds the cache warm.
    ``warm_up_async()``  the same on a daemon thread, started once per process; returns the
        ``WarmUp`` handle whose ``wait(timeout)`` the pipeline's decoder blocks on before reading
        its first frame (cold cache: the start is late, no frame stalls mid-stream).

The cache folder is ``$NUMBA_CACHE_DIR`` when the user set it, else ``<cache_dir()>/numba``
(``core.assets.cache_dir``). Import this module before numba is imported by kernel modules; if
numba was already imported, its config is pointed at the folder directly (numba reads it when a
kernel is decorated).
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
import time

from core.assets import cache_dir

log = logging.getLogger("rmpe.jit")

if not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir() / "numba")

import numba  # noqa: E402  (after NUMBA_CACHE_DIR: numba reads it at import)
from numba.core import config as _numba_config  # noqa: E402

if not _numba_config.CACHE_DIR:  # numba was imported before us
    _numba_config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

__all__ = ["KERNEL_MODULES", "WarmUp", "kernel", "kernels", "warm_up", "warm_up_async"]

# Every module that defines kernels (tests check this list against the sources).
KERNEL_MODULES = ("core.heatmaps", "core.pose_nms")

_KERNELS: list[tuple[object, tuple[str, ...]]] = []


def kernel(*signatures: str, **options):
    """``numba.njit(cache=True, **options)``, compiled lazily; ``warm_up`` compiles ``signatures``."""
    def wrap(fn):
        dispatcher = numba.njit(cache=True, **options)(fn)
        if signatures:
            _KERNELS.append((dispatcher, tuple(signatures)))
        return dispatcher
    return wrap


def kernels() -> list[tuple[object, tuple[str, ...]]]:
    """(dispatcher, declared signatures) of every hot-path kernel of ``KERNEL_MODULES``."""
    for name in KERNEL_MODULES:
        importlib.import_module(name)
    return list(_KERNELS)


def warm_up() -> dict:
    """Compile or load every declared signature → {"seconds", "compiled", "loaded"} (counts)."""
    t0 = time.perf_counter()
    compiled = loaded = 0
    for dispatcher, signatures in kernels():
        for sig in signatures:
            misses = sum(dispatcher.stats.cache_misses.values())
            dispatcher.compile(sig)
            if sum(dispatcher.stats.cache_misses.values()) > misses:
                compiled += 1
            else:
                loaded += 1
    seconds = time.perf_counter() - t0
    log.info("numba kernels ready in %.2f s (%d compiled, %d loaded; cache %s)", seconds, compiled, loaded,
             os.environ["NUMBA_CACHE_DIR"])
    return {"seconds": seconds, "compiled": compiled, "loaded": loaded}


class WarmUp:
    """One background ``warm_up``; ``wait`` returns True once it has finished (or failed: a failed
    warm-up is logged and the kernels then compile on first call, as without it)."""

    def __init__(self):
        self._done = threading.Event()
        self.result: dict | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rmpe-jit-warm-up", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = warm_up()
        except BaseException as exc:  # noqa: BLE001 - never fatal: the kernels still compile lazily
            self.error = exc
            log.warning("numba warm-up failed (%s: %s); kernels compile on first use", type(exc).__name__, exc)
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


_lock = threading.Lock()
_async: WarmUp | None = None


def warm_up_async() -> WarmUp:
    """The process's background warm-up, started on the first call."""
    global _async
    with _lock:
        if _async is None:
            _async = WarmUp()
        return _async
