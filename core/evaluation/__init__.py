"""COCO keypoint evaluation (pycocotools), Ronchi–Perona error diagnosis and the PoseFix error synthesiser.

- :mod:`.coco_eval`  — load/check GT and results, AP/AR through pycocotools
- :mod:`.taxonomy`   — error labels, KS thresholds, displacement rule, classification precedence
- :mod:`.diagnosis`  — matching at OKS 0.1, keypoint labels, FP/FN, AP gain per corrected error class
- :mod:`.synthesis`  — ``ErrorSynthesizer``: PoseFix error injection with labels (shared with PoseFix training)
- :mod:`.scenes`     — synthetic multi-person ground truth for tests and demos
- :mod:`.plots`, :mod:`.report`, :mod:`.cli` — PNG plots, Markdown report, ``eval`` command
"""
