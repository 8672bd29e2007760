"""What the player needs to know about its source, and error lines people can read.

``PlayerSource`` wraps the source a pipeline reads so the session can tell where the decoder is
(the last frame read) and when it has read the last frame of a file or image folder. The pipeline
runs seekable sources with ``hold_at_end``: it stays open at the end, waiting for a seek, so the
end of a video is a state the player can leave (Play, Step, seek, Loop) rather than a dead
pipeline. The session reports the end once the last frame read has also been shown.

``sentence`` turns the one-line errors of the lower layers (PyAV/FFmpeg, OSError) into a
sentence: no errno numbers, no exception class names, FFmpeg's phrases said plainly.
"""
from __future__ import annotations

import re
import threading

from core.errors import UserError

# FFmpeg / OS phrases → what they mean for someone opening a video, a folder or a stream.
_PHRASES = (
    (re.compile(r"invalid data found when processing input", re.I),
     "the data received is not a video this app can read (the server sent nothing usable, "
     "or the file is damaged)"),
    (re.compile(r"immediate exit requested|operation timed out|connection timed out|timed out", re.I),
     "no answer in time"),
    (re.compile(r"connection refused", re.I), "the server refused the connection"),
    (re.compile(r"connection reset by peer", re.I), "the server closed the connection"),
    (re.compile(r"no route to host|network is unreachable", re.I), "the host cannot be reached"),
    (re.compile(r"name or service not known|temporary failure in name resolution", re.I),
     "the host name is unknown"),
    (re.compile(r"server returned 404 not found", re.I), "the server has no such stream (404)"),
    (re.compile(r"server returned 40[13]", re.I), "the server refused access"),
    (re.compile(r"no such file or directory", re.I), "not found"),
    (re.compile(r"permission denied|operation not permitted", re.I), "permission denied"),
    (re.compile(r"no space left on device", re.I), "the disk is full"),
    (re.compile(r"end of file", re.I), "the data ended early"),
)
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*|\berrno -?\d+:?\s*", re.I)
_CLASS_PREFIX = re.compile(r"\b(?:[A-Z][A-Za-z]*(?:Error|Exception)|av\.error\.\w+): ")
_FILENAME_TAIL = re.compile(r":\s*'[^']*'$")  # OSError's ": '/path'" repeated after the message


def sentence(text: str) -> str:
    """One readable sentence for an error line: errno numbers and class names removed, FFmpeg's
    phrases replaced by plain words, a full stop (the first word keeps its case: lines start with
    what they are about, e.g. "video not found: …")."""
    text = " ".join(str(text).split())
    text = _ERRNO.sub("", text)
    text = _CLASS_PREFIX.sub("", text)
    for pattern, plain in _PHRASES:
        if pattern.search(text):
            text = _FILENAME_TAIL.sub("", text)
            text = pattern.sub(plain, text)
            break
    text = re.sub(r"\(\s*\)", "", text).strip(" :;,")
    if not text:
        return "something went wrong."
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def exception_sentence(exc: BaseException, what: str = "") -> str:
    """``sentence`` for an exception; ``what`` (e.g. "could not open demo.mp4") leads when the
    exception is not already a UserError, whose text names its subject."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, UserError) and what:
        text = f"{what}: {text}"
    return sentence(text)


class PlayerSource:
    """A seekable source seen by the player: the last frame read and whether the decoder has run
    past the end. Everything else is the wrapped source's (attributes are forwarded).

    ``on_exhausted()`` is called on the decoder thread when a read finds the end.
    """

    def __init__(self, source, on_exhausted=None):
        self._source = source
        self._on_exhausted = on_exhausted
        self._lock = threading.Lock()
        self.last_index: int | None = None  # index of the last frame read (None before any)
        self.position: int | None = None  # the last frame read or skipped: the next is position + 1
        self.exhausted = False  # the last read found the end; cleared by a seek

    def __getattr__(self, name):
        return getattr(self._source, name)

    @property
    def inner(self):
        return self._source

    def read(self):
        item = self._source.read()
        with self._lock:
            if item is None:
                self.exhausted = True
            else:
                self.last_index = self.position = int(item.index)
                self.exhausted = False
        if item is None and self._on_exhausted is not None:
            self._on_exhausted()
        return item

    def skip(self) -> bool:
        """Pass over the next frame (real-time playback of a file skips the late ones); False at
        the end. The last frame *read* stays the one the end is measured against."""
        skip = getattr(self._source, "skip", None)
        ok = skip() if skip is not None else self._source.read() is not None
        with self._lock:
            if ok:
                self.position = (self.position if self.position is not None else -1) + 1
            else:
                self.exhausted = True
        if not ok and self._on_exhausted is not None:
            self._on_exhausted()
        return ok

    def seek(self, index: int) -> None:
        with self._lock:
            self.exhausted = False
            self.last_index = self.position = int(index) - 1
        self._source.seek(index)

    def close(self) -> None:
        self._source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
