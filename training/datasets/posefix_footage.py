"""PoseFix data from unlabelled footage: a strong SPPE's poses as pseudo ground truth, a fast one's as input.

``build_footage_dataset`` runs over a video or image folder once. The *reference* estimator
(``reference`` app-config overrides, e.g. ``{"sppe": {"model": "blazepose"}}``; the strongest
installed SPPE) labels every ``every``-th frame independently (person detector on every frame, no
ROI tracking) with ``training.datasets.pseudo_label.poses_to_annotations``; the *input* estimator
(``inputs`` overrides; the fast default, run as the live pipeline runs it: ROI tracking across
frames at the configured detection interval) gives the poses to refine. The first ``train_fraction``
of the labelled frames go to ``train/`` (images + pseudo-GT ``annotations.json``: what ``train
posefix`` learns from, with synthesised errors), the rest to ``test/`` (images, pseudo-GT and the
input estimator's poses as a results file ``inputs.json``: what the refiner is measured on).
Frames are split in time, never interleaved, so test frames are not neighbours of training frames.

``distance_to_reference(gt, results)`` is the measure: each reference person is matched to the
result of highest OKS (≥ 0.1, greedy by score), and the mean distance of its labelled keypoints
is divided by √area of the reference box; also the OKS AP of the results against the reference.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from core.errors import UserError

log = logging.getLogger("rmpe.train")


def _estimator(overrides: dict, device: str, every_frame: bool):
    from core.config import Config
    from core.estimator import PoseEstimator

    config = Config.load(None, overrides)
    config.update({"sppe": {"keypoint_layout": "coco17"}})
    if every_frame:
        config.update({"detector": {"interval": 1}})
    return PoseEstimator(config, device=device)


def _results(poses, image_id: int) -> list[dict]:
    return [{"image_id": image_id, "category_id": 1, "score": round(float(poses.scores[i]), 4),
             "keypoints": [round(float(v), 2) for v in poses.keypoints[i].reshape(-1)]} for i in range(len(poses))]


def build_footage_dataset(out_dir: str | Path, video: str | None = None, images: str | None = None,
                          reference: dict | None = None, inputs: dict | None = None, every: int = 1,
                          max_frames: int = 0, train_fraction: float = 0.7, min_score: float = 0.5,
                          keypoint_threshold: float = 0.5, device: str = "auto") -> dict:
    """Write ``out_dir/{train,test}``; returns a summary (frames and people per split)."""
    from core.evaluation.coco_eval import person_category
    from core.io.sources import open_source
    from training.datasets.pseudo_label import _write, poses_to_annotations

    if every < 1 or not 0.0 < train_fraction < 1.0:
        raise UserError("--every must be >= 1 and --train-fraction in (0, 1)")
    ref = _estimator(reference or {}, device, every_frame=True)
    fast = _estimator(inputs or {}, device, every_frame=False)
    source = open_source(video=video, images=images)
    out_dir = Path(out_dir)
    frames = []  # (frame index, image, reference anns, input results)
    try:
        while True:
            frame = source.read()
            if frame is None or (max_frames and len(frames) >= max_frames):
                break
            fast_poses = fast.postprocess(fast.infer(frame.image)).to_layout("coco17")  # every frame: tracking state
            if frame.index % every:
                continue
            ref.reset()
            ref_poses = ref.postprocess(ref.infer(frame.image)).to_layout("coco17")
            frames.append((frame.index, frame.image, ref_poses, fast_poses))
    finally:
        source.close()
    if len(frames) < 2:
        raise UserError(f"{video or images}: fewer than 2 labelled frames")
    cut = min(max(int(round(len(frames) * train_fraction)), 1), len(frames) - 1)
    summary = {}
    for split, part in (("train", frames[:cut]), ("test", frames[cut:])):
        root = out_dir / split
        (root / "images").mkdir(parents=True, exist_ok=True)
        data = {"info": {"description": f"PoseFix footage data ({split}) of {video or images}",
                         "reference": reference or {}, "inputs": inputs or {}},
                "images": [], "annotations": [], "categories": [person_category()]}
        results = []
        for image_id, (index, image, ref_poses, fast_poses) in enumerate(part):
            h, w = image.shape[:2]
            name = f"{index:06d}.jpg"
            cv2.imwrite(str(root / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            data["images"].append({"id": image_id, "file_name": name, "width": w, "height": h, "frame_index": index})
            data["annotations"] += poses_to_annotations(ref_poses, image_id, len(data["annotations"]) + 1, w, h,
                                                        min_score, keypoint_threshold, 5)
            results += _results(fast_poses, image_id)
        _write(root / "annotations.json", data)
        _write(root / "inputs.json", results)
        summary[split] = {"frames": len(part), "people": len(data["annotations"]), "inputs": len(results),
                          "annotations": str(root / "annotations.json")}
    log.info("footage data: %s", summary)
    return summary


def distance_to_reference(gt_path: str | Path, results: list[dict]) -> dict:
    """{"distance": mean keypoint distance / √area over matched reference people, "matched",
    "reference_people", "AP"} of ``results`` against the pseudo ground truth at ``gt_path``."""
    from core.evaluation.coco_eval import evaluate, load_ground_truth
    from core.oks import compute_oks

    gt = load_ground_truth(str(gt_path))
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(int(r["image_id"]), []).append(r)
    dists, matched, total = [], 0, 0
    for image_id in gt.getImgIds():
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd")]
        total += len(anns)
        dts = sorted(by_image.get(image_id, []), key=lambda r: -r["score"])
        if not anns or not dts:
            continue
        g = np.asarray([a["keypoints"] for a in anns], np.float64).reshape(len(anns), -1, 3)
        d = np.asarray([r["keypoints"] for r in dts], np.float64).reshape(len(dts), -1, 3)
        oks = compute_oks(d, g, np.asarray([a["area"] for a in anns]), np.asarray([a["bbox"] for a in anns]))
        free = np.ones(len(anns), bool)
        for i in range(len(dts)):
            j = int(np.argmax(np.where(free, oks[i], -1)))
            if not free[j] or oks[i, j] < 0.1:
                continue
            free[j] = False
            vis = g[j, :, 2] > 0
            dists.append(np.linalg.norm(d[i, vis, :2] - g[j, vis, :2], axis=1).mean() / np.sqrt(anns[j]["area"]))
            matched += 1
    ap = evaluate(gt, results).stats["AP"] if results else 0.0
    return {"distance": float(np.mean(dists)) if dists else float("nan"), "matched": matched,
            "reference_people": total, "AP": float(ap)}


def load_results(path: str | Path) -> list[dict]:
    return json.loads(Path(path).read_text())
