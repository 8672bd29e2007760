"""Frame sources: video file, camera, image folder or glob, stream URL, test pattern.

Every source has the same small interface, used by the pipeline's decode stage:

    name                 what to call it in messages
    fps                  nominal frames per second (float > 0)
    width, height        frame size in pixels
    num_frames           frame count when known (files, folders), else None
    live                 True when frames arrive in real time (camera, stream): stale ones may be dropped
    seekable             True when ``seek`` works
    read() -> SourceFrame | None      next frame, None at the end; raises UserError on bad data
    skip() -> bool                    pass over the next frame (False at the end); video files skip
                                      the RGB conversion (real-time playback of a file skips the
                                      frames inference cannot keep up with)
    seek(index)                       next ``read`` returns frame ``index`` (seekable sources)
    close()

Frames are RGB uint8 [H, W, 3]. ``SourceFrame.timestamp`` is the media time in seconds (the frame's
pts for files, seconds since opening for live sources); ``captured_at`` is ``time.perf_counter()``
when the frame became available, the start of the pipeline's latency measurement.

Opening checks everything it can up front (file exists, is a video, has frames; camera exists and
delivers a frame; URL connects within a timeout), so bad input is one clear ``UserError`` before any
work starts.
"""
from __future__ import annotations

import glob
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from core.errors import UserError, one_line

log = logging.getLogger("rmpe.io")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
DEFAULT_FPS = 30.0
CONNECT_TIMEOUT_S = 5.0  # URL connect / first frame
READ_TIMEOUT_S = 5.0  # a stalled stream ends with an error instead of hanging
CAMERA_FIRST_FRAME_TIMEOUT_S = 5.0


@dataclass
class SourceFrame:
    index: int
    timestamp: float
    image: np.ndarray
    captured_at: float


def is_url(spec: str) -> bool:
    return str(spec).lower().startswith(URL_SCHEMES)


class Source:
    """Base class: defaults for the optional parts of the interface."""

    name = "source"
    fps = DEFAULT_FPS
    width = 0
    height = 0
    num_frames: int | None = None
    live = False
    seekable = False

    def read(self) -> SourceFrame | None:  # pragma: no cover - interface
        raise NotImplementedError

    def skip(self) -> bool:
        return self.read() is not None

    def seek(self, index: int) -> None:
        raise UserError(f"{self.name}: this source cannot seek")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------
# Video files and stream URLs (PyAV)


class _AVSource(Source):
    """Shared PyAV decoding: frame-threaded decode, RGB conversion, pts → index and seconds."""

    _error_hint = "corrupt or truncated file?"

    def _open(self, target: str, options: dict | None = None, timeout=None) -> None:
        self._container = av.open(target, options=options or {}, timeout=timeout)
        if not self._container.streams.video:
            self._container.close()
            raise UserError(f"{self.name}: no video stream (zero-frame or audio-only file)")
        self._stream = self._container.streams.video[0]
        # Frame-threaded decoding inside FFmpeg: decode overlaps with our other stages.
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate and float(rate) > 0 else DEFAULT_FPS
        self._time_base = self._stream.time_base or Fraction(1, 1000)
        start = self._stream.start_time
        self._start = float(start * self._time_base) if start is not None else 0.0
        self._frames = None
        self._decoded = 0  # frames returned since open / last seek
        self._next_index = 0
        self._pending: av.VideoFrame | None = None
        self._reopen_target = (target, options, timeout)
        self._pending = self._next_av_frame()
        if self._pending is None:
            self._container.close()
            raise UserError(f"{self.name}: video has no frames")
        self.width, self.height = self._pending.width, self._pending.height
        self._out_size = None
        if getattr(self, "_scale_width", None) and self._scale_width != self.width:
            w = int(self._scale_width)
            h = max(2, int(round(self.height * w / self.width / 2)) * 2)
            self._out_size = (w, h)
            self.width, self.height = w, h

    def _next_av_frame(self) -> av.VideoFrame | None:
        if self._frames is None:
            self._frames = self._container.decode(self._stream)
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:
            raise UserError(f"{self.name}: decode error after frame {self._next_index}: {one_line(exc)} "
                            f"({self._error_hint})") from None

    def _check_complete(self) -> None:
        """Hook at the end of the stream (files check their frame count)."""

    def _frame_seconds(self, frame: av.VideoFrame) -> float | None:
        if frame.pts is None:
            return None
        return float(frame.pts * self._time_base) - self._start

    def read(self) -> SourceFrame | None:
        frame = self._pending if self._pending is not None else self._next_av_frame()
        self._pending = None
        if frame is None:
            self._check_complete()
            return None
        index = self._next_index
        self._next_index += 1
        seconds = self._frame_seconds(frame)
        timestamp = seconds if seconds is not None else index / self.fps
        if self._out_size is None:
            image = frame.to_ndarray(format="rgb24")
        else:  # scaled by swscale together with the RGB conversion
            image = frame.to_ndarray(format="rgb24", width=self._out_size[0], height=self._out_size[1],
                                     interpolation="AREA")
        return SourceFrame(index, timestamp, image, time.perf_counter())

    def skip(self) -> bool:
        """Decode the next frame (later frames depend on it) but do not convert it to RGB."""
        frame = self._pending if self._pending is not None else self._next_av_frame()
        self._pending = None
        if frame is None:
            self._check_complete()
            return False
        self._next_index += 1
        return True

    _close_lock = threading.Lock()  # PyAV frees the container twice if two threads close it at once

    def close(self) -> None:
        """Idempotent and safe from several threads (the GUI and a watcher may both close)."""
        with self._close_lock:
            container, self._container = getattr(self, "_container", None), None
            self._frames = None
        if container is not None:
            container.close()


