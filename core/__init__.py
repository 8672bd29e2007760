"""RMPE-Live core: models, decoding, NMS, IO, pipeline and evaluation (no Qt here)."""
import os
from pathlib import Path

# torch's OpenMP workers spin by default; with 2 cores shared with our decode/render threads that
# spinning made inference 10-30x slower (measured in bench/bench_models.py). Must precede torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"
