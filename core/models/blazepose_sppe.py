"""The embedded BlazePose-33 landmark model as an SPPE (``core.models.sppe`` protocol)."""
from __future__ import annotations

import torch

from core.heatmaps import HeatmapCodec
from core.models.sppe import SPPEOutput
from core.skeleton import BLAZEPOSE33


class BlazePoseSPPE:
    """BlazePose-33 landmark model (``pose_landmark_full``) as an SPPE on 256×256 crops.

    Model facts (MediaPipe pose_landmark graph, checked on the demo): input RGB in [0, 1];
    ``Identity`` [N, 195] = 39 points × (x, y, z, visibility logit, presence logit), x, y in
    crop pixels with 0 at the crop's left/top *edge* (the crop centre is 128); ``Identity_1``
    the pose presence, already a probability (not a logit: measured 1.0 on the demo's people,
    0.0 on background crops, in between on partial views); ``Identity_3`` [N, 64, 64, 39]
    heatmap logits. Points 0–32 are the
    BlazePose-33 keypoints, 33 the mid-hip centre and 34 the full-body size/rotation point (the
    same two alignment points as the detector's), 35–38 further auxiliary points.

    Keypoint score = sigmoid(visibility logit): the model's estimate that the point is visible.
    """

    input_size = (256, 256)
    heatmap_size = (64, 64)
    layout = BLAZEPOSE33
    num_keypoints = 33
    num_points = 39
    # Heatmap cell i sits at crop position 4·i measured from the crop edge (MediaPipe's refinement
    # maps column c to c / 64 of the crop), i.e. at pixel-centre coordinate 4·i − 0.5: measured on
    # the demo, DARK peaks mapped this way land 0.3 px (median) from the regressed points, while the
    # half-pixel-centre mapping (4·i + 1.5) would put them 2 px off. σ is unused (never trained here).
    codec = HeatmapCodec(input_size, heatmap_size, method="regression", offset=-0.5)

    skips_heatmaps = True  # __call__(crops, heatmaps=False): the regression decode's fast path

    def __init__(self, device="cpu", model: torch.nn.Module | None = None, runtime=None,
                 variant: str = "full"):
        self.device = torch.device(device)
        self.variant = variant  # lite | full | heavy: same inputs and outputs, more capacity
        self.runtime = runtime
        # heatmaps wanted -> model: with the heatmap head, or pruned to the points (loaded when
        # first asked for; a given model serves both)
        self._models = {True: model, False: model} if model is not None else \
            {False: self._load(False)}

    def _load(self, heatmaps: bool):
        from core.models.zoo import load_landmark_model

        return load_landmark_model(self.device, self.runtime, self.variant, heatmaps)

    @property
    def model(self):
        """The landmark model as the pipeline runs it by default (without the heatmap head)."""
        return self._models[False]

    def __call__(self, crops: torch.Tensor, heatmaps: bool = True) -> SPPEOutput:
        """``heatmaps=False`` runs the model pruned to its regressed points (the heatmap head
        skipped, ~30 % less per crop); ``SPPEOutput.heatmaps`` is then None."""
        n = crops.shape[0]
        k = self.num_keypoints
        model = self._models.get(heatmaps)
        if model is None:
            model = self._models[heatmaps] = self._load(heatmaps)
        with torch.inference_mode():
            out = model(crops.permute(0, 2, 3, 1))
        points = out["Identity"].float().reshape(n, self.num_points, 5)
        xy = points[..., :2] - 0.5  # edge-based → pixel-centre crop coordinates
        heatmaps = torch.sigmoid(out["Identity_3"].float()[..., :k].permute(0, 3, 1, 2)) \
            if heatmaps else None
        return SPPEOutput(
            heatmaps=heatmaps,
            coords=xy[:, :k],
            scores=torch.sigmoid(points[:, :k, 3]),
            presence=out["Identity_1"].float().reshape(n),
            aux_coords=xy[:, k:],
        )