class VideoFileSource(_AVSource):
    """A video file decoded with PyAV (any container/codec FFmpeg reads).

    ``width`` scales frames to that width (height keeps the aspect ratio, rounded to even).
    """

    seekable = True

    def __init__(self, path: str | os.PathLike, width: int | None = None):
        self._scale_width = width
        self.path = Path(path)
        self.name = str(path)
        if not self.path.exists():
            raise UserError(f"video not found: {path}")
        if self.path.is_dir():
            raise UserError(f"{path} is a folder; use --images for a folder of images")
        try:
            self._open(str(self.path))
        except av.error.FFmpegError as exc:
            raise UserError(f"{path} is not a readable video ({one_line(exc)})") from None
        frames = self._stream.frames
        # An exact count comes from the container's index (MP4/MOV); others are estimated.
        self._exact_count = bool(frames and frames > 0)
        self.num_frames = int(frames) if self._exact_count else self._estimate_frames()

    def _check_complete(self) -> None:
        # A truncated file often ends "cleanly" at the cut: compare with the container's index.
        if self._exact_count and self._next_index < self.num_frames - 1:
            raise UserError(f"{self.name}: video ended after frame {self._next_index} of {self.num_frames} "
                            f"(truncated or corrupt file?)")

    def _estimate_frames(self) -> int | None:
        duration = self._stream.duration
        if duration is None:
            return None
        return max(1, round(float(duration * self._time_base) * self.fps))

    def seek(self, index: int) -> None:
        """Position so that the next ``read`` returns frame ``index`` (clamped to the video)."""
        index = max(0, int(index))
        if self.num_frames is not None:
            index = min(index, self.num_frames - 1)
        target = self._start + index / self.fps
        self._frames = None
        self._pending = None
        self._container.seek(int(target / self._time_base), stream=self._stream, backward=True, any_frame=False)
        half = 0.5 / self.fps
        # Decode forward from the keyframe before the target.
        while True:
            frame = self._next_av_frame()
            if frame is None:
                break
            seconds = self._frame_seconds(frame)
            if seconds is None or seconds + self._start >= target - half:
                self._pending = frame
                break
        self._next_index = index


