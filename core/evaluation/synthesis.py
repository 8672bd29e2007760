"""PoseFix-style keypoint error synthesiser: realistic erroneous poses from ground truth, with labels.

Every annotated joint of every person gets one label — good, jitter, inversion, swap or miss —
drawn from the PoseFix probability table (by joint group and the person's condition), then a
position drawn with the displacement rule d(k) = sqrt(-2·area·(2σ)²·ln k):

    good       own joint + U(0, d.85) in a uniform direction
    jitter     own joint + U(d.85, d.50)
    inversion  same person's counterpart + U(0, d.50), kept only where KS(own) < 0.5
    swap       an overlapping person's same or counterpart joint + U(0, d.50) (that person's
               area), kept only where KS(own) < 0.5 and KS(own counterpart) < 0.5
    miss       own joint + U(d.50, d.10), kept only where KS < 0.5 with the counterpart and with
               every other person's same or counterpart joint

so that the diagnosis (:mod:`core.evaluation.taxonomy`) recovers the injected label. Conditions
(PoseFix): valid joints = the person's annotated joints; two people overlap when their boxes
intersect; crowded = (≤10 valid and ≥1 overlapping person) or (≤15 valid and ≥3). Infeasible types
are zeroed and all five probabilities renormalised: inversion needs an annotated counterpart whose
position is not within KS 0.5 of the joint itself (so never for the nose), swap needs an overlapping
person's annotated same/counterpart joint outside KS 0.5 of the joint and of its counterpart.

Arrays are padded per image: keypoints [I, P, K, 3] (or one image [P, K, 3]), areas [I, P],
boxes [I, P, 4] x, y, w, h, present [I, P]. Randomness comes only from the numpy Generator passed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.evaluation.taxonomy import (GOOD, INVERSION, JITTER, KS_GOOD, KS_MISS_FLOOR, KS_NEAR, MISS, SWAP,
                                      UNLABELLED, displacement_for_ks)
from core.oks import keypoint_similarity
from core.skeleton import COCO17, get_skeleton

# PoseFix probability table (FACTS.md), groups A/B/C by joint name.
_FACE = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
_UPPER = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
_LOWER = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
GROUPS = {
    "jitter": {"A": ("nose", "left_knee", "right_knee", "left_ankle", "right_ankle"),
               "B": _FACE[1:] + _UPPER, "C": ("left_hip", "right_hip")},
    "miss": {"A": _FACE, "B": ("left_shoulder", "right_shoulder", "left_ankle", "right_ankle"),
             "C": ("left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                   "left_knee", "right_knee")},
    "inversion": {"A": _FACE, "B": _UPPER, "C": _LOWER},
    "swap": {"A": _FACE, "B": _UPPER, "C": _LOWER},
}
# condition -> (A, B, C)
TABLE = {
    "jitter": {"le10": (0.15, 0.20, 0.25), "other": (0.10, 0.15, 0.20)},
    "miss": {"le5": (0.15, 0.20, 0.25), "le10": (0.10, 0.13, 0.15), "other": (0.02, 0.05, 0.10)},
    "inversion": {"always": (0.01, 0.03, 0.06)},
    "swap": {"crowded": (0.02, 0.15, 0.10), "other": (0.01, 0.06, 0.03)},
}
_TYPE_CODE = {"jitter": JITTER, "inversion": INVERSION, "swap": SWAP, "miss": MISS}


def group_index(error: str, names=None) -> np.ndarray:
    """[K] group (0 = A, 1 = B, 2 = C) of every joint for one error type's grouping."""
    names = get_skeleton(COCO17).names if names is None else names
    lookup = {n: g for g, members in enumerate(GROUPS[error].values()) for n in members}
    return np.asarray([lookup[n] for n in names], dtype=np.int64)


def conditions(num_valid: np.ndarray, crowded: np.ndarray) -> dict[str, np.ndarray]:
    """Table condition (row name) of every person for each error type."""
    num_valid = np.asarray(num_valid)
    return {
        "jitter": np.where(num_valid <= 10, "le10", "other"),
        "miss": np.where(num_valid <= 5, "le5", np.where(num_valid <= 10, "le10", "other")),
        "inversion": np.full(num_valid.shape, "always"),
        "swap": np.where(np.asarray(crowded, bool), "crowded", "other"),
    }


