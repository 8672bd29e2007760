"""Pose-guided proposals generator (RMPE §3.3): realistic detector-box errors, conditioned on pose.

Fitting (``train pgpg``):
1. Normalise every ground-truth pose: keypoints relative to the GT box centre, divided by the
   box's larger side (unlabelled joints take that joint's mean normalised position).
2. k-means (sklearn ``KMeans``) over the normalised poses → ``atoms`` atomic poses.
3. Match detector boxes to GT boxes (Hungarian on IoU ≥ ``iou_threshold``) and express each
   match as the offset δ = ((x1d − x1g)/wg, (y1d − y1g)/hg, (x2d − x2g)/wg, (y2d − y2g)/hg),
   i.e. corner offsets normalised by the GT box size.
4. Per atom, a Gaussian mixture (sklearn ``GaussianMixture``, full covariance) of its δs. Atoms
   with fewer than 2 matches (or fewer than 2 per component) get fewer components; an atom with
   none uses the mixture fitted to all offsets.

Sampling: a training pose → its atom (nearest centre) → δ ~ that atom's mixture → proposal box.

Box sources (``pgpg.box_source``): ``detector`` runs our person detector (``core.detection``,
``pgpg.detector`` overrides ``DetectorConfig``) over the training images and caches the boxes
(JSON keyed by image, reused while the detector settings are unchanged); ``file`` reads a COCO
results JSON of person boxes (image_id, bbox, score); ``jitter`` draws δ ~ N(mean, std) per GT box
— for data no detector fires on, such as drawn synthetic people, where it gives pose-independent
box noise rather than a detector's error model.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from core.errors import UserError
from core.geometry import box_iou
from training.config import TrainConfig

log = logging.getLogger("rmpe.train")

PGPG_FORMAT = "rmpe-live-pgpg/1"


# ------------------------------------------------------------------------------------ geometry

def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)


def box_offsets(det_xyxy: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """δ [N, 4]: detection corners minus GT corners, over GT (w, h, w, h)."""
    gt = xywh_to_xyxy(gt_xywh)
    wh = np.asarray(gt_xywh, np.float64).reshape(-1, 4)[:, 2:]
    scale = np.concatenate([wh, wh], 1)
    return (np.asarray(det_xyxy, np.float64).reshape(-1, 4) - gt) / np.maximum(scale, 1e-6)


def apply_offsets(gt_xywh: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Proposal boxes (x, y, w, h) from GT boxes and δs (at least 2 px wide and tall)."""
    gt = np.asarray(gt_xywh, np.float64).reshape(-1, 4)
    scale = np.concatenate([gt[:, 2:], gt[:, 2:]], 1)
    xyxy = xywh_to_xyxy(gt) + np.asarray(offsets, np.float64).reshape(-1, 4) * scale
    x1, y1 = np.minimum(xyxy[:, 0], xyxy[:, 2] - 2), np.minimum(xyxy[:, 1], xyxy[:, 3] - 2)
    return np.stack([x1, y1, xyxy[:, 2] - x1, xyxy[:, 3] - y1], 1)


def normalise_poses(keypoints: np.ndarray, boxes_xywh: np.ndarray, fill: np.ndarray | None = None):
    """[N, K, 3] keypoints + [N, 4] boxes → ([N, 2K] normalised poses, fill [K, 2] used for gaps)."""
    kp = np.asarray(keypoints, np.float64)
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    scale = np.maximum(boxes[:, 2:].max(1), 1e-6)
    xy = (kp[..., :2] - centre[:, None]) / scale[:, None, None]
    labelled = kp[..., 2] > 0
    if fill is None:
        counts = labelled.sum(0)
        fill = np.where(counts[:, None] > 0, (xy * labelled[..., None]).sum(0) / np.maximum(counts, 1)[:, None], 0.0)
    xy = np.where(labelled[..., None], xy, fill[None])
    return xy.reshape(len(kp), -1), fill


# ------------------------------------------------------------------------------------ model

