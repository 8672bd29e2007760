"""COCO keypoint AP/AR through pycocotools, with input checks that fail in one clear line.

Ground truth is a COCO keypoints file (images, annotations, categories). Results are our own
results JSON — a list of ``{"image_id", "category_id", "keypoints", "score", "box", "idx"}`` where
the image id is the frame index — or any COCO keypoint results list. pycocotools computes every
number; this module only loads, checks and reports.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from core.errors import UserError
from core.skeleton import COCO17, get_skeleton

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
NUM_KEYPOINTS = 17  # pycocotools' keypoint sigmas are the COCO-17 ones


def quiet():
    """pycocotools prints progress to stdout; keep our tables readable."""
    return contextlib.redirect_stdout(io.StringIO())


def read_json(path, what: str):
    """Parse a JSON file, raising UserError for a missing, unreadable or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} file {path}: {exc}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _keypoint_array(values, where: str) -> np.ndarray:
    """[K, 3] float array from a flat keypoint list, or a UserError naming ``where``."""
    if not isinstance(values, list):
        raise UserError(f"{where}: 'keypoints' must be a list of numbers")
    if len(values) != NUM_KEYPOINTS * 3:
        raise UserError(f"{where}: {len(values)} keypoint values, expected {NUM_KEYPOINTS * 3} "
                        f"({NUM_KEYPOINTS} keypoints x 3)")
    if not all(_is_number(v) for v in values):
        raise UserError(f"{where}: keypoints must be finite numbers")
    return np.asarray(values, dtype=np.float64).reshape(NUM_KEYPOINTS, 3)


def person_category() -> dict:
    sk = get_skeleton(COCO17)
    return {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(sk.names),
            "skeleton": (sk.limbs + 1).tolist()}


def normalise_ground_truth(data, name: str = "GT") -> dict:
    """Checked copy of a COCO keypoints dataset with pycocotools' required fields filled in.

    Defaults for absent fields: categories → one COCO-17 person category; annotation id → its
    position + 1; iscrowd → 0; num_keypoints → count of v > 0; bbox → keypoint extent; area → bbox w·h.
    """
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise UserError(f"{name}: expected a COCO keypoints object with 'images' and 'annotations' lists")
    images = []
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            raise UserError(f"{name}: image {i} has no integer 'id'")
        images.append(dict(img))
    image_ids = {img["id"] for img in images}
    if len(image_ids) != len(images):
        raise UserError(f"{name}: image ids are not unique")
    categories = data.get("categories") or [person_category()]
    if not isinstance(categories, list) or not all(isinstance(c, dict) and _is_int(c.get("id")) for c in categories):
        raise UserError(f"{name}: 'categories' must be a list of objects with integer ids")
    for c in categories:
        if "keypoints" in c and len(c["keypoints"]) != NUM_KEYPOINTS:
            raise UserError(f"{name}: category {c['id']} has {len(c['keypoints'])} keypoints; only the "
                            f"COCO-17 layout is supported (pycocotools' OKS sigmas)")
    category_ids = {c["id"] for c in categories}
    default_category = categories[0]["id"]
    annotations, ann_ids = [], set()
    for i, ann in enumerate(data["annotations"]):
        where = f"{name} annotation {i}"
        if not isinstance(ann, dict):
            raise UserError(f"{where}: expected an object")
        a = dict(ann)
        if a.get("image_id") not in image_ids:
            raise UserError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'")
        kp = _keypoint_array(a.get("keypoints"), where)
        a.setdefault("category_id", default_category)
        if a["category_id"] not in category_ids:
            raise UserError(f"{where}: category_id {a['category_id']!r} is not in 'categories'")
        a.setdefault("id", i + 1)
        if a["id"] in ann_ids:
            raise UserError(f"{where}: duplicate annotation id {a['id']!r}")
        ann_ids.add(a["id"])
        a.setdefault("iscrowd", 0)
        a.setdefault("num_keypoints", int((kp[:, 2] > 0).sum()))
        if "bbox" not in a:
            vis = kp[:, 2] > 0
            if vis.any():
                lo, hi = kp[vis, :2].min(0), kp[vis, :2].max(0)
                a["bbox"] = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
            else:
                a["bbox"] = [0.0, 0.0, 0.0, 0.0]
        if not (isinstance(a["bbox"], list) and len(a["bbox"]) == 4 and all(_is_number(v) for v in a["bbox"])):
            raise UserError(f"{where}: 'bbox' must be four numbers x, y, w, h")
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
        if not _is_number(a["area"]) or a["area"] < 0:
            raise UserError(f"{where}: 'area' must be a non-negative number")
        annotations.append(a)
    if not any(not a["iscrowd"] and a["num_keypoints"] > 0 for a in annotations):
        raise UserError(f"{name}: no annotated (non-crowd, num_keypoints > 0) person to evaluate")
    out = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    out.update(images=images, annotations=annotations, categories=categories)
    return out


def coco_from_dataset(dataset: dict) -> COCO:
    """A pycocotools COCO object over an in-memory (already normalised) dataset."""
    coco = COCO()
    coco.dataset = dataset
    with quiet():
        coco.createIndex()
    return coco