class URLSource(_AVSource):
    """A network stream (RTSP, RTMP, HTTP, ...) read with PyAV; connects with a timeout."""

    live = True
    _error_hint = "stream stalled or dropped?"

    def __init__(self, url: str, connect_timeout: float = CONNECT_TIMEOUT_S, read_timeout: float = READ_TIMEOUT_S):
        self.name = url
        options = {"rtsp_transport": "tcp"} if url.lower().startswith("rtsp") else {}
        self._opened_at = time.perf_counter()
        try:
            self._open(url, options, timeout=(connect_timeout, read_timeout))
        except av.error.ExitError:  # our timeout interrupted FFmpeg
            raise UserError(f"cannot open stream {url}: no answer within {connect_timeout:g} s") from None
        except av.error.FFmpegError as exc:
            raise UserError(f"cannot open stream {url}: {one_line(exc)}") from None
        except (OSError, TimeoutError) as exc:  # PyAV maps some network failures to builtins
            raise UserError(f"cannot open stream {url}: {one_line(exc)}") from None

    def read(self) -> SourceFrame | None:
        try:
            item = super().read()
        except (OSError, TimeoutError) as exc:
            raise UserError(f"stream {self.name}: read failed after frame {self._next_index}: {one_line(exc)}") from None
        if item is not None:
            # Live: time since opening, not stream pts (which may start anywhere or jump).
            item.timestamp = item.captured_at - self._opened_at
        return item


# --------------------------------------------------------------------------------------------
# Camera (OpenCV)


class CameraSource(Source):
    """A local camera by index (OpenCV ``VideoCapture``)."""

    live = True

    def __init__(self, index: int, width: int | None = None, height: int | None = None):
        self.index = int(index)
        self.name = f"camera {self.index}"
        if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{self.index}"):
            raise UserError(f"camera {self.index} not found (no /dev/video{self.index})")
        self._cap = _quiet_open_camera(self.index)
        if self._cap is None or not self._cap.isOpened():
            raise UserError(f"camera {self.index} could not be opened")
        if width and height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        # Keep the driver's own queue short: we always want the newest frame.
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 1000 else DEFAULT_FPS
        self._opened_at = time.perf_counter()
        self._next_index = 0
        first = _call_with_timeout(self._grab, CAMERA_FIRST_FRAME_TIMEOUT_S)
        if first is None:
            self._cap.release()
            raise UserError(f"camera {self.index} delivers no frames")
        self._pending = first
        self.height, self.width = first.image.shape[:2]

    def _grab(self) -> SourceFrame | None:
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        now = time.perf_counter()
        item = SourceFrame(self._next_index, now - self._opened_at, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), now)
        self._next_index += 1
        return item

    def read(self) -> SourceFrame | None:
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        return self._grab()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _quiet_open_camera(index: int):
    """Open a camera without OpenCV's multi-line warnings on stderr."""
    try:
        old = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # builds without the logging module
        old = None
    try:
        return cv2.VideoCapture(index)
    finally:
        if old is not None:
            cv2.utils.logging.setLogLevel(old)


