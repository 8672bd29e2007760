"""Keypoint layouts (names, limbs, flip pairs, OKS sigmas) loaded from assets/skeletons.yaml."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import yaml

from core import ASSETS_DIR


@dataclass(frozen=True)
class Skeleton:
    name: str
    names: tuple[str, ...]
    limbs: np.ndarray  # [L, 2] int
    flip_pairs: np.ndarray  # [P, 2] int
    sigmas: np.ndarray | None  # [K] float64, COCO OKS sigmas where defined

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @property
    def flip_index(self) -> np.ndarray:
        """Permutation that maps keypoint k to its left/right counterpart (identity for centre joints)."""
        perm = np.arange(self.num_keypoints)
        perm[self.flip_pairs[:, 0]] = self.flip_pairs[:, 1]
        perm[self.flip_pairs[:, 1]] = self.flip_pairs[:, 0]
        return perm


@lru_cache(maxsize=None)
def _load() -> dict:
    with open(ASSETS_DIR / "skeletons.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


@lru_cache(maxsize=None)
def get_skeleton(name: str) -> Skeleton:
    data = _load()
    if name not in data:
        raise KeyError(f"unknown keypoint layout {name!r}; known: {sorted(data)}")
    d = data[name]
    sigmas = np.asarray(d["sigmas"], dtype=np.float64) if "sigmas" in d else None
    return Skeleton(
        name=name,
        names=tuple(d["names"]),
        limbs=np.asarray(d["limbs"], dtype=np.int64).reshape(-1, 2),
        flip_pairs=np.asarray(d["flip_pairs"], dtype=np.int64).reshape(-1, 2),
        sigmas=sigmas,
    )


COCO17 = "coco17"
BLAZEPOSE33 = "blazepose33"


def coco_sigmas() -> np.ndarray:
    return get_skeleton(COCO17).sigmas


def blazepose_to_coco_index() -> np.ndarray:
    return np.asarray(_load()[BLAZEPOSE33]["to_coco17"], dtype=np.int64)
