"""Multi-person tracking (box Kalman + Hungarian on OKS/IoU) and causal keypoint smoothing."""
from trackers.smoothing import PoseSmoother
from trackers.tracker import PoseTracker

__all__ = ["PoseTracker", "PoseSmoother"]
