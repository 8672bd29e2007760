"""Rendered H.264 MP4 through PyAV (libx264, yuv420p).

OpenCV's ``VideoWriter`` cannot write H.264 in the headless wheels, so frames go to FFmpeg's
libx264 through PyAV. The output keeps the input's frame size and frame rate:

- file sources: constant frame rate, one output frame per processed frame (pts = frame count);
- live sources: frames carry their capture times (millisecond time base), so a run that dropped
  stale frames still plays back at real speed.

Even dimensions: yuv420p subsamples chroma 2×2, so libx264 needs an even width and height. An odd
dimension is padded by one pixel (edge replicated, at the right or bottom) rather than cropped, so no
image content is lost; the output is then one pixel wider or taller than the input.

Cost: the encoder shares the CPU with the models, so the default x264 preset is ``superfast``:
measured here on 1768×994 frames it needs ~20 ms of CPU per frame against ~26 ms for ``veryfast``
(whose files are half the size); ``preset`` and ``crf`` are arguments of ``VideoWriter``.

The file is written under a temporary name and finalised (encoder flushed, index written, renamed
onto the output path) by ``close``, which the pipeline calls on a normal end, on a stage failure
and on Ctrl-C / SIGTERM / SIGHUP, so the MP4 is playable up to the last frame written. A write
error removes the unfinished file (``FileSink``). The container follows the suffix (``.mp4``/
``.m4v``/``.mov``: MP4/QuickTime, ``.mkv``: Matroska); any other suffix (``.avi``) is refused
up front rather than writing MP4 bytes under a misleading name.
"""
from __future__ import annotations

import os
from fractions import Fraction

import av
import cv2
import numpy as np

from core.errors import UserError
from core.io.writers import FileSink, SourceInfo

# Containers this writer produces, by file suffix: H.264 in MP4, or in Matroska for .mkv.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def check_video_suffix(path: str | os.PathLike) -> str:
    """The container format for ``path``'s suffix; UserError for any other (e.g. .avi: an AVI with
    H.264 is not what players expect of .avi, and writing MP4 bytes under .avi would mislabel it)."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in CONTAINERS:
        raise UserError(f"--out {path}: the video is H.264 in an MP4 container; name it .mp4 "
                        f"(also .m4v, .mov, .mkv), not {suffix or 'no suffix'}")
    return CONTAINERS[suffix]


class VideoWriter(FileSink):
    """Writes each result's rendered frame (or the raw frame when the pipeline does not render).

    Every frame must have the size given to ``open`` (a video has one frame size); another size
    is a ``UserError``. The file is written under a temporary name and renamed by ``close``.
    """

    what = "video"

    def __init__(self, path: str | os.PathLike, preset: str = "superfast", crf: int = 20):
        self.format = check_video_suffix(path)
        super().__init__(path)
        self.preset, self.crf = preset, int(crf)
        self._container = None
        self.frames_written = 0

    def open(self, info: SourceInfo, config) -> None:
        self._config = config
        self._live = info.live
        self._size = (info.height, info.width)
        self._pad = (info.height % 2, info.width % 2)
        options = {"movflags": "+faststart"} if self.format in ("mp4", "mov") else {}
        try:
            self._container = av.open(str(self._begin()), "w", format=self.format, options=options)
        except (OSError, av.error.FFmpegError) as exc:
            raise self._fail(exc) from None
        rate = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(30)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width = info.width + self._pad[1]
        stream.height = info.height + self._pad[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": self.preset, "crf": str(self.crf)}
        self._time_base = Fraction(1, 1000) if self._live else 1 / rate
        stream.codec_context.time_base = self._time_base
        self._stream = stream
        self._last_pts = -1
        self._t0 = None

    def write(self, result) -> None:
        if self._container is None:
            return
        image = result.rendered if getattr(result, "rendered", None) is not None else result.frame
        if image.shape[:2] != self._size:
            self.abort()
            raise UserError(f"--out {self.path}: frame {result.index} is {image.shape[1]}x{image.shape[0]}, the video "
                            f"is {self._size[1]}x{self._size[0]}; a video needs one frame size (unfinished video "
                            "removed)", exit_code=1)
        if self._pad != (0, 0):
            image = np.pad(image, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        # OpenCV's RGB → I420 (BT.601, limited range: what swscale does by default) costs ~1 ms of CPU
        # per 1768×994 frame against ~6 ms for PyAV's reformat.
        yuv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YUV_I420)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        if self._live:
            if self._t0 is None:
                self._t0 = result.timestamp
            pts = max(int(round((result.timestamp - self._t0) * 1000)), self._last_pts + 1)
        else:
            pts = self.frames_written
        frame.pts, frame.time_base = pts, self._time_base
        self._last_pts = pts
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (OSError, av.error.FFmpegError) as exc:
            raise self._fail(exc) from None
        self.frames_written += 1

    def _release(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def close(self) -> None:
        container = self._container
        if container is None:
            return
        try:
            for packet in self._stream.encode():  # flush frames still in the encoder
                container.mux(packet)
            self._release()
            self._check_written()
        except (OSError, av.error.FFmpegError) as exc:
            raise self._fail(exc) from None
        self._finalise()

    def _check_written(self) -> None:
        """FFmpeg may drop an error while writing the index at close: read the header back."""
        with av.open(str(self.writing_path)) as c:
            frames = c.streams.video[0].frames if c.streams.video else -1
        if self.format != "matroska" and frames != self.frames_written:
            raise OSError(0, f"the file holds {frames} of {self.frames_written} frames (incomplete write)")