class PGPGModel:
    """Atomic poses and per-atom Gaussian mixtures of normalised box offsets."""

    def __init__(self, centres: np.ndarray, fill: np.ndarray, mixtures: list[dict], fallback: dict,
                 counts: list[int], layout: str = "coco17", info: dict | None = None):
        self.centres = np.asarray(centres, np.float64)  # [A, 2K]
        self.fill = np.asarray(fill, np.float64)  # [K, 2]
        self.mixtures = [_mixture_arrays(m) for m in mixtures]
        self.fallback = _mixture_arrays(fallback)
        self.counts = list(counts)
        self.layout = layout
        self.info = info or {}

    @property
    def num_atoms(self) -> int:
        return len(self.centres)

    def atoms_of(self, keypoints: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
        poses, _ = normalise_poses(np.asarray(keypoints).reshape(-1, *self.fill.shape[:1], 3), boxes_xywh, self.fill)
        d = ((poses[:, None] - self.centres[None]) ** 2).sum(-1)
        return d.argmin(1)

    def mixture(self, atom: int) -> dict:
        m = self.mixtures[atom]
        return m if m is not None else self.fallback

    def mean_offset(self, atom: int) -> np.ndarray:
        m = self.mixture(atom)
        return (m["weights"][:, None] * m["means"]).sum(0)

    def sample_offsets(self, atom: int, n: int, rng: np.random.Generator) -> np.ndarray:
        m = self.mixture(atom)
        comp = rng.choice(len(m["weights"]), size=n, p=m["weights"])
        out = np.empty((n, 4))
        for c in np.unique(comp):
            sel = comp == c
            out[sel] = rng.multivariate_normal(m["means"][c], m["covariances"][c], size=int(sel.sum()),
                                               method="cholesky")
        return out

    def sample(self, keypoints: np.ndarray, box_xywh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One proposal box (x, y, w, h) for a person (keypoints [K, 3], GT box)."""
        atom = int(self.atoms_of(np.asarray(keypoints)[None], np.asarray(box_xywh)[None])[0])
        return apply_offsets(box_xywh, self.sample_offsets(atom, 1, rng))[0]

    def to_dict(self) -> dict:
        plain = lambda m: None if m is None else {k: np.asarray(v).tolist() for k, v in m.items()}  # noqa: E731
        return {"format": PGPG_FORMAT, "layout": self.layout, "centres": self.centres.tolist(),
                "fill": self.fill.tolist(), "mixtures": [plain(m) for m in self.mixtures],
                "fallback": plain(self.fallback), "counts": self.counts, "info": self.info}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from core.fileio import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PGPGModel":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"PGPG model not found: {path} (train one with: python main.py train pgpg)")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is not a PGPG model: {exc}") from None
        if not isinstance(d, dict) or d.get("format") != PGPG_FORMAT:
            raise UserError(f"{path} is not a PGPG model (format {PGPG_FORMAT})")
        return cls(d["centres"], d["fill"], d["mixtures"], d["fallback"], d["counts"], d.get("layout", "coco17"),
                   d.get("info"))


def _mixture_arrays(m) -> dict | None:
    if m is None:
        return None
    w = np.asarray(m["weights"], np.float64)
    return {"weights": w / w.sum(), "means": np.asarray(m["means"], np.float64),
            "covariances": np.asarray(m["covariances"], np.float64)}


def _fit_mixture(x: np.ndarray, components: int, seed: int) -> dict | None:
    from sklearn.mixture import GaussianMixture

    n = len(x)
    if n < 2:
        return None
    k = max(1, min(components, n // 2))
    gm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-6, random_state=seed, n_init=2)
    gm.fit(x)
    return {"weights": gm.weights_, "means": gm.means_, "covariances": gm.covariances_}


def fit_pgpg(keypoints: np.ndarray, gt_boxes: np.ndarray, det_boxes_xyxy: np.ndarray, atoms: int = 8,
             components: int = 3, seed: int = 0, layout: str = "coco17", info: dict | None = None) -> PGPGModel:
    """Fit from matched pairs: keypoints [N, K, 3], GT boxes [N, 4] xywh, detections [N, 4] xyxy."""
    from sklearn.cluster import KMeans

    n = len(keypoints)
    if n < atoms:
        raise UserError(f"PGPG: {n} matched people, fewer than pgpg.atoms ({atoms}); lower atoms or add data")
    poses, fill = normalise_poses(keypoints, gt_boxes)
    km = KMeans(n_clusters=atoms, n_init=10, random_state=seed).fit(poses)
    offsets = box_offsets(det_boxes_xyxy, gt_boxes)
    labels = km.labels_
    mixtures, counts = [], []
    for a in range(atoms):
        sel = offsets[labels == a]
        counts.append(int(len(sel)))
        mixtures.append(_fit_mixture(sel, components, seed))
    fallback = _fit_mixture(offsets, components, seed)
    return PGPGModel(km.cluster_centers_, fill, mixtures, fallback, counts, layout, info)


# ------------------------------------------------------------------------------------ box sources

def match_detections(gt_xywh: np.ndarray, det_xyxy: np.ndarray, iou_threshold: float) -> list[tuple[int, int]]:
    """Hungarian matching of one image's GT boxes to detections (pairs with IoU ≥ threshold)."""
    if len(gt_xywh) == 0 or len(det_xyxy) == 0:
        return []
    iou = box_iou(xywh_to_xyxy(gt_xywh), det_xyxy)
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold]


def detections_from_file(path: str | Path) -> dict[int, np.ndarray]:
    """COCO results JSON of boxes → {image_id: [D, 4] xyxy} (person category or none given)."""
    from core.evaluation.coco_eval import read_json

    data = read_json(path, "detections")
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of detections with image_id and bbox")
    out: dict[int, list] = {}
    for i, d in enumerate(data):
        if not isinstance(d, dict) or "image_id" not in d or len(d.get("bbox", [])) != 4:
            raise UserError(f"{path}: detection {i} needs image_id and bbox [x, y, w, h]")
        if d.get("category_id", 1) != 1:
            continue
        out.setdefault(int(d["image_id"]), []).append(xywh_to_xyxy(d["bbox"])[0])
    return {k: np.asarray(v) for k, v in out.items()}


def run_detector(images_dir: Path, images: list[dict], detector_overrides: dict, cache: Path, device,
                 info=None, progress: bool = True) -> dict[int, np.ndarray]:
    """Detector boxes for every image, cached in ``cache`` (JSON) per detector settings.

    Under DDP every rank detects its share of the images and the results are gathered.
    """
    import cv2

    from core.config import Config
    from core.detection import make_detector
    from training.ddp import DistInfo, barrier, gather_lists

    info = info or DistInfo(device=device)
    det_cfg = Config().update({"detector": dict(detector_overrides)}).detector  # unknown keys: UserError
    key = json.dumps(asdict(det_cfg), sort_keys=True)
    if cache.is_file():
        try:
            stored = json.loads(cache.read_text())
        except json.JSONDecodeError:
            stored = {}
        if stored.get("detector") == key and len(stored.get("boxes", {})) == len(images):
            return {int(k): np.asarray(v, np.float64).reshape(-1, 4) for k, v in stored["boxes"].items()}
    detector = make_detector(det_cfg, device)
    mine = images[info.rank::info.world_size]
    it = mine
    if progress and info.is_main:
        from tqdm import tqdm

        it = tqdm(mine, desc="detecting people", unit="img")
    found = []
    for img in it:
        frame = cv2.imread(str(images_dir / img["file_name"]), cv2.IMREAD_COLOR)
        if frame is None:
            raise UserError(f"cannot read image {images_dir / img['file_name']}")
        dets = detector(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        found.append((int(img["id"]), dets.boxes.astype(np.float64).tolist()))
    found = gather_lists(found, info)
    boxes = {k: np.asarray(v, np.float64).reshape(-1, 4) for k, v in found}
    if info.is_main:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"detector": key, "boxes": {str(k): v.tolist() for k, v in boxes.items()}}))
    barrier(info)
    return boxes


