"""Markdown report of an evaluation and its error diagnosis."""
from __future__ import annotations

import os
from pathlib import Path

from core.evaluation.coco_eval import EvalResult
from core.evaluation.diagnosis import CORRECTIONS, Diagnosis
from core.evaluation.taxonomy import ERROR_NAMES


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def diagnosis_table(diag: Diagnosis) -> str:
    """Plain-text table of AP after each correction (for the terminal)."""
    lines = [f"{'correction':<16}{'AP':>7}{'gain':>8}{'AP50':>7}{'AP75':>7}", "-" * 45]
    for n in ("original",) + CORRECTIONS:
        s = diag.evaluations[n].stats
        lines.append(f"{n:<16}{s['AP']:>7.3f}{s['AP'] - diag.ap('original'):>+8.3f}{s['AP50']:>7.3f}{s['AP75']:>7.3f}")
    c = diag.summary_counts()
    lines.append("keypoints: " + ", ".join(f"{k} {v}" for k, v in c["keypoints"].items())
                 + f"; background FP {c['background_fp']}, false negatives {c['false_negatives']}")
    return "\n".join(lines)


def write_report(path, result: EvalResult, diag: Diagnosis | None = None, plots: dict | None = None,
                 sources: dict | None = None) -> Path:
    path = Path(path)
    md = ["# Keypoint evaluation and error diagnosis", ""]
    for k, v in (sources or {}).items():
        md.append(f"- {k}: `{v}`")
    md += [f"- {result.num_detections} detections, {result.num_ground_truth} annotated GT people, "
           f"{result.num_images} images", "", "## COCO keypoint metrics (pycocotools)", ""]
    md += _table(["metric", "value"], [[k, f"{v:.3f}"] for k, v in result.stats.items()])
    if diag is not None:
        c = diag.summary_counts()
        total = max(sum(c["keypoints"].values()), 1)
        md += ["", "## Error diagnosis (Ronchi & Perona)", "",
               f"Detections matched to GT at OKS ≥ {diag.match_oks_threshold} (greedy by score): "
               f"{c['matched_detections']} of {c['detections']}; background false positives "
               f"{c['background_fp']}; false negatives {c['false_negatives']} of {c['ground_truth']} GT people.",
               "", "Keypoint labels (annotated keypoints of matched detections):", ""]
        md += _table(["label", "count", "share"],
                     [[n, c["keypoints"][n], f"{c['keypoints'][n] / total:.3f}"] for n in ERROR_NAMES])
        md += ["", "### AP gained by correcting each error class alone", ""]
        rows = []
        for n in ("original",) + CORRECTIONS:
            s = diag.evaluations[n].stats
            rows.append([n, f"{s['AP']:.3f}", f"{s['AP'] - diag.ap('original'):+.3f}", f"{s['AP50']:.3f}",
                         f"{s['AP75']:.3f}"])
        md += _table(["correction", "AP", "gain", "AP50", "AP75"], rows)
        md += ["", "AP gain at every OKS threshold:", ""]
        md += _table(["correction"] + [f"{t:.2f}" for t in diag.oks_thresholds],
                     [[n] + [f"{g:+.3f}" for g in diag.ap_gain(n)] for n in CORRECTIONS])
        md += ["", "### Labels per keypoint", ""]
        md += _table(["keypoint", *ERROR_NAMES],
                     [[k, *map(int, row)] for k, row in zip(diag.keypoint_names, diag.per_keypoint_counts())])
        md += ["", "### Method", "",
               "- A keypoint is labelled by its keypoint similarity (KS) with its own GT joint, the same "
               "person's left/right counterpart and other people's same or counterpart joints (their area). "
               "Precedence: good (own ≥ 0.85) > jitter (own ≥ 0.5) > inversion (counterpart ≥ 0.5) > "
               "swap (other person ≥ 0.5) > miss.",
               "- Keypoint corrections move the keypoints of that label onto their matched GT joint; `score` "
               "rescores every detection with its best OKS with any GT person; `background_fp` removes "
               "unmatched detections; `false_negative` removes unmatched GT people; `all_keypoints` fixes the "
               "four keypoint labels together; `all` fixes everything. Every AP comes from pycocotools."]
    if plots:
        md += ["", "## Plots", ""]
        for name, p in plots.items():
            rel = os.path.relpath(Path(p).resolve(), path.parent.resolve())
            md += [f"![{name}]({rel})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def comparison_table(before: Diagnosis, after: Diagnosis, names=("baseline", "results")) -> str:
    """Side-by-side diagnosis of two result sets on the same GT (e.g. unrefined and refined poses):
    keypoint label counts, AP / AP50 / AP75 and the AP each correction would still gain."""
    a, b = names
    lines = [f"{'':<20}{a:>12}{b:>12}{'change':>10}", "-" * 54]
    ca, cb = before.summary_counts()["keypoints"], after.summary_counts()["keypoints"]
    for n in ERROR_NAMES:
        lines.append(f"{n:<20}{ca[n]:>12d}{cb[n]:>12d}{cb[n] - ca[n]:>+10d}")
    for key in ("AP", "AP50", "AP75"):
        x, y = before.evaluations["original"].stats[key], after.evaluations["original"].stats[key]
        lines.append(f"{key:<20}{x:>12.3f}{y:>12.3f}{y - x:>+10.3f}")
    for n in ("jitter", "inversion", "swap", "miss"):
        x, y = before.ap(n) - before.ap("original"), after.ap(n) - after.ap("original")
        lines.append(f"{'fix ' + n + ' gain':<20}{x:>+12.3f}{y:>+12.3f}{y - x:>+10.3f}")
    return "\n".join(lines)
