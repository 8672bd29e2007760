"""Which detector and SPPE choices can run on this machine: the model files each needs, and
whether those are installed. Torch-free and hash-free (a ``stat`` per file), so the CLI's help,
the ``models list`` command and the app's selectors can ask it at start.

A choice's models are the manifest names of PyPI artefacts (``assets/manifest.yaml``
``artefacts``) or of npm models (its ``npm_models``). ``hourglass`` and ``resnet`` need no
installed model but a training checkpoint (``sppe.weights``), so they are offered only with one.
"""
from __future__ import annotations

from core.config import choices

# (section, choice) -> the models it loads. tests/core/models/test_catalog.py checks that every
# choice of the config's Literal types is listed and that each name is in the manifest.
REQUIRES: dict[tuple[str, str], tuple[str, ...]] = {
    ("detector", "blazepose"): ("pose_detection",),
    ("detector", "hog"): (),  # OpenCV's built-in people detector
    ("detector", "nanodet"): ("nanodet",),
    ("detector", "nanodet+blazepose"): ("nanodet", "pose_detection"),
    ("sppe", "blazepose"): ("pose_landmark_full",),
    ("sppe", "blazepose-lite"): ("pose_landmark_lite",),
    ("sppe", "blazepose-full"): ("pose_landmark_full",),
    ("sppe", "blazepose-heavy"): ("pose_landmark_heavy",),
    ("sppe", "movenet-lightning"): ("movenet-lightning",),
    ("sppe", "movenet-thunder"): ("movenet-thunder",),
    ("sppe", "hourglass"): (),
    ("sppe", "resnet"): (),
}
NEEDS_CHECKPOINT = frozenset({"hourglass", "resnet"})
_SECTION_KEY = {"detector": "name", "sppe": "model"}


def model_installed(name: str) -> bool:
    """A PyPI artefact or npm model is present with its manifest sizes (no hashing: the file is
    verified where it is loaded)."""
    from core.models import npm_fetch

    npm = npm_fetch.npm_models()
    if name in npm:
        return npm_fetch.is_installed(npm[name])
    from core.assets import is_installed

    return is_installed(name)


def missing(section: str, choice: str) -> tuple[str, ...]:
    """The models ``choice`` of ``section`` ("detector" or "sppe") needs that are not installed."""
    return tuple(m for m in REQUIRES[(section, choice)] if not model_installed(m))


def installed_choices(section: str, has_checkpoint: bool = False) -> tuple[str, ...]:
    """The choices of ``section`` whose models are installed, in the config's order; the
    checkpoint SPPEs only when ``has_checkpoint``."""
    names = choices(section, _SECTION_KEY[section])
    return tuple(n for n in names if not missing(section, n)
                 and (has_checkpoint or section != "sppe" or n not in NEEDS_CHECKPOINT))


def describe_choices(section: str) -> str:
    """One line for ``--help``: the installed choices, then the others with how to add them."""
    names = choices(section, _SECTION_KEY[section])
    ready = [n for n in names if not missing(section, n) and n not in NEEDS_CHECKPOINT]
    absent = [n for n in names if missing(section, n)]
    text = f"installed: {', '.join(ready) or 'none'}"
    if section == "sppe":
        text += f"; with a checkpoint (--weights): {', '.join(sorted(NEEDS_CHECKPOINT))}"
    if absent:
        text += f"; not installed (python main.py models install --all): {', '.join(absent)}"
    return text
