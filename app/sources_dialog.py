"""Choosing what to watch: a video file, a camera present on this machine, an image folder or a URL."""
from __future__ import annotations

import glob
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtWidgets

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
KINDS = ("file", "camera", "images", "url")


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # file | camera | images | url
    value: str | int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown source kind {self.kind!r}")

    @property
    def seekable(self) -> bool:
        return self.kind in ("file", "images")

    def label(self) -> str:
        if self.kind == "camera":
            return f"camera {self.value}"
        if self.kind in ("file", "images"):
            return Path(str(self.value)).name or str(self.value)
        return str(self.value)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value}

    @classmethod
    def from_dict(cls, data) -> "SourceSpec | None":
        try:
            return cls(str(data["kind"]), data["value"])
        except (KeyError, TypeError, ValueError):
            return None


def spec_for_path(path: str) -> SourceSpec:
    """A dropped or typed path: folders and globs are image sequences, anything else a video file."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", path, re.IGNORECASE) and not path.lower().startswith("file://"):
        return SourceSpec("url", path)
    if os.path.isdir(path) or any(c in path for c in "*?["):
        return SourceSpec("images", path)
    if path.lower().endswith(IMAGE_SUFFIXES):
        # one dropped image: show its folder so stepping through neighbours works
        return SourceSpec("images", str(Path(path).parent))
    return SourceSpec("file", path)


def list_cameras(max_index: int = 10) -> list[int]:
    """Indices of the capture devices present. Linux lists /dev/video*; elsewhere OpenCV probes."""
    if sys.platform.startswith("linux"):
        # probing with OpenCV is slow and noisy; the device nodes say what is there
        indices = sorted(int(m.group(1)) for n in glob.glob("/dev/video*") if (m := re.search(r"video(\d+)$", n)))
        return [i for i in indices if _v4l2_is_capture(i)]
    import cv2

    found = []
    for i in range(max_index):
        cap = cv2.VideoCapture(i)
        try:
            if cap.isOpened():
                found.append(i)
        finally:
            cap.release()
    return found


def _v4l2_is_capture(index: int) -> bool:
    """UVC cameras expose a metadata node next to each capture node; its sysfs 'index' is not 0."""
    attr = Path(f"/sys/class/video4linux/video{index}/index")
    try:
        return int(attr.read_text().strip()) == 0
    except (OSError, ValueError):
        return True


# -- dialogs (modal: the user asked for them) -------------------------------------------------------
def ask_video_file(parent: QtWidgets.QWidget, start_dir: str = "") -> SourceSpec | None:
    pattern = " ".join(f"*{s}" for s in VIDEO_SUFFIXES)
    path, _ = QtWidgets.QFileDialog.getOpenFileName(parent, "Open video", start_dir,
                                                    f"Videos ({pattern});;All files (*)")
    return SourceSpec("file", path) if path else None


def ask_image_folder(parent: QtWidgets.QWidget, start_dir: str = "") -> SourceSpec | None:
    path = QtWidgets.QFileDialog.getExistingDirectory(parent, "Open image folder", start_dir)
    return SourceSpec("images", path) if path else None


def ask_url(parent: QtWidgets.QWidget) -> SourceSpec | None:
    url, ok = QtWidgets.QInputDialog.getText(parent, "Open stream", "RTSP / HTTP URL:",
                                             QtWidgets.QLineEdit.EchoMode.Normal, "rtsp://")
    url = url.strip()
    return SourceSpec("url", url) if ok and url and url != "rtsp://" else None


def ask_camera(parent: QtWidgets.QWidget, cameras: list[int]) -> SourceSpec | None:
    """Pick one of the cameras present; None (after saying so) when there is none."""
    if not cameras:
        QtWidgets.QMessageBox.information(parent, "Cameras", "No camera was found on this machine.")
        return None
    items = [f"camera {i}" for i in cameras]
    item, ok = QtWidgets.QInputDialog.getItem(parent, "Open camera", "Camera:", items, 0, False)
    return SourceSpec("camera", cameras[items.index(item)]) if ok else None
