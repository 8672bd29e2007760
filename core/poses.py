"""The one pose container passed between every stage: boxes, keypoints, scores, track ids."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.skeleton import BLAZEPOSE33, COCO17, blazepose_to_coco_index, get_skeleton


@dataclass
class Poses:
    """N people in image pixel coordinates.

    boxes      [N, 4] float32, x1, y1, x2, y2
    keypoints  [N, K, 3] float32, x, y, score in [0, 1]
    scores     [N] float32, person score
    track_ids  [N] int64, -1 while untracked
    layout     keypoint layout name (``coco17`` or ``blazepose33``)
    """

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray = field(default=None)  # type: ignore[assignment]
    layout: str = COCO17

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        k = get_skeleton(self.layout).num_keypoints
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32).reshape(n, k, 3)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, dtype=np.int64)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(n)

    @classmethod
    def empty(cls, layout: str = COCO17) -> "Poses":
        k = get_skeleton(layout).num_keypoints
        return cls(np.zeros((0, 4)), np.zeros((0, k, 3)), np.zeros(0), layout=layout)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[1]

    def select(self, index) -> "Poses":
        """Subset by boolean mask or integer indices (always returns copies)."""
        index = np.asarray(index)
        return Poses(self.boxes[index].copy(), self.keypoints[index].copy(), self.scores[index].copy(),
                     self.track_ids[index].copy(), self.layout)

    def copy(self) -> "Poses":
        return self.select(np.arange(len(self)))

    @staticmethod
    def concat(items: list["Poses"]) -> "Poses":
        if not items:
            return Poses.empty()
        layout = items[0].layout
        if any(p.layout != layout for p in items):
            raise ValueError("cannot concatenate poses of different layouts")
        return Poses(np.concatenate([p.boxes for p in items]), np.concatenate([p.keypoints for p in items]),
                     np.concatenate([p.scores for p in items]), np.concatenate([p.track_ids for p in items]),
                     layout)

    def to_layout(self, layout: str) -> "Poses":
        """Convert keypoints to another layout (only BlazePose-33 → COCO-17 is defined)."""
        if layout == self.layout:
            return self
        if self.layout == BLAZEPOSE33 and layout == COCO17:
            kp = self.keypoints[:, blazepose_to_coco_index()]
            return Poses(self.boxes, kp, self.scores, self.track_ids, COCO17)
        raise ValueError(f"no conversion from {self.layout} to {layout}")

    def keypoint_boxes(self) -> np.ndarray:
        """Tight x1, y1, x2, y2 around keypoints with score > 0 (falls back to the box)."""
        out = self.boxes.copy()
        for i in range(len(self)):
            v = self.keypoints[i, :, 2] > 0
            if v.any():
                xy = self.keypoints[i, v, :2]
                out[i] = (*xy.min(0), *xy.max(0))
        return out

    def to_coco_results(self, image_id: int) -> list[dict]:
        """COCO keypoint results entries, one per person (``box`` is x, y, w, h; ``idx`` the track id)."""
        out = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            tid = int(self.track_ids[i])
            out.append({
                "image_id": int(image_id),
                "category_id": 1,
                "keypoints": [round(float(v), 3) for v in self.keypoints[i].reshape(-1)],
                "score": float(self.scores[i]),
                "box": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "idx": tid if tid >= 0 else None,
            })
        return out
