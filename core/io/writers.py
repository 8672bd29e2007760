"""Result sinks: COCO-results JSON, OpenPose-style per-frame JSON, CSV; the shared sink interface.

A sink is any object with

    open(info: SourceInfo, config: Config)   called once before the first frame
    write(result)                            one finished frame (a ``core.pipeline.FrameResult``)
    close()                                  flush and finalise; safe to call twice

Constructing a sink checks its output path (parent folder created if missing, a probe file written
and removed), so an unwritable destination is one clear error before any work starts.

File sinks write to a temporary name in the output's folder and rename it onto the output path
when closed (``FileSink``): the output path only ever holds a finished file. The pipeline closes
the sinks on a normal end, on a stage failure and when the run is interrupted (Ctrl-C, SIGTERM,
SIGHUP), so those runs keep everything written up to the last finished frame. A write error (disk
full) removes the unfinished file and is one ``UserError`` naming the output. ``finished`` tells
whether a sink's output is complete.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError, one_line
from core.fileio import atomic_write_text, commit, temporary_path
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
    """Base sink: no-op open/close. ``finished`` is True once every file it writes is complete."""

    finished = False

    def open(self, info: SourceInfo, config) -> None:
        pass

    def write(self, result) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        self.finished = True

    def abort(self) -> None:
        """Drop unfinished work (a failed run start, a write error); never raises."""


class FileSink(Sink):
    """One output file written under a temporary name in its folder and renamed onto ``path`` by
    ``close`` (after an fsync), so ``path`` only ever holds a finished file.

    While running, the data goes to ``writing_path`` (``.rmpe-tmp-<name>.<random>.part``); a process
    killed outright leaves that ``.part`` file, never a half-written ``path``. A write error (disk
    full, file-size limit) removes the temporary file and raises one ``UserError`` naming ``path``;
    ``finished`` stays False and nothing is renamed.
    """

    what = "output"

    def __init__(self, path: str | os.PathLike):
        self.path = check_output_path(path, self.what)
        self.writing_path: Path | None = None
        self.finished = False

    def _begin(self) -> Path:
        self.finished = False
        self.writing_path = temporary_path(self.path)
        return self.writing_path

    def _release(self) -> None:
        """Close open handles (subclasses); errors from a failing disk are the caller's business."""

    def _finalise(self) -> None:
        tmp, self.writing_path = self.writing_path, None
        if tmp is None:
            return
        try:
            commit(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise self._error(exc) from None
        self.finished = True

    def _error(self, exc: BaseException) -> UserError:
        why = getattr(exc, "strerror", None) or one_line(exc)
        return UserError(f"could not write {self.what} {self.path}: {why}; the unfinished file was removed "
                         f"and {self.path} not written", exit_code=1)

    def _fail(self, exc: BaseException) -> UserError:
        """Abort after a write error and return the one-line error to raise."""
        self.abort()
        return self._error(exc)

    def abort(self) -> None:
        try:
            self._release()
        except Exception:  # noqa: BLE001 - aborting: the file is removed anyway
            pass
        tmp, self.writing_path = self.writing_path, None
        if tmp is not None:
            tmp.unlink(missing_ok=True)


class _TextFileSink(FileSink):
    """A ``FileSink`` writing through one open text file ``_f`` (opened by the subclass's ``open``):
    ``close`` closes it and renames the finished file onto ``path``; a sink never opened, or
    aborted, closes to nothing."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self._f = None

    def _release(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            f.close()

    def close(self) -> None:
        if self._f is None:
            return
        try:
            self._release()
        except OSError as exc:
            raise self._fail(exc) from None
        self._finalise()


class CocoJsonWriter(_TextFileSink):
    """COCO keypoint results: one JSON list, one entry per person per frame (``Poses.to_coco_results``).

    Keypoints are written in COCO-17 order whatever the pipeline's layout. After every frame the
    file being written (``writing_path``) is a complete, valid JSON list: entries are written in
    place of the closing bracket, which is then written again; ``close`` renames it onto ``path``.
    """

    what = "JSON"

    def open(self, info: SourceInfo, config) -> None:
        try:
            self._f = open(self._begin(), "w", encoding="utf-8")
            self._f.write("[")
            self._end = self._f.tell()
            self._count = 0
            self._finish()
        except OSError as exc:
            raise self._fail(exc) from None

    def _finish(self) -> None:
        self._f.write("\n]\n")
        self._f.flush()

    def write(self, result) -> None:
        if self._f is None:
            return
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
        try:
            self._f.seek(self._end)
            self._f.write(buf.getvalue())
            self._end = self._f.tell()
            self._finish()
        except OSError as exc:
            raise self._fail(exc) from None


# OpenPose's BODY_25 keypoint order (OpenPose doc/02_output.md, "Pose Output Format (BODY_25)").
BODY_25 = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
           "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
           "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
# BODY_25 index of each COCO-17 keypoint (nose, l/r eye, l/r ear, l/r shoulder, ... l/r ankle).
COCO17_TO_BODY25 = (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)


def to_body25(keypoints: "np.ndarray") -> "np.ndarray":
    """COCO-17 keypoints [N, 17, 3] → OpenPose BODY_25 [N, 25, 3].

    The 17 points go to their BODY_25 slots; Neck is the midpoint of the shoulders and MidHip of
    the hips when both points have a score > 0 (score: the lower of the two), else (0, 0, 0), as
    OpenPose writes a missing point; the six foot points are (0, 0, 0) (COCO-17 has none).
    """
    import numpy as np

    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 17, 3)
    out = np.zeros((kp.shape[0], 25, 3))
    out[:, COCO17_TO_BODY25] = kp
    for slot, (a, b) in ((1, (5, 6)), (8, (11, 12))):
        both = (kp[:, a, 2] > 0) & (kp[:, b, 2] > 0)
        out[both, slot, :2] = (kp[both, a, :2] + kp[both, b, :2]) / 2
        out[both, slot, 2] = np.minimum(kp[both, a, 2], kp[both, b, 2])
    return out


class OpenPoseJsonWriter(Sink):
    """OpenPose JSON, one file per frame: ``<folder>/<stem>_<index:012d>_keypoints.json``.

    The layout OpenPose's own tools read: ``{"version": 1.3, "people": [...]}``, each person with
    ``pose_keypoints_2d`` = 75 values (x, y, score for the 25 BODY_25 points, see ``to_body25``;
    other layouts are converted to COCO-17 first), the empty face/hand/3-D arrays, and
    ``person_id`` = ``[track id]`` or ``[-1]``. Each file is written atomically (``core.fileio``),
    so none is ever half-written.
    """

    def __init__(self, folder: str | os.PathLike, stem: str | None = None):
        self.folder = check_output_path(folder, "OpenPose JSON", is_dir=True)
        self.path = self.folder
        self.stem = stem

    def open(self, info: SourceInfo, config) -> None:
        self.finished = False
        if self.stem is None:
            self.stem = Path(str(info.name)).stem or "frame"

    def write(self, result) -> None:
        poses: Poses = result.poses
        if poses.layout != COCO17:
            poses = poses.to_layout(COCO17)
        body25 = to_body25(poses.keypoints)
        people = [{
            "person_id": [int(poses.track_ids[i])],
            "pose_keypoints_2d": [round(float(v), 3) for v in body25[i].reshape(-1)],
            "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
            "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
            "hand_right_keypoints_3d": [],
        } for i in range(len(poses))]
        target = self.folder / f"{self.stem}_{result.index:012d}_keypoints.json"
        try:
            atomic_write_text(target, json.dumps({"version": 1.3, "people": people}, separators=(",", ":")))
        except OSError as exc:
            why = exc.strerror or one_line(exc)
            raise UserError(f"could not write OpenPose JSON {target}: {why}; frames before it are complete",
                            exit_code=1) from None


class CsvWriter(_TextFileSink):
    """CSV, one row per keypoint: frame, person, track, keypoint, x, y, score.

    ``person`` is the index within the frame, ``track`` the track id (-1 when untracked),
    ``keypoint`` the keypoint name. Flushed after every frame (whole rows: the file being written
    is valid CSV up to the last finished frame); ``close`` renames it onto ``path``.
    """

    what = "CSV"
    HEADER = ("frame", "person", "track", "keypoint", "x", "y", "score")

    def open(self, info: SourceInfo, config) -> None:
        try:
            self._f = open(self._begin(), "w", encoding="utf-8", newline="")
            self._csv = csv.writer(self._f)
            self._csv.writerow(self.HEADER)
            self._f.flush()
        except OSError as exc:
            raise self._fail(exc) from None

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
        if self._f is None:
            return
        try:
            self._csv.writerows(rows)
            self._f.flush()
        except OSError as exc:
            raise self._fail(exc) from None
