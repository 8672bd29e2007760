"""Diagnosis plots as PNG files (matplotlib's Agg canvas directly: no pyplot, no GUI backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.evaluation.diagnosis import CORRECTIONS, Diagnosis
from core.evaluation.taxonomy import ERROR_NAMES

COLOURS = {"good": "#8fbf8f", "jitter": "#f2c14e", "inversion": "#5b8fd9", "swap": "#b56bd6", "miss": "#d9534f",
           "score": "#7f7f7f", "background_fp": "#4fb3bf", "false_negative": "#a0522d",
           "all_keypoints": "#666666", "all": "#000000", "original": "#1f77b4"}


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def plot_error_frequencies(diag: Diagnosis, path) -> Path:
    """Stacked bars: share of each label among each joint's annotated, matched keypoints."""
    counts = diag.per_keypoint_counts().astype(np.float64)  # [K, 5]
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    names = diag.keypoint_names
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax = fig.add_subplot()
    bottom = np.zeros(len(names))
    for c, name in enumerate(ERROR_NAMES):
        if name == "good":
            continue  # errors only: good fills the rest of each bar
        ax.bar(np.arange(len(names)), share[:, c], bottom=bottom, color=COLOURS[name], label=name)
        bottom += share[:, c]
    ax.set_xticks(np.arange(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("fraction of matched, annotated keypoints")
    ax.set_title(f"Keypoint error frequencies per joint ({int(counts.sum())} keypoints)")
    ax.legend(ncols=4, loc="upper right")
    ax.set_ylim(0, max(0.05, float(bottom.max()) * 1.25))
    return _save(fig, path)


def plot_ap_improvement(diag: Diagnosis, path) -> Path:
    """Left: AP@[.5:.95] gained by each correction alone. Right: the gain at every OKS threshold."""
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    gains = [diag.ap(n) - diag.ap("original") for n in CORRECTIONS]
    left.barh(np.arange(len(CORRECTIONS)), gains, color=[COLOURS[n] for n in CORRECTIONS])
    left.set_yticks(np.arange(len(CORRECTIONS)), CORRECTIONS)
    left.invert_yaxis()
    for y, g in enumerate(gains):
        left.text(g, y, f" +{g:.3f}", va="center", fontsize=8)
    left.set_xlabel(f"AP gain (original AP {diag.ap('original'):.3f})")
    left.set_title("AP@[.5:.95] gained by correcting one error class")
    t = diag.oks_thresholds
    for n in CORRECTIONS:
        right.plot(t, diag.ap_gain(n), marker="o", ms=3, color=COLOURS[n], label=n,
                   ls="--" if n.startswith("all") else "-")
    right.set_xlabel("OKS threshold")
    right.set_ylabel("AP gain")
    right.set_title("AP gain per OKS threshold")
    right.legend(fontsize=7, ncols=2)
    right.grid(alpha=0.3)
    return _save(fig, path)


def plot_pr_curves(diag: Diagnosis, path, thresholds=(0.5, 0.75, 0.95)) -> Path:
    """Precision–recall at a few OKS thresholds: original and after each correction."""
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    axes = fig.subplots(1, len(thresholds))
    t_all = diag.oks_thresholds
    for ax, thr in zip(np.atleast_1d(axes), thresholds):
        ti = int(np.argmin(np.abs(t_all - thr)))
        for n in ("original",) + CORRECTIONS:
            ev = diag.evaluations[n]
            p = np.clip(ev.precision[ti], 0, None)
            ax.plot(ev.recall_thresholds, p, color=COLOURS[n], lw=2.2 if n == "original" else 1.1,
                    ls="--" if n.startswith("all") else "-",
                    label=f"{n} [{ev.ap_per_threshold[ti]:.3f}]")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"OKS {t_all[ti]:.2f}")
        ax.legend(fontsize=7, loc="lower left")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def write_plots(diag: Diagnosis, out_dir) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {
        "error_frequencies": plot_error_frequencies(diag, out_dir / "error_frequencies.png"),
        "ap_improvement": plot_ap_improvement(diag, out_dir / "ap_improvement.png"),
        "pr_curves": plot_pr_curves(diag, out_dir / "pr_curves.png"),
    }
