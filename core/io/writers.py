"""Result sinks: COCO-results JSON, OpenPose-style per-frame JSON, CSV; the shared sink interface.

A sink is any object with

    open(info: SourceInfo, config: Config)   called once before the first frame
    write(result)                            one finished frame (a ``core.pipeline.FrameResult``)
    close()                                  flush and finalise; safe to call twice

Constructing a sink checks its output path (parent folder created if missing, a probe file written
and removed), so an unwritable destination is one clear error before any work starts.

Every writer leaves valid files after each finished frame, so an interrupted run (Ctrl-C, a stage
failure, even a hard kill between frames) keeps everything written so far.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from core.poses import Poses
from core.skeleton import COCO17, get_skeleton


@dataclass(frozen=True)
class SourceInfo:
    """What sinks need to know about the input."""

    name: str
    fps: float
    width: int
    height: int
    num_frames: int | None
    live: bool


def check_output_path(path: str | os.PathLike, what: str = "output", is_dir: bool = False) -> Path:
    """Create the output's folder if needed and prove it writable; UserError otherwise."""
    path = Path(path)
    folder = path if is_dir else path.parent
    if not is_dir and path.is_dir():
        raise UserError(f"{what} path {path} is a folder, not a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{what} folder {folder} is not a folder") from None
    except OSError as exc:
        raise UserError(f"cannot create {what} folder {folder}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise UserError(f"{what} folder {folder} is not a folder")
    try:  # os.access says yes for root even on read-only mounts: really write.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rmpe-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{what} folder {folder} is not writable: {exc.strerror or exc}") from None
    return path


class Sink:
    """Base sink: no-op open/close."""

    def open(self, info: SourceInfo, config) -> None:
        pass

    def write(self, result) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class CocoJsonWriter(Sink):
    """COCO keypoint results: one JSON list, one entry per person per frame (``Poses.to_coco_results``).

    Keypoints are written in COCO-17 order whatever the pipeline's layout. After every frame the
    file on disk is a complete, valid JSON list: entries are written in place of the closing bracket,
    which is then written again.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = check_output_path(path, "JSON")
        self._f = None

    def open(self, info: SourceInfo, config) -> None:
        self._f = open(self.path, "w", encoding="utf-8")
        self._f.write("[")
        self._end = self._f.tell()
        self._count = 0
        self._finish()

    def _finish(self) -> None:
        self._f.write("\n]\n")
        self._f.flush()

    def write(self, result) -> None:
        poses: Poses = result.poses
        if poses.layout != COCO17:
            poses = poses.to_layout(COCO17)
        entries = poses.to_coco_results(result.index)
        if not entries:
            return
        buf = io.StringIO()
        for entry in entries:
            buf.write(",\n" if self._count else "\n")
            json.dump(entry, buf, separators=(",", ":"))
            self._count += 1
        self._f.seek(self._end)
        self._f.write(buf.getvalue())
        self._end = self._f.tell()
        self._finish()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class OpenPoseJsonWriter(Sink):
    """OpenPose-style JSON, one file per frame: ``<folder>/<stem>_<index:012d>_keypoints.json``.

    ``pose_keypoints_2d`` holds x, y, score per keypoint in the pipeline's layout (COCO-17 by
    default; OpenPose's own BODY_25 order is not produced); ``person_id`` is ``[track id]`` or
    ``[-1]``. Each file is written to a temporary name and renamed, so none is ever half-written.
    """

    def __init__(self, folder: str | os.PathLike, stem: str | None = None):
        self.folder = check_output_path(folder, "OpenPose JSON", is_dir=True)
        self.stem = stem

    def open(self, info: SourceInfo, config) -> None:
        if self.stem is None:
            self.stem = Path(str(info.name)).stem or "frame"

    def write(self, result) -> None:
        poses: Poses = result.poses
        people = [{
            "person_id": [int(poses.track_ids[i])],
            "pose_keypoints_2d": [round(float(v), 3) for v in poses.keypoints[i].reshape(-1)],
            "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
            "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
            "hand_right_keypoints_3d": [],
        } for i in range(len(poses))]
        doc = {"version": 1.3, "layout": poses.layout, "people": people}
        target = self.folder / f"{self.stem}_{result.index:012d}_keypoints.json"
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, target)


class CsvWriter(Sink):
    """CSV, one row per keypoint: frame, person, track, keypoint, x, y, score.

    ``person`` is the index within the frame, ``track`` the track id (-1 when untracked),
    ``keypoint`` the keypoint name. Flushed after every frame.
    """

    HEADER = ("frame", "person", "track", "keypoint", "x", "y", "score")

    def __init__(self, path: str | os.PathLike):
        self.path = check_output_path(path, "CSV")
        self._f = None

    def open(self, info: SourceInfo, config) -> None:
        self._f = open(self.path, "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._f)
        self._csv.writerow(self.HEADER)
        self._f.flush()

    def write(self, result) -> None:
        poses: Poses = result.poses
        if not len(poses):
            return
        names = get_skeleton(poses.layout).names
        k = poses.num_keypoints
        rows = []
        for i in range(len(poses)):
            tid = int(poses.track_ids[i])
            kp = poses.keypoints[i]
            rows.extend((result.index, i, tid, names[j], f"{kp[j, 0]:.2f}", f"{kp[j, 1]:.2f}", f"{kp[j, 2]:.4f}")
                        for j in range(k))
        self._csv.writerows(rows)
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
