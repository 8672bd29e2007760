"""Pseudo-labels: run the embedded pipeline's estimator over a video or image folder and write a
COCO-format keypoint dataset (``images/*.jpg`` + ``annotations.json``) to bootstrap a custom domain.

Every labelled frame is estimated on its own (detector on every frame, no ROI tracking, pose NMS
on), so labels do not depend on which frames were skipped. A person is kept when its score is at
least ``min_score`` and ``min_keypoints`` of its keypoints score at least ``keypoint_threshold``;
lower-scoring keypoints are written as unlabelled (v = 0, x = y = 0). ``bbox`` is the estimator's
person box clipped to the frame and ``area`` its w·h (there is no segmentation). Annotations are
rewritten every 25 frames and at the end (also after an error or Ctrl-C), so an interrupted run
keeps what it labelled.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.errors import UserError

log = logging.getLogger("rmpe.train")


def poses_to_annotations(poses, image_id: int, first_id: int, width: int, height: int, min_score: float,
                         keypoint_threshold: float, min_keypoints: int) -> list[dict]:
    """COCO annotation entries for the confident people of one frame (``Poses`` in COCO-17)."""
    anns = []
    for i in range(len(poses)):
        if poses.scores[i] < min_score:
            continue
        kp = poses.keypoints[i].astype(np.float64)
        good = (kp[:, 2] >= keypoint_threshold) & (kp[:, 0] >= 0) & (kp[:, 0] <= width - 1) \
            & (kp[:, 1] >= 0) & (kp[:, 1] <= height - 1)
        if good.sum() < min_keypoints:
            continue
        out = np.zeros((len(kp), 3))
        out[good, :2] = kp[good, :2]
        out[good, 2] = 2
        x1, y1, x2, y2 = poses.boxes[i].astype(np.float64)
        x1, y1 = max(x1, 0.0), max(y1, 0.0)
        x2, y2 = min(x2, float(width)), min(y2, float(height))
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        anns.append({"id": first_id + len(anns), "image_id": image_id, "category_id": 1, "iscrowd": 0,
                     "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                     "area": round((x2 - x1) * (y2 - y1), 2), "num_keypoints": int(good.sum()),
                     "score": round(float(poses.scores[i]), 4),
                     "keypoints": [round(float(v), 2) if j % 3 != 2 else int(v)
                                   for j, v in enumerate(out.reshape(-1))]})
    return anns


def pseudo_label(out_dir: str | Path, video: str | None = None, images: str | None = None,
                 app_config: str | None = None, every: int = 1, max_frames: int = 0, min_score: float = 0.5,
                 keypoint_threshold: float = 0.5, min_keypoints: int = 5, device: str = "auto",
                 estimator=None, progress: bool = True) -> dict:
    """Label every ``every``-th frame of a video or image folder; returns a summary dict.
    ``progress=False``: no progress bar (batch workers show their own)."""
    from core.config import Config
    from core.estimator import PoseEstimator
    from core.evaluation.coco_eval import person_category
    from core.io.sources import open_source

    if every < 1:
        raise UserError("--every must be at least 1")
    config = Config.load(app_config)
    config.update({"detector": {"interval": 1}, "sppe": {"keypoint_layout": "coco17"}})
    est = estimator or PoseEstimator(config, device=device)
    source = open_source(video=video, images=images)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    ann_path = out_dir / "annotations.json"
    data = {"info": {"description": f"pseudo-labels of {source.name} by the RMPE-Live estimator",
                     "min_score": min_score, "keypoint_threshold": keypoint_threshold},
            "images": [], "annotations": [], "categories": [person_category()]}
    bar = None
    try:
        from tqdm import tqdm

        total = source.num_frames // every if source.num_frames else None
        bar = tqdm(total=total if not max_frames else min(total or max_frames, max_frames),
                   desc="pseudo-labelling", unit="frame", disable=not progress)
        while True:
            frame = source.read()
            if frame is None or (max_frames and len(data["images"]) >= max_frames):
                break
            if frame.index % every:
                continue
            est.reset()
            poses = est.postprocess(est.infer(frame.image)).to_layout("coco17")
            h, w = frame.image.shape[:2]
            image_id = len(data["images"])
            name = f"{image_id:06d}.jpg"
            cv2.imwrite(str(out_dir / "images" / name), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            data["images"].append({"id": image_id, "file_name": name, "width": w, "height": h,
                                   "frame_index": int(frame.index), "timestamp": float(frame.timestamp)})
            data["annotations"] += poses_to_annotations(poses, image_id, len(data["annotations"]) + 1, w, h,
                                                        min_score, keypoint_threshold, min_keypoints)
            if image_id % 25 == 0:
                _write(ann_path, data)
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        source.close()
        _write(ann_path, data)
    log.info("pseudo-labels: %d people on %d frames -> %s", len(data["annotations"]), len(data["images"]), ann_path)
    return {"frames": len(data["images"]), "people": len(data["annotations"]), "annotations": str(ann_path)}


def _write(path: Path, data: dict) -> None:
    from core.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data))


@dataclass
class PseudoLabelJob:
    """``pseudo_label`` as a ``core.batch`` job: per video ``OUT/<name>/images/*.jpg`` and
    ``OUT/<name>/annotations.json``, on local workers or Ray, with the batch manifest and resume."""

    app_config: str | None = None
    every: int = 1
    max_frames: int = 0
    min_score: float = 0.5
    keypoint_threshold: float = 0.5
    min_keypoints: int = 5
    device: str = "auto"
    kind: str = "pseudo-label"

    def load(self, threads: int):
        from core.config import Config
        from core.estimator import PoseEstimator

        config = Config.load(self.app_config)
        config.update({"detector": {"interval": 1}, "sppe": {"keypoint_layout": "coco17"},
                       "runtime": {"threads": int(threads)}})
        return PoseEstimator(config, device=self.device)

    def run(self, state, video: str, dest: Path, name: str, progress=None) -> dict:
        summary = pseudo_label(dest, video=video, app_config=self.app_config, every=self.every,
                               max_frames=self.max_frames, min_score=self.min_score,
                               keypoint_threshold=self.keypoint_threshold, min_keypoints=self.min_keypoints,
                               estimator=state, progress=False)
        return {"frames": summary["frames"], "video_fps": None,
                "outputs": {"annotations": "annotations.json", "images": "images"}}