def _call_with_timeout(fn, timeout: float):
    """Run ``fn`` in a daemon thread; None if it does not return in time (a camera that hangs)."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True, name="camera-open")
    thread.start()
    thread.join(timeout)
    return box[0] if box else None


# --------------------------------------------------------------------------------------------
# Image folder or glob


class ImageSource(Source):
    """Images from a folder (sorted by name) or a glob pattern, at a nominal ``fps``.

    Each image keeps its own geometry: it is delivered at its own size, turned upright by its EXIF
    orientation, so keypoints come out in that image's own pixels (``sizes`` lists every image's
    (width, height); ``width``/``height`` are the first image's; ``mixed_sizes`` says whether they
    differ — a video output then cannot hold them and the run CLI refuses ``--out``). The pipeline
    treats a change of frame size as a new scene (ROIs, tracks and smoothing start afresh).

    Headers are read up front (cheap): a file that is not a readable image is skipped with a
    warning naming it, or is a ``UserError`` when ``strict``. A truncated image (JPEG without its
    end marker, PNG without IEND) is decoded as far as it goes with a warning naming it (fatal
    when ``strict``; ``skip_unreadable`` is the inverse of ``strict``). Skipped files are named in
    ``skipped``. Frame ``index`` is the file's position in ``files``; a file that fails to decode
    later is skipped (its index is missing from the outputs).
    """

    seekable = True

    def __init__(self, spec: str | os.PathLike, fps: float = DEFAULT_FPS, strict: bool = False,
                 skip_unreadable: bool | None = None):
        spec = str(spec)
        self.name = spec
        self.strict = bool(strict) if skip_unreadable is None else not skip_unreadable
        self.skipped: set[str] = set()  # files passed over (unreadable), for a viewer to report
        is_glob = False
        if os.path.isdir(spec):
            files = [os.path.join(spec, f) for f in os.listdir(spec)]
        elif any(c in spec for c in "*?["):
            files, is_glob = glob.glob(spec), True
        elif os.path.isfile(spec):
            files = [spec]
        else:
            raise UserError(f"image folder or pattern not found: {spec}")
        candidates = sorted(f for f in files if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(f))
        if not candidates:
            where = f"match {spec}" if is_glob else f"in {spec}"
            raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) {where}")
        self.files, self.sizes = [], []
        for path in candidates:
            size = self._header_size(path)
            if size is not None:
                self.files.append(path)
                self.sizes.append(size)
        if not self.files:
            raise UserError(f"no readable images in {spec} ({len(candidates)} skipped)")
        self.fps = float(fps)
        self.num_frames = len(self.files)
        self.width, self.height = self.sizes[0]
        self.mixed_sizes = len(set(self.sizes)) > 1
        self._next_index = 0

    def _skip(self, path: str, why: str) -> None:
        if self.strict:
            raise UserError(f"image {path}: {why} (--strict-images)")
        self.skipped.add(path)
        log.warning("skipping image %s: %s", path, why)

    def _header_size(self, path: str) -> tuple[int, int] | None:
        """(width, height) after EXIF orientation, from the header only; None (warned) if unreadable."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                w, h = im.size
                orientation = im.getexif().get(EXIF_ORIENTATION, 1)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            self._skip(path, f"not a readable image ({one_line(exc)})")
            return None
        return (h, w) if orientation in (5, 6, 7, 8) else (w, h)

    def _load(self, i: int) -> np.ndarray | None:
        """RGB uint8 of file ``i``, upright; None (warned) when it cannot be decoded."""
        from PIL import Image, ImageFile, ImageOps

        path = self.files[i]
        truncated = _looks_truncated(path)
        if truncated:
            if self.strict:
                raise UserError(f"image {path} is truncated (--strict-images)")
            log.warning("image %s is truncated: using the part that decodes", path)
        try:
            with Image.open(path) as im:
                previous = ImageFile.LOAD_TRUNCATED_IMAGES
                ImageFile.LOAD_TRUNCATED_IMAGES = truncated  # only the decode thread reads images
                try:
                    im.load()
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = previous
                upright = ImageOps.exif_transpose(im)
                rgb = np.asarray(upright.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:
            self._skip(path, f"cannot be decoded ({one_line(exc)})")
            return None
        return np.ascontiguousarray(rgb)

    def read(self) -> SourceFrame | None:
        while self._next_index < len(self.files):
            i = self._next_index
            self._next_index += 1
            image = self._load(i)
            if image is not None:
                return SourceFrame(i, i / self.fps, image, time.perf_counter())
        return None

    def seek(self, index: int) -> None:
        self._next_index = min(max(0, int(index)), len(self.files) - 1)


EXIF_ORIENTATION = 0x0112
JPEG_END = b"\xff\xd9"
PNG_END = b"IEND\xaeB`\x82"


def _looks_truncated(path: str) -> bool:
    """JPEG without its end-of-image marker or PNG without its IEND chunk (trailing padding allowed)."""
    lower = path.lower()
    if not lower.endswith((".jpg", ".jpeg", ".png")):
        return False
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().rstrip(b"\x00\r\n \t")
    except OSError:
        return False
    return not tail.endswith(PNG_END if lower.endswith(".png") else JPEG_END)


# --------------------------------------------------------------------------------------------
# Synthetic and composed sources


class PatternSource(Source):
    """A moving test pattern at a given size and rate; frame ``i`` stores ``i`` in pixel (0, 0).

    ``live=True`` paces frames in real time at ``fps`` (a camera stand-in that is faster than any
    real one, for measuring latency and dropping); otherwise frames come as fast as they are read.
    The index is stored as three base-256 digits in the first pixel (``pattern_index`` reads it
    back), so a stage can check which frame it was given.
    """

    seekable = True

    def __init__(self, width: int = 320, height: int = 240, fps: float = DEFAULT_FPS,
                 num_frames: int | None = None, live: bool = False):
        self.name = f"pattern {width}x{height}@{fps:g}"
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.num_frames, self.live = num_frames, live
        self._next_index = 0
        self._t0 = time.perf_counter()
        yy, xx = np.mgrid[0:self.height, 0:self.width]
        self._base = np.stack([xx * 255 // max(self.width - 1, 1), yy * 255 // max(self.height - 1, 1),
                               np.full_like(xx, 96)], -1).astype(np.uint8)

    def read(self) -> SourceFrame | None:
        i = self._next_index
        if self.live:  # like a camera: frames nobody read are gone, the next one is waited for
            i = max(i, int((time.perf_counter() - self._t0) * self.fps))
        if self.num_frames is not None and i >= self.num_frames:
            return None
        if self.live:
            delay = self._t0 + i / self.fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        image = self._base.copy()
        side = max(4, min(self.width, self.height) // 8)
        x = (i * 4) % max(self.width - side, 1)
        image[self.height // 2 - side // 2:self.height // 2 + side // 2, x:x + side] = 255
        image[0, 0] = (i // 65536 % 256, i // 256 % 256, i % 256)
        self._next_index = i + 1
        return SourceFrame(i, i / self.fps, image, time.perf_counter())

    def seek(self, index: int) -> None:
        self._next_index = max(0, int(index))
        self._t0 = time.perf_counter() - self._next_index / self.fps


def pattern_index(image: np.ndarray) -> int:
    """Frame index stored by ``PatternSource`` in pixel (0, 0)."""
    r, g, b = (int(v) for v in image[0, 0])
    return r * 65536 + g * 256 + b


class LoopSource(Source):
    """Repeats a seekable source until ``num_frames`` frames were read (indices and times keep rising)."""

    def __init__(self, source: Source, num_frames: int):
        if not source.seekable:
            raise UserError(f"{source.name}: cannot loop a source that cannot seek")
        self.source = source
        self.name = f"{source.name} (looped)"
        self.fps, self.width, self.height = source.fps, source.width, source.height
        self.num_frames = int(num_frames)
        self._count = 0
        self._offset_t = 0.0
        self._last_t = 0.0

    def read(self) -> SourceFrame | None:
        if self._count >= self.num_frames:
            return None
        item = self.source.read()
        if item is None:
            if self._count == 0:
                return None
            self.source.seek(0)
            self._offset_t = self._last_t + 1.0 / self.fps
            item = self.source.read()
            if item is None:
                return None
        item.index = self._count
        item.timestamp += self._offset_t
        self._last_t = item.timestamp
        self._count += 1
        return item

    def close(self) -> None:
        self.source.close()


class LimitSource(Source):
    """The first ``num_frames`` frames of another source."""

    def __init__(self, source: Source, num_frames: int):
        self.source = source
        self.name, self.fps, self.width, self.height = source.name, source.fps, source.width, source.height
        self.live, self.seekable = source.live, source.seekable
        self.limit = int(num_frames)
        self.num_frames = self.limit if source.num_frames is None else min(self.limit, source.num_frames)

    def read(self) -> SourceFrame | None:
        item = self.source.read()
        if item is None or item.index >= self.limit:
            return None
        return item

    def seek(self, index: int) -> None:
        self.source.seek(min(int(index), self.limit - 1))

    def close(self) -> None:
        self.source.close()


# --------------------------------------------------------------------------------------------


def resolve_video(spec: str) -> str:
    """``demo`` → the fetched demo video; anything else unchanged."""
    if spec == "demo":
        from core.assets import artefact_path

        return str(artefact_path("demo_video"))
    return spec


def open_source(video: str | None = None, camera: int | None = None, images: str | None = None,
                url: str | None = None, fps: float | None = None, strict_images: bool = False) -> Source:
    """Open exactly one of the source kinds (the CLI's --video / --camera / --images / --url)."""
    given = [k for k, v in (("video", video), ("camera", camera), ("images", images), ("url", url)) if v is not None]
    if len(given) != 1:
        raise UserError("give exactly one input: --video, --camera, --images or --url")
    if video is not None:
        if is_url(video):
            return URLSource(video)
        return VideoFileSource(resolve_video(video))
    if camera is not None:
        return CameraSource(camera)
    if images is not None:
        return ImageSource(images, fps or DEFAULT_FPS, strict=strict_images)
    return URLSource(url)