def load_ground_truth(source) -> COCO:
    """COCO object from a path or a dataset dict, checked by :func:`normalise_ground_truth`."""
    if isinstance(source, dict):
        return coco_from_dataset(normalise_ground_truth(source))
    return coco_from_dataset(normalise_ground_truth(read_json(source, "GT"), Path(source).name))


def check_results(data, gt: COCO, name: str = "DT") -> list[dict]:
    """Checked copy of a keypoint results list against the ground truth it will be scored on.

    A ``{"annotations": [...]}`` wrapper is accepted; a missing category_id means the person category.
    """
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise UserError(f"{name}: expected a list of keypoint results, got a JSON {type(data).__name__}")
    category_ids = set(gt.getCatIds())
    default_category = sorted(category_ids)[0]
    image_ids = set(gt.getImgIds())
    out, unknown = [], set()
    for i, r in enumerate(data):
        where = f"{name} result {i}"
        if not isinstance(r, dict):
            raise UserError(f"{where}: expected an object")
        if not _is_int(r.get("image_id")):
            raise UserError(f"{where}: 'image_id' must be an integer (the frame index)")
        _keypoint_array(r.get("keypoints"), where)
        if not _is_number(r.get("score")):
            raise UserError(f"{where}: 'score' must be a finite number")
        r = copy.deepcopy(r)
        r.setdefault("category_id", default_category)
        if r["category_id"] not in category_ids:
            raise UserError(f"{where}: category_id {r['category_id']!r} is not a GT category")
        if r["image_id"] not in image_ids:
            unknown.add(r["image_id"])
        out.append(r)
    if unknown:
        shown = ", ".join(str(v) for v in sorted(unknown)[:5]) + (", ..." if len(unknown) > 5 else "")
        raise UserError(f"{name}: results for {len(unknown)} image id(s) not in the ground truth: {shown}")
    return out


def load_results(source, gt: COCO) -> list[dict]:
    if isinstance(source, list):
        return check_results(source, gt)
    return check_results(read_json(source, "DT"), gt, Path(source).name)


def results_to_coco(gt: COCO, results: list[dict]) -> COCO:
    """pycocotools result object (``loadRes`` on a copy; it mutates its input and rejects empty lists)."""
    if results:
        with quiet():
            return gt.loadRes(copy.deepcopy(results))
    return coco_from_dataset({"images": list(gt.dataset["images"]),
                              "categories": copy.deepcopy(gt.dataset["categories"]), "annotations": []})


@dataclass
class EvalResult:
    """pycocotools' keypoint summary plus the per-threshold curves the diagnosis plots."""

    stats: dict[str, float]
    oks_thresholds: np.ndarray  # [T]
    recall_thresholds: np.ndarray  # [R]
    precision: np.ndarray  # [T, R] area all, maxDets 20; -1 where undefined
    ap_per_threshold: np.ndarray  # [T]
    ar_per_threshold: np.ndarray  # [T]
    num_images: int
    num_ground_truth: int  # non-ignored GT people
    num_detections: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "stats": {k: float(v) for k, v in self.stats.items()},
            "oks_thresholds": [round(float(t), 2) for t in self.oks_thresholds],
            "ap_per_threshold": [float(v) for v in self.ap_per_threshold],
            "ar_per_threshold": [float(v) for v in self.ar_per_threshold],
            "num_images": self.num_images,
            "num_ground_truth": self.num_ground_truth,
            "num_detections": self.num_detections,
        }


def _mean_defined(a: np.ndarray, axis=None) -> np.ndarray:
    """pycocotools' summary mean: average of entries > -1, or -1 when none is defined."""
    a = np.asarray(a, dtype=np.float64)
    ok = a > -1
    s = np.where(ok, a, 0).sum(axis=axis)
    n = ok.sum(axis=axis)
    return np.where(n > 0, s / np.maximum(n, 1), -1.0)


def evaluate(gt: COCO, results: list[dict]) -> EvalResult:
    """Run COCOeval (keypoints) on checked results and collect its summary and curves."""
    dt = results_to_coco(gt, results)
    ev = COCOeval(gt, dt, "keypoints")
    with quiet():
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    p = ev.params
    a_all, m_last = p.areaRngLbl.index("all"), len(p.maxDets) - 1
    precision = ev.eval["precision"][:, :, 0, a_all, m_last]  # one category: person
    recall = ev.eval["recall"][:, 0, a_all, m_last]
    num_gt = sum(1 for a in gt.dataset["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0)
    return EvalResult(
        stats=dict(zip(STAT_NAMES, (float(s) for s in ev.stats))),
        oks_thresholds=np.asarray(p.iouThrs, dtype=np.float64),
        recall_thresholds=np.asarray(p.recThrs, dtype=np.float64),
        precision=np.asarray(precision, dtype=np.float64),
        ap_per_threshold=_mean_defined(precision, axis=1),
        ar_per_threshold=np.asarray(recall, dtype=np.float64),
        num_images=len(gt.getImgIds()),
        num_ground_truth=num_gt,
        num_detections=len(results),
    )


def format_metrics_table(result: EvalResult) -> str:
    lines = [f"{'metric':<8}{'value':>8}", "-" * 16]
    lines += [f"{name:<8}{value:>8.3f}" for name, value in result.stats.items()]
    lines.append(f"({result.num_detections} detections, {result.num_ground_truth} GT people, "
                 f"{result.num_images} images)")
    return "\n".join(lines)