def jitter_detections(anns: list[dict], mean: np.ndarray, std: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[int, list] = {}
    for a in anns:
        d = rng.normal(mean, std)
        out.setdefault(a["image_id"], []).append(xywh_to_xyxy(apply_offsets(a["bbox"], d))[0])
    return {k: np.asarray(v) for k, v in out.items()}


def collect_pairs(data: dict, detections: dict[int, np.ndarray], min_keypoints: int, iou_threshold: float,
                  num_keypoints: int = 17):
    """Matched (keypoints [N, K, 3], GT boxes [N, 4] xywh, detections [N, 4] xyxy) and the GT count."""
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        kp = np.asarray(a.get("keypoints", []), np.float64)
        if a.get("iscrowd", 0) or kp.size != 3 * num_keypoints or (kp.reshape(-1, 3)[:, 2] > 0).sum() < min_keypoints:
            continue
        by_image.setdefault(a["image_id"], []).append(a)
    kps, gts, dets = [], [], []
    total = 0
    for image_id, anns in by_image.items():
        total += len(anns)
        gt = np.asarray([a["bbox"] for a in anns], np.float64)
        for r, c in match_detections(gt, detections.get(image_id, np.zeros((0, 4))), iou_threshold):
            kps.append(np.asarray(anns[r]["keypoints"], np.float64).reshape(num_keypoints, 3))
            gts.append(gt[r])
            dets.append(detections[image_id][c])
    if not kps:
        return np.zeros((0, num_keypoints, 3)), np.zeros((0, 4)), np.zeros((0, 4)), total
    return np.asarray(kps), np.asarray(gts), np.asarray(dets), total


# ------------------------------------------------------------------------------------ command

def run_pgpg(cfg: TrainConfig) -> dict:
    """``train pgpg``: box source → matches → atoms + mixtures → model JSON. Returns a summary."""
    from core.skeleton import get_skeleton
    from training.common import resolve_sources, set_threads
    from training.datasets.coco_keypoints import load_coco
    from training.ddp import cleanup, init_distributed

    threads = set_threads(cfg.run.threads)
    info = init_distributed(cfg.run.device)
    p = cfg.pgpg
    out_dir = Path(cfg.run.out)
    k = get_skeleton(cfg.model.layout).num_keypoints
    try:
        all_kp, all_gt, all_det, total = [], [], [], 0
        for i, (images_dir, ann_path) in enumerate(resolve_sources(cfg, "train", info)):
            data = load_coco(ann_path)
            if p.box_source == "file":
                if not p.boxes_file:
                    raise UserError("pgpg.box_source file needs pgpg.boxes_file (COCO results JSON of boxes)")
                detections = detections_from_file(p.boxes_file)
            elif p.box_source == "jitter":
                j = np.asarray(p.jitter, np.float64)
                if j.size != 8:
                    raise UserError("pgpg.jitter needs 8 numbers: 4 offset means then 4 standard deviations")
                detections = jitter_detections(data["annotations"], j[:4], j[4:], cfg.run.seed + i)
            else:
                cache = Path(p.detections_cache) if p.detections_cache else out_dir / f"detections_{i}.json"
                detections = run_detector(images_dir, data["images"], p.detector, cache, info.device, info,
                                          cfg.run.progress)
            kp, gt, det, n = collect_pairs(data, detections, p.min_keypoints, p.iou_threshold, k)
            all_kp.append(kp), all_gt.append(gt), all_det.append(det)
            total += n
        kp, gt, det = np.concatenate(all_kp), np.concatenate(all_gt), np.concatenate(all_det)
        log.info("PGPG: %d of %d annotated people matched a %s box (IoU >= %.2f)", len(kp), total, p.box_source,
                 p.iou_threshold)
        summary = {"matched": int(len(kp)), "people": int(total), "box_source": p.box_source}
        if info.is_main:
            model = fit_pgpg(kp, gt, det, p.atoms, p.components, cfg.run.seed, cfg.model.layout,
                             info={"box_source": p.box_source, "matched": int(len(kp)), "people": int(total)})
            path = model.save(p.model or out_dir / "pgpg.json")
            for a in range(model.num_atoms):
                log.info("  atom %d: %4d boxes, mean offset %s", a, model.counts[a],
                         np.array2string(model.mean_offset(a), precision=3, suppress_small=True))
            log.info("PGPG model written to %s", path)
            summary.update(path=str(path), counts=model.counts)
        return summary
    finally:
        cleanup(info)
        torch.set_num_threads(threads)


class JitterProposals:
    """Pose-independent proposals: δ ~ N(mean, std) per corner (``pgpg.jitter``), the fallback
    when no PGPG model is given."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float64).reshape(4)
        self.std = np.asarray(std, np.float64).reshape(4)

    def sample(self, keypoints: np.ndarray, box_xywh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return apply_offsets(box_xywh, rng.normal(self.mean, self.std))[0]


def load_proposals(path: str | None, jitter=None):
    """The PGPG model at ``path``; without one, ``JitterProposals`` from ``jitter`` (8 numbers) or None."""
    if path:
        return PGPGModel.load(path)
    if jitter is not None:
        j = np.asarray(jitter, np.float64)
        if j.size != 8:
            raise UserError("pgpg.jitter needs 8 numbers: 4 offset means then 4 standard deviations")
        return JitterProposals(j[:4], j[4:])
    return None