def table_probabilities(num_valid: np.ndarray, crowded: np.ndarray, names=None) -> np.ndarray:
    """[..., K, 5] raw table probabilities (good = 1 − the four errors), before feasibility."""
    names = get_skeleton(COCO17).names if names is None else names
    cond = conditions(num_valid, crowded)
    out = np.zeros(np.shape(num_valid) + (len(names), 5))
    for error, code in _TYPE_CODE.items():
        groups = group_index(error, names)
        for row, values in TABLE[error].items():
            per_joint = np.asarray(values)[groups]  # [K]
            out[..., code] += np.where((cond[error] == row)[..., None], per_joint, 0.0)
    out[..., GOOD] = 1.0 - out[..., 1:].sum(-1)
    return out


def renormalise(probabilities: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Zero the infeasible types and rescale the rest to sum to one (all zero where nothing is feasible)."""
    p = np.where(feasible, probabilities, 0.0)
    total = p.sum(-1, keepdims=True)
    return np.divide(p, total, out=np.zeros_like(p), where=total > 0)


def _ks(d2, area, sigma):
    """Element-wise KS with core.oks' formula (area and sigma broadcast like d2)."""
    d2, area, sigma = np.broadcast_arrays(np.asarray(d2, np.float64), np.asarray(area, np.float64),
                                          np.asarray(sigma, np.float64))
    return keypoint_similarity(d2[..., None], area, sigma[..., None])[..., 0]


def _d2(a, b):
    return ((np.asarray(a) - np.asarray(b)) ** 2).sum(-1)


def _boxes_from_keypoints(kp: np.ndarray, vis: np.ndarray) -> np.ndarray:
    big = np.where(vis[..., None], kp[..., :2], np.inf)
    small = np.where(vis[..., None], kp[..., :2], -np.inf)
    lo, hi = big.min(-2), small.max(-2)
    ok = vis.any(-1)[..., None]
    return np.where(ok, np.concatenate([lo, hi - lo], -1), 0.0)


@dataclass
class SyntheticPoses:
    """Output of the synthesiser; leading shape matches the input ([P] or [I, P])."""

    keypoints: np.ndarray  # [..., K, 2] synthesised positions (unannotated joints at the person's mean)
    labels: np.ndarray  # [..., K] int8 injected label, UNLABELLED where not annotated / not present
    probabilities: np.ndarray  # [..., K, 5] renormalised probabilities each label was drawn from
    feasible: np.ndarray  # [..., K, 5] bool
    num_valid: np.ndarray  # [...] annotated joints per person
    crowded: np.ndarray  # [...] bool
    fallbacks: int  # misses that found no free spot within the tries (their label may not be recoverable)


@dataclass
class _Geometry:
    """Candidate positions for each (image, person, joint) used by the probabilities and the sampler."""

    xy: np.ndarray  # [I, P, K, 2]
    vis: np.ndarray  # [I, P, K]
    area: np.ndarray  # [I, P]
    cp_xy: np.ndarray  # [I, P, K, 2] same person's counterpart
    cp_vis: np.ndarray  # [I, P, K] counterpart exists and is annotated
    other_xy: np.ndarray  # [I, P, K, C, 2] other people's same (s=0) / counterpart (s=1) joints, C = 2Q
    other_vis: np.ndarray  # [I, P, K, C]
    other_area: np.ndarray  # [I, P, K, C]
    other_sigma: np.ndarray  # [I, P, K, C]
    swap_ok: np.ndarray  # [I, P, K, C] valid swap target: overlapping person, outside KS .5 of own & counterpart
    num_valid: np.ndarray  # [I, P]
    crowded: np.ndarray  # [I, P]
    feasible: np.ndarray  # [I, P, K, 5]


class ErrorSynthesizer:
    """Draws PoseFix error labels and positions for every annotated joint (COCO-17 layout).

    ``synth(keypoints, areas, rng, boxes=None, present=None)`` → :class:`SyntheticPoses`.
    """

    def __init__(self, max_tries: int = 64):
        sk = get_skeleton(COCO17)
        self.names = sk.names
        self.sigmas = sk.sigmas
        self.flip = sk.flip_index
        self.max_tries = max_tries

    # ---------------------------------------------------------------- geometry and probabilities
    def geometry(self, keypoints, areas, boxes=None, present=None) -> _Geometry:
        kp = np.asarray(keypoints, dtype=np.float64)
        I, P, K = kp.shape[:3]
        area = np.asarray(areas, dtype=np.float64).reshape(I, P)
        present = np.ones((I, P), bool) if present is None else np.asarray(present, bool).reshape(I, P)
        vis = (kp[..., 2] > 0) & present[..., None]
        xy = kp[..., :2]
        boxes = _boxes_from_keypoints(kp, vis) if boxes is None else np.asarray(boxes, np.float64).reshape(I, P, 4)
        sig, flip = self.sigmas, self.flip
        centre = flip == np.arange(K)

        cp_xy = xy[:, :, flip]
        cp_vis = vis & vis[:, :, flip] & ~centre
        # KS(own) of the counterpart position: inversion needs it below 0.5.
        ks_own_cp = _ks(_d2(cp_xy, xy), area[..., None], sig)

        # Other people: q != p, joints j = k (s=0) and j = flip[k] (s=1, only for paired joints).
        J = np.stack([np.arange(K), flip])  # [2, K]
        oxy = xy[:, :, J]  # [I, Q, 2, K, 2]
        ovis = vis[:, :, J] & np.stack([np.ones(K, bool), ~centre])[None, None]  # [I, Q, 2, K]
        not_self = ~np.eye(P, dtype=bool)[None] & present[:, :, None] & present[:, None, :]  # [I, P, Q]
        x1, y1 = boxes[..., 0], boxes[..., 1]
        x2, y2 = x1 + boxes[..., 2], y1 + boxes[..., 3]
        iw = np.minimum(x2[:, :, None], x2[:, None, :]) - np.maximum(x1[:, :, None], x1[:, None, :])
        ih = np.minimum(y2[:, :, None], y2[:, None, :]) - np.maximum(y1[:, :, None], y1[:, None, :])
        overlap = not_self & (iw > 0) & (ih > 0)  # [I, P, Q]

        other_xy = np.broadcast_to(oxy.transpose(0, 3, 1, 2, 4)[:, None], (I, P, K, P, 2, 2)).reshape(I, P, K, 2 * P, 2)
        other_vis = (ovis.transpose(0, 3, 1, 2)[:, None] & not_self[:, :, None, :, None]).reshape(I, P, K, 2 * P)
        other_area = np.broadcast_to(area[:, None, None, :, None], (I, P, K, P, 2)).reshape(I, P, K, 2 * P)
        other_sigma = np.broadcast_to(sig[J].T[None, None, :, None, :], (I, P, K, P, 2)).reshape(I, P, K, 2 * P)
        near = np.broadcast_to(overlap[:, :, None, :, None], (I, P, K, P, 2)).reshape(I, P, K, 2 * P)
        ks_own_o = _ks(_d2(other_xy, xy[:, :, :, None]), area[:, :, None, None], sig[None, None, :, None])
        ks_cp_o = _ks(_d2(other_xy, cp_xy[:, :, :, None]), area[:, :, None, None], sig[flip][None, None, :, None])
        swap_ok = other_vis & near & (ks_own_o < KS_NEAR) & (~cp_vis[..., None] | (ks_cp_o < KS_NEAR))

        num_valid = vis.sum(-1)
        num_overlap = overlap.sum(-1)
        crowded = present & (((num_valid <= 10) & (num_overlap >= 1)) | ((num_valid <= 15) & (num_overlap >= 3)))
        feasible = np.zeros((I, P, K, 5), bool)
        feasible[..., GOOD] = feasible[..., JITTER] = feasible[..., MISS] = vis
        feasible[..., INVERSION] = cp_vis & (ks_own_cp < KS_NEAR)
        feasible[..., SWAP] = vis & swap_ok.any(-1)
        return _Geometry(xy, vis, area, cp_xy, cp_vis, other_xy, other_vis, other_area, other_sigma, swap_ok,
                         num_valid, crowded, feasible)

    def probabilities(self, g: _Geometry) -> np.ndarray:
        """[I, P, K, 5] table probabilities with infeasible types zeroed and renormalised."""
        return renormalise(table_probabilities(g.num_valid, g.crowded, self.names), g.feasible)

    # ---------------------------------------------------------------- sampling
    @staticmethod
    def _ring(rng, centres, r_lo, r_hi):
        r = rng.uniform(r_lo, r_hi)
        a = rng.uniform(0.0, 2.0 * np.pi, size=np.shape(r))
        return centres + np.stack([r * np.cos(a), r * np.sin(a)], -1)

    def _rejection(self, rng, propose, forbid_xy, forbid_area, forbid_sigma, forbid_mask):
        """Vectorised rejection sampling of n points; a point is accepted when its KS with every
        masked forbidden centre is below 0.5. Returns points [n, 2], last proposals for failures, and
        the failure mask."""
        n = len(forbid_xy)
        pts = np.zeros((n, 2))
        todo = np.arange(n)
        for _ in range(self.max_tries):
            if not len(todo):
                break
            cand = propose(todo)
            ks = _ks(_d2(cand[:, None], forbid_xy[todo]), forbid_area[todo], forbid_sigma[todo])
            ok = ~((ks >= KS_NEAR) & forbid_mask[todo]).any(-1)
            pts[todo] = cand
            todo = todo[~ok]
        failed = np.zeros(n, bool)
        failed[todo] = True
        return pts, failed

    def __call__(self, keypoints, areas, rng: np.random.Generator, boxes=None, present=None) -> SyntheticPoses:
        kp = np.asarray(keypoints, dtype=np.float64)
        single = kp.ndim == 3
        if single:
            kp = kp[None]
            areas = np.asarray(areas)[None]
            boxes = None if boxes is None else np.asarray(boxes)[None]
            present = None if present is None else np.asarray(present)[None]
        g = self.geometry(kp, areas, boxes, present)
        probs = self.probabilities(g)
        I, P, K = g.vis.shape
        sig = np.broadcast_to(self.sigmas, (I, P, K))
        sig_cp = np.broadcast_to(self.sigmas[self.flip], (I, P, K))
        area = np.broadcast_to(g.area[..., None], (I, P, K))

        # Labels: inverse CDF over the five types; the last bin is closed so rounding never overflows.
        cdf = probs.cumsum(-1)
        cdf[..., -1] = 1.0
        labels = (rng.random((I, P, K))[..., None] >= cdf).sum(-1).astype(np.int8)
        labels[~g.vis] = UNLABELLED
        out = g.xy.copy()

        def d(ks, mask):
            return displacement_for_ks(ks, area[mask], sig[mask])

        for code, lo, hi in ((GOOD, None, KS_GOOD), (JITTER, KS_GOOD, KS_NEAR)):
            m = labels == code
            r_lo = 0.0 if lo is None else d(lo, m)
            out[m] = self._ring(rng, g.xy[m], r_lo, d(hi, m))

        # Inversion: around the counterpart, away from the own joint.
        m = labels == INVERSION
        if m.any():
            c, r = g.cp_xy[m], displacement_for_ks(KS_NEAR, area[m], sig_cp[m])
            pts, failed = self._rejection(rng, lambda t: self._ring(rng, c[t], 0.0, r[t]),
                                          g.xy[m][:, None], area[m][:, None], sig[m][:, None],
                                          np.ones((m.sum(), 1), bool))
            pts[failed] = c[failed]  # feasible by construction: the counterpart itself is outside KS .5
            out[m] = pts

        # Swap: around a random valid target of an overlapping person, away from own joint and counterpart.
        m = labels == SWAP
        if m.any():
            ok = g.swap_ok[m]  # [n, C]
            cxy, carea, csig = g.other_xy[m], g.other_area[m], g.other_sigma[m]
            chosen = np.zeros(len(ok), np.int64)

            def propose(t):
                cum = ok[t].cumsum(-1)
                pick = np.floor(rng.random(len(t)) * cum[:, -1])
                chosen[t] = (cum > pick[:, None]).argmax(-1)
                ct = chosen[t]
                r = displacement_for_ks(KS_NEAR, carea[t, ct], csig[t, ct])
                return self._ring(rng, cxy[t, ct], 0.0, r)

            fxy = np.stack([g.xy[m], g.cp_xy[m]], 1)
            farea = np.stack([area[m], area[m]], 1)
            fsig = np.stack([sig[m], sig_cp[m]], 1)
            fmask = np.stack([np.ones(len(ok), bool), g.cp_vis[m]], 1)
            pts, failed = self._rejection(rng, propose, fxy, farea, fsig, fmask)
            idx = np.flatnonzero(failed)
            pts[idx] = cxy[idx, chosen[idx]]  # a valid target itself is outside KS .5 of both
            out[m] = pts

        # Miss: in the KS (0.1, 0.5) ring of the own joint, away from every other candidate.
        fallbacks = 0
        m = labels == MISS
        if m.any():
            c = g.xy[m]
            r_lo, r_hi = d(KS_NEAR, m), d(KS_MISS_FLOOR, m)
            fxy = np.concatenate([g.cp_xy[m][:, None], g.other_xy[m]], 1)
            farea = np.concatenate([area[m][:, None], g.other_area[m]], 1)
            fsig = np.concatenate([sig_cp[m][:, None], g.other_sigma[m]], 1)
            fmask = np.concatenate([g.cp_vis[m][:, None], g.other_vis[m]], 1)
            pts, failed = self._rejection(rng, lambda t: self._ring(rng, c[t], r_lo[t], r_hi[t]),
                                          fxy, farea, fsig, fmask)
            fallbacks = int(failed.sum())
            out[m] = pts

        # Unannotated joints sit at the mean of the person's synthesised joints (no label, no effect on OKS).
        cnt = g.vis.sum(-1, keepdims=True)
        mean = np.where(g.vis[..., None], out, 0.0).sum(-2) / np.maximum(cnt, 1)
        out = np.where(g.vis[..., None] | (cnt[..., None] == 0), out, mean[:, :, None])

        res = SyntheticPoses(out, labels, probs, g.feasible, g.num_valid, g.crowded, fallbacks)
        if single:
            res = SyntheticPoses(out[0], labels[0], probs[0], g.feasible[0], g.num_valid[0], g.crowded[0], fallbacks)
        return res


# ---------------------------------------------------------------------- COCO datasets
def pad_by_image(dataset: dict):
    """Group a COCO keypoints dataset's annotations per image into padded arrays.

    Returns image_ids [I], ann_index [I, P] (index into dataset["annotations"], -1 = padding),
    keypoints [I, P, K, 3], areas [I, P], boxes [I, P, 4], present [I, P] (not crowd, has keypoints).
    """
    anns = dataset["annotations"]
    image_ids = [img["id"] for img in dataset["images"]]
    row = {iid: i for i, iid in enumerate(image_ids)}
    per_image: list[list[int]] = [[] for _ in image_ids]
    for j, a in enumerate(anns):
        per_image[row[a["image_id"]]].append(j)
    I, P = len(image_ids), max([len(v) for v in per_image] + [1])
    K = len(get_skeleton(COCO17).names)
    ann_index = np.full((I, P), -1, np.int64)
    kp = np.zeros((I, P, K, 3))
    areas = np.zeros((I, P))
    boxes = np.zeros((I, P, 4))
    for i, js in enumerate(per_image):
        for p, j in enumerate(js):
            a = anns[j]
            ann_index[i, p] = j
            kp[i, p] = np.asarray(a["keypoints"], np.float64).reshape(K, 3)
            areas[i, p] = a["area"]
            boxes[i, p] = a["bbox"]
    present = ann_index >= 0
    for i, p in zip(*np.nonzero(present)):
        a = anns[ann_index[i, p]]
        present[i, p] = not a.get("iscrowd") and (kp[i, p, :, 2] > 0).any()
    return np.asarray(image_ids), ann_index, kp, areas, boxes, present


def synthesize_results(dataset: dict, rng: np.random.Generator, synthesizer: ErrorSynthesizer | None = None,
                       score_noise: float = 0.1, exact_good: bool = False):
    """One detection per GT person of a (normalised) COCO dataset, with injected keypoint errors.

    The person score is the detection's OKS with its GT plus N(0, score_noise) (clipped to
    [0.01, 1]); ``exact_good`` puts good joints exactly on the GT (a set whose only errors are
    keypoint errors). Returns (results list, labels [N, K], GT annotation ids [N]).
    """
    from core.oks import compute_oks  # local: keeps the synthesiser importable on its own

    synthesizer = synthesizer or ErrorSynthesizer()
    image_ids, ann_index, kp, areas, boxes, present = pad_by_image(dataset)
    syn = synthesizer(kp, areas, rng, boxes=boxes, present=present)
    xy = syn.keypoints
    if exact_good:
        xy = np.where((syn.labels == GOOD)[..., None], kp[..., :2], xy)
    idx = np.argwhere(present)
    results, labels, gt_ids = [], [], []
    anns = dataset["annotations"]
    for i, p in idx:
        a = anns[ann_index[i, p]]
        det = np.concatenate([xy[i, p], np.where(syn.labels[i, p] >= 0, 1.0, 0.0)[:, None]], 1)
        oks = compute_oks(det[None], kp[i, p][None], np.asarray([areas[i, p]]), boxes[i, p][None])[0, 0]
        score = float(np.clip(oks + rng.normal(0.0, score_noise), 0.01, 1.0)) if score_noise > 0 else float(oks)
        results.append({"image_id": int(image_ids[i]), "category_id": a.get("category_id", 1),
                        "keypoints": det.reshape(-1).tolist(), "score": score})
        labels.append(syn.labels[i, p])
        gt_ids.append(a["id"])
    K = kp.shape[2]
    return results, np.asarray(labels, np.int8).reshape(-1, K), np.asarray(gt_ids, np.int64)
