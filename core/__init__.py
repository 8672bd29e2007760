"""RMPE-Live core: models, decoding, NMS, IO, pipeline and evaluation (no Qt here)."""
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"
