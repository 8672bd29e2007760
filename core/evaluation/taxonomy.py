"""Ronchi–Perona keypoint error taxonomy shared by the diagnosis and the error synthesiser.

A detected keypoint is judged by its keypoint similarity (KS, as in OKS) with candidate ground-truth
joints: its own joint, the same person's left/right counterpart, and other people's same or
counterpart joints. Precedence (first rule that fires wins):

    good       KS(own) >= 0.85
    jitter     0.5 <= KS(own) < 0.85
    inversion  KS(same person's counterpart) >= 0.5
    swap       KS(another person's same or counterpart joint) >= 0.5
    miss       otherwise

Own-joint similarity comes first because a keypoint that localises its own joint is not an error of
identity; inversion comes before swap because the same person's mirror joint is the more specific
explanation. KS with another person's joint uses that person's area.
"""
from __future__ import annotations

import numpy as np

GOOD, JITTER, INVERSION, SWAP, MISS = range(5)
UNLABELLED = -1  # keypoint not annotated in the ground truth (or detection unmatched)
ERROR_NAMES = ("good", "jitter", "inversion", "swap", "miss")
KEYPOINT_ERRORS = ("jitter", "inversion", "swap", "miss")  # the types a correction can fix

KS_GOOD = 0.85  # own-joint KS at or above this: good
KS_NEAR = 0.5  # own KS at or above: jitter; a candidate at or above: inversion / swap
KS_MISS_FLOOR = 0.1  # synthesised misses stay within KS 0.1 of their own joint (PoseFix)


def displacement_for_ks(ks, area, sigma) -> np.ndarray:
    """Distance d at which KS = ks: d(k) = sqrt(-2·area·(2σ)²·ln k) (broadcasts)."""
    return np.sqrt(-2.0 * np.asarray(area, dtype=np.float64) * (2.0 * np.asarray(sigma, dtype=np.float64)) ** 2
                   * np.log(ks))


def classify_keypoints(ks_own: np.ndarray, ks_inversion: np.ndarray, ks_swap: np.ndarray,
                       annotated: np.ndarray) -> np.ndarray:
    """Labels (int8, UNLABELLED where not annotated) from the three best similarities per keypoint.

    Pass 0 for a candidate that does not exist (no counterpart, counterpart not annotated, nobody else).
    """
    labels = np.full(np.shape(ks_own), MISS, dtype=np.int8)
    labels[ks_swap >= KS_NEAR] = SWAP
    labels[ks_inversion >= KS_NEAR] = INVERSION
    labels[ks_own >= KS_NEAR] = JITTER
    labels[ks_own >= KS_GOOD] = GOOD
    labels[~np.asarray(annotated, dtype=bool)] = UNLABELLED
    return labels
