"""Ronchi–Perona error diagnosis of multi-person keypoint results (after coco-analyze).

1. Match detections to ground truth greedily by score at OKS >= 0.1 (each GT taken once).
2. Label every annotated keypoint of every matched detection good / jitter / inversion / swap /
   miss (rules and precedence in :mod:`core.evaluation.taxonomy`).
3. Unmatched detections are background false positives; unmatched GT people are false negatives.
   The optimal score of a detection is its best OKS with any GT person of its image.
4. Correct one error type at a time and re-run pycocotools at every OKS threshold:
   keypoint types move the affected keypoints onto their matched GT joint; ``score`` rescores every
   detection with its optimal score; ``background_fp`` removes background false positives;
   ``false_negative`` removes the missed GT people. ``all_keypoints`` fixes the four keypoint types
   together, ``all`` fixes everything.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO

from core.evaluation.coco_eval import NUM_KEYPOINTS, EvalResult, coco_from_dataset, evaluate
from core.evaluation.taxonomy import (ERROR_NAMES, INVERSION, JITTER, KEYPOINT_ERRORS, MISS, SWAP,
                                      UNLABELLED, classify_keypoints)
from core.oks import compute_oks, keypoint_similarity
from core.skeleton import COCO17, get_skeleton

MATCH_OKS = 0.1
CORRECTIONS = ("miss", "swap", "inversion", "jitter", "score", "background_fp", "false_negative",
               "all_keypoints", "all")
_TYPE_CODES = {"jitter": JITTER, "inversion": INVERSION, "swap": SWAP, "miss": MISS}


def is_ignored(ann: dict) -> bool:
    """pycocotools ignores crowd regions and people without annotated keypoints."""
    return bool(ann.get("iscrowd")) or ann.get("num_keypoints", 0) == 0


@dataclass
class Matching:
    """Per-result outcome of the OKS 0.1 matching and keypoint classification."""

    matched_gt: np.ndarray  # [N] GT annotation id, -1 for a background false positive
    match_oks: np.ndarray  # [N] OKS with the matched GT (0 when unmatched)
    optimal_scores: np.ndarray  # [N] best OKS with any GT person of the image
    labels: np.ndarray  # [N, K] int8 taxonomy codes, UNLABELLED when unmatched / not annotated
    gt_xy: np.ndarray  # [N, K, 2] matched GT joint positions (correction targets)
    false_negatives: np.ndarray  # GT annotation ids no detection matched


def _similarities(dt_xy: np.ndarray, gt_kp: np.ndarray, areas: np.ndarray, match: np.ndarray,
                  sigmas: np.ndarray, flip: np.ndarray):
    """KS of each matched detection keypoint with its own joint, its counterpart and other people's joints.

    dt_xy [M, K, 2]; gt_kp [G, K, 3]; areas [G]; match [M] row of gt_kp per detection.
    Returns ks_own, ks_inversion, ks_swap [M, K] (0 where the candidate does not exist).
    """
    K = gt_kp.shape[1]
    own = gt_kp[match]  # [M, K, 3]
    own_area = areas[match]
    ks_own = keypoint_similarity(((dt_xy - own[..., :2]) ** 2).sum(-1), own_area, sigmas)
    counterpart = own[:, flip]
    has_counterpart = (counterpart[..., 2] > 0) & (flip != np.arange(K))[None]
    ks_inv = keypoint_similarity(((dt_xy - counterpart[..., :2]) ** 2).sum(-1), own_area, sigmas[flip])
    ks_inv = np.where(has_counterpart, ks_inv, 0.0)
    # Other people: same joint and counterpart joint, each with that person's area.
    others = np.arange(len(gt_kp))[None, :] != match[:, None]  # [M, G]
    ks_swap = np.zeros_like(ks_own)
    for joints in (np.arange(K), flip):
        cand = gt_kp[:, joints]  # [G, K, 3]
        d2 = ((dt_xy[:, None] - cand[None, :, :, :2]) ** 2).sum(-1)  # [M, G, K]
        ks = keypoint_similarity(d2, areas[None, :], sigmas[joints])
        ok = others[..., None] & (cand[None, :, :, 2] > 0)
        if ok.shape[1]:
            ks_swap = np.maximum(ks_swap, np.where(ok, ks, 0.0).max(1))
    return ks_own, ks_inv, ks_swap


def match_and_classify(gt: COCO, results: list[dict], match_oks: float = MATCH_OKS) -> Matching:
    """Greedy (highest score first) OKS matching per image, then keypoint labels for every match."""
    sk = get_skeleton(COCO17)
    sigmas, flip, K = sk.sigmas, sk.flip_index, NUM_KEYPOINTS
    N = len(results)
    kp = np.asarray([r["keypoints"] for r in results], dtype=np.float64).reshape(N, K, 3)
    scores = np.asarray([r["score"] for r in results], dtype=np.float64)
    out = Matching(matched_gt=np.full(N, -1, np.int64), match_oks=np.zeros(N), optimal_scores=np.zeros(N),
                   labels=np.full((N, K), UNLABELLED, np.int8), gt_xy=np.zeros((N, K, 2)),
                   false_negatives=np.zeros(0, np.int64))
    by_image: dict[int, list[int]] = {}
    for i, r in enumerate(results):
        by_image.setdefault(r["image_id"], []).append(i)
    missed = []
    for img_id in gt.getImgIds():
        anns = [a for a in gt.imgToAnns.get(img_id, []) if not is_ignored(a)]
        dets = np.asarray(by_image.get(img_id, []), dtype=np.int64)
        if not anns:
            continue
        gt_kp = np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), K, 3)
        areas = np.asarray([a["area"] for a in anns], dtype=np.float64)
        boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float64)
        if len(dets) == 0:
            missed += [a["id"] for a in anns]
            continue
        oks = compute_oks(kp[dets], gt_kp, areas, boxes, sigmas)  # [D, G]
        out.optimal_scores[dets] = oks.max(1)
        taken = np.zeros(len(anns), dtype=bool)
        rows, cols = [], []
        for d in np.argsort(-scores[dets], kind="mergesort"):
            o = np.where(taken, -1.0, oks[d])
            g = int(np.argmax(o))
            if o[g] >= match_oks:
                taken[g] = True
                rows.append(d)
                cols.append(g)
        missed += [a["id"] for a, t in zip(anns, taken) if not t]
        if not rows:
            continue
        rows, cols = np.asarray(rows), np.asarray(cols)
        idx = dets[rows]
        ks_own, ks_inv, ks_swap = _similarities(kp[idx, :, :2], gt_kp, areas, cols, sigmas, flip)
        out.labels[idx] = classify_keypoints(ks_own, ks_inv, ks_swap, gt_kp[cols, :, 2] > 0)
        out.matched_gt[idx] = [anns[c]["id"] for c in cols]
        out.match_oks[idx] = oks[rows, cols]
        out.gt_xy[idx] = gt_kp[cols, :, :2]
    out.false_negatives = np.asarray(sorted(missed), dtype=np.int64)
    return out


def corrected(gt: COCO, results: list[dict], m: Matching, what: str) -> tuple[COCO, list[dict]]:
    """Ground truth and results with one error class corrected (see the module docstring)."""
    if what not in CORRECTIONS:
        raise ValueError(f"unknown correction {what!r}; known: {CORRECTIONS}")
    N = len(results)
    kp = np.asarray([r["keypoints"] for r in results], dtype=np.float64).reshape(N, NUM_KEYPOINTS, 3)
    scores = np.asarray([r["score"] for r in results], dtype=np.float64)
    keep = np.ones(N, dtype=bool)
    types = {"all_keypoints": KEYPOINT_ERRORS, "all": KEYPOINT_ERRORS}.get(what, (what,))
    fix = np.isin(m.labels, [_TYPE_CODES[t] for t in types if t in _TYPE_CODES])
    kp[..., :2] = np.where(fix[..., None], m.gt_xy, kp[..., :2])
    if what in ("score", "all"):
        scores = m.optimal_scores.copy()
    if what in ("background_fp", "all"):
        keep = m.matched_gt >= 0
    if what in ("false_negative", "all") and len(m.false_negatives):
        drop = set(m.false_negatives.tolist())
        dataset = dict(gt.dataset, annotations=[a for a in gt.dataset["annotations"] if a["id"] not in drop])
        gt = coco_from_dataset(dataset)
    new = [dict(results[i], keypoints=kp[i].reshape(-1).tolist(), score=float(scores[i]))
           for i in np.flatnonzero(keep)]
    return gt, new


@dataclass
class Diagnosis:
    matching: Matching
    evaluations: dict[str, EvalResult]  # "original" and every name in CORRECTIONS
    keypoint_names: tuple[str, ...]
    image_ids: np.ndarray  # [N] image id of each result
    match_oks_threshold: float = MATCH_OKS

    @property
    def oks_thresholds(self) -> np.ndarray:
        return self.evaluations["original"].oks_thresholds

    def per_keypoint_counts(self) -> np.ndarray:
        """[K, 5] number of keypoints of each label (ERROR_NAMES order) per joint."""
        labels = self.matching.labels
        return np.stack([(labels == c).sum(0) for c in range(len(ERROR_NAMES))], axis=1)

    def type_counts(self) -> dict[str, int]:
        return {n: int(c) for n, c in zip(ERROR_NAMES, self.per_keypoint_counts().sum(0))}

    def ap(self, name: str) -> float:
        return self.evaluations[name].stats["AP"]

    def ap_gain(self, name: str) -> np.ndarray:
        """AP gained by the correction at every OKS threshold."""
        return self.evaluations[name].ap_per_threshold - self.evaluations["original"].ap_per_threshold

    def summary_counts(self) -> dict:
        m = self.matching
        return {
            "detections": int(len(m.matched_gt)),
            "matched_detections": int((m.matched_gt >= 0).sum()),
            "background_fp": int((m.matched_gt < 0).sum()),
            "false_negatives": int(len(m.false_negatives)),
            "ground_truth": int(self.evaluations["original"].num_ground_truth),
            "keypoints": self.type_counts(),
        }

    def to_dict(self) -> dict:
        m = self.matching
        per_kp = self.per_keypoint_counts()
        return {
            "match_oks": self.match_oks_threshold,
            "precedence": "good (KS own >= .85) > jitter (KS own >= .5) > inversion (KS counterpart >= .5) "
                          "> swap (KS other person's same or counterpart joint >= .5) > miss",
            "oks_thresholds": [round(float(t), 2) for t in self.oks_thresholds],
            "counts": self.summary_counts(),
            "per_keypoint": {name: dict(zip(ERROR_NAMES, map(int, row)))
                             for name, row in zip(self.keypoint_names, per_kp)},
            "ap": {name: {"AP": ev.stats["AP"], "AP50": ev.stats["AP50"], "AP75": ev.stats["AP75"],
                          "per_threshold": [float(v) for v in ev.ap_per_threshold],
                          "gain_AP": ev.stats["AP"] - self.ap("original"),
                          "gain_per_threshold": [float(v) for v in self.ap_gain(name)]}
                   for name, ev in self.evaluations.items()},
            "false_negative_gt_ids": m.false_negatives.tolist(),
            "results": [{"index": i, "image_id": int(self.image_ids[i]), "matched_gt": int(m.matched_gt[i]),
                         "oks": round(float(m.match_oks[i]), 6),
                         "optimal_score": round(float(m.optimal_scores[i]), 6),
                         "labels": m.labels[i].tolist()} for i in range(len(m.matched_gt))],
        }


def diagnose(gt: COCO, results: list[dict], match_oks: float = MATCH_OKS,
             original: EvalResult | None = None) -> Diagnosis:
    """Full diagnosis of checked results (see :func:`core.evaluation.coco_eval.check_results`)."""
    m = match_and_classify(gt, results, match_oks)
    evaluations = {"original": original if original is not None else evaluate(gt, results)}
    for name in CORRECTIONS:
        evaluations[name] = evaluate(*corrected(gt, results, m, name))
    return Diagnosis(matching=m, evaluations=evaluations, keypoint_names=get_skeleton(COCO17).names,
                     image_ids=np.asarray([r["image_id"] for r in results], dtype=np.int64),
                     match_oks_threshold=match_oks)
