"""Per-epoch OKS AP: predict every validation person, decode, map to the image, score with pycocotools.

Predictions follow the app's path: heatmaps (flip test: the mirrored crop's heatmaps mirrored back
with the left/right swap, then averaged — exact under the pixel-centre convention) → the SPPE's
``HeatmapCodec`` (DARK, quarter or argmax; heatmap → crop pixels) → image pixels through the crop's θ. Keypoint score =
heatmap maximum; person score = box score × mean of the maxima above ``keypoint_threshold``
(SimpleBaseline's rescoring). AP comes from ``core.evaluation.coco_eval`` (pycocotools).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from core.evaluation.coco_eval import EvalResult, evaluate, load_ground_truth
from core.heatmaps import HeatmapCodec
from core.models.sstn import crop_to_image
from training.config import TrainConfig
from training.ddp import DistInfo, broadcast_object, gather_lists


def dark_kernel_for(cfg: TrainConfig, heatmap_size: tuple[int, int]) -> int:
    if cfg.eval.dark_kernel > 0:
        return int(cfg.eval.dark_kernel)
    return 11 if heatmap_size[1] >= 48 else 5


def flip_averaged(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, flip_index: np.ndarray,
                  flip_test: bool) -> torch.Tensor:
    """Heatmaps ``net(x)`` [N, K, h, w], averaged with the mirrored input's when ``flip_test``."""
    heat = net(x).float()
    if flip_test:
        mirrored = net(torch.flip(x, dims=[3])).float()
        mirrored = torch.flip(mirrored, dims=[3])[:, torch.as_tensor(flip_index, device=heat.device)]
        heat = 0.5 * (heat + mirrored)
    return heat


def eval_codec(cfg: TrainConfig, codec: HeatmapCodec) -> HeatmapCodec:
    """The SPPE's codec decoding with ``cfg.eval``'s method and DARK kernel."""
    return codec.with_decode(cfg.eval.decode, dark_kernel_for(cfg, codec.heatmap_size))


def heatmaps_to_results(heat: torch.Tensor, theta: np.ndarray, image_ids, box_scores, codec: HeatmapCodec,
                        keypoint_threshold: float) -> list[dict]:
    """COCO keypoint results from heatmaps [N, K, h, w] of crops whose θ [N, 2, 3] maps to the image,
    decoded by ``codec`` (the same object inference uses)."""
    crop_xy, maxvals = codec.decode(heat)
    xy = crop_to_image(crop_xy, np.asarray(theta, np.float64))
    results = []
    for i in range(len(xy)):
        s = np.clip(maxvals[i], 0.0, 1.0)
        good = s > keypoint_threshold
        person = float(s[good].mean()) if good.any() else 0.0
        kp = np.concatenate([xy[i], s[:, None]], 1)
        results.append({"image_id": int(image_ids[i]), "category_id": 1,
                        "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                        "score": person * float(box_scores[i])})
    return results


@torch.no_grad()
def predict_dataset(loader, predict: Callable[[dict], tuple[torch.Tensor, np.ndarray]], cfg: TrainConfig,
                    codec: HeatmapCodec) -> list[dict]:
    codec = eval_codec(cfg, codec)
    results = []
    for batch in loader:
        heat, theta = predict(batch)
        results += heatmaps_to_results(heat, theta, batch["image_id"], batch["box_score"], codec,
                                       cfg.eval.keypoint_threshold)
    return results


def validation_ground_truth(dataset, cfg: TrainConfig):
    """The COCO ground truth of a validation source (``dataset.annotation_path``), cut to the
    images it evaluates (its first ``eval.max_images`` when > 0)."""
    gt = load_ground_truth(str(dataset.annotation_path))
    if cfg.eval.max_images > 0:
        keep = {im["id"] for im in dataset.data["images"][:cfg.eval.max_images]}
        gt = load_ground_truth({**gt.dataset, "images": [im for im in gt.dataset["images"] if im["id"] in keep],
                                "annotations": [a for a in gt.dataset["annotations"] if a["image_id"] in keep]})
    return gt


def evaluate_parts(parts_loaders: list, predict, cfg: TrainConfig, info: DistInfo, input_size=None,
                   heatmap_size=None, *, codec: HeatmapCodec | None = None) -> dict | None:
    """AP per validation source (gathered over ranks) → {"AP": mean, "AP50": ..., "parts": [...]}.

    Heatmaps decode through ``codec`` (the SPPE's, e.g. ``spec.codec``); without it, a half-pixel
    codec of ``input_size`` → ``heatmap_size`` (the trained SPPEs' mapping). Every rank returns the
    same dict.
    """
    if codec is None:
        codec = HeatmapCodec(tuple(input_size), tuple(heatmap_size))
    summaries = []
    for dataset, loader in parts_loaders:
        results = gather_lists(predict_dataset(loader, predict, cfg, codec), info)
        summary = None
        if info.is_main:
            res: EvalResult = evaluate(validation_ground_truth(dataset, cfg), results)
            summary = {k: float(v) for k, v in res.stats.items()}
        summaries.append(broadcast_object(summary, info))
    keys = summaries[0].keys()
    out = {k: float(np.mean([s[k] for s in summaries])) for k in keys}
    out["parts"] = summaries
    return out
