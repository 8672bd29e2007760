"""Training data: COCO-format keypoint samples, the synthetic people generator, pseudo-labelling."""
