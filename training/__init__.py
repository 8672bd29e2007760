"""Training: datasets (COCO keypoints, synthetic people, pseudo-labels), SPPE / RMPE / PGPG loops,
DDP through torchrun, checkpoints and metric logs; the ``train`` command lives in ``training.cli``."""
