"""The video widget: paints the latest annotated frame, scaled to fit, without copying it.

Scaling a large frame with smooth filtering costs the GUI thread several ms per frame, so the
session pre-scales the frame to ``display_box`` on the pipeline's thread (OpenCV releases the GIL)
and the view just blits it; any other frame (just after a resize, overlay toggled) is scaled here.
"""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets


def frame_to_qimage(frame: np.ndarray) -> QtGui.QImage:
    """Wrap a frame as a QImage that shares its memory: RGB uint8 [H, W, 3], or [H, W, 4] in
    B, G, R, X byte order (Qt's native 32-bit layout, which it blits without converting).

    The caller must keep ``frame`` alive as long as the image is used (VideoView holds both).
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB uint8 [H, W, 3] frame, got {frame.dtype} {frame.shape}")
    if not frame.flags.c_contiguous:
        frame = np.ascontiguousarray(frame)
    h, w = frame.shape[:2]
    fmt = QtGui.QImage.Format.Format_RGB888 if frame.shape[2] == 3 else QtGui.QImage.Format.Format_RGB32
    return QtGui.QImage(frame.data, w, h, frame.strides[0], fmt)


def fit_size(frame_w: int, frame_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Largest (w, h) with the frame's aspect inside the box (both at least 1 px)."""
    scale = min(box_w / frame_w, box_h / frame_h)
    return max(1, int(frame_w * scale)), max(1, int(frame_h * scale))


class VideoView(QtWidgets.QWidget):
    """Shows one frame at a time, letterboxed; a centred hint while there is no frame.

    Local files dropped on it are announced through ``files_dropped``.
    """

    files_dropped = QtCore.Signal(list)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._frame: np.ndarray | None = None  # keeps the QImage's memory alive
        self._image: QtGui.QImage | None = None
        self._display: np.ndarray | None = None  # pre-scaled copy of the frame, if it fits the box
        self._display_image: QtGui.QImage | None = None
        self.display_box: tuple[int, int] | None = None  # device pixels; read by the pipeline thread
        self._hint = "Open a video, a camera, an image folder or a URL (or drop a file here)"
        self.frames_shown = 0

    # -- content -------------------------------------------------------------------------------
    def set_frame(self, frame: np.ndarray, display: np.ndarray | None = None) -> None:
        """Show ``frame``; ``display`` is the same picture already scaled to ``display_box``
        (B, G, R, X bytes: see ``frame_to_qimage``)."""
        image = frame_to_qimage(frame)
        self._frame, self._image = frame, image
        self._display = display
        self._display_image = frame_to_qimage(display) if display is not None else None
        self.frames_shown += 1
        self.update()

    def clear(self, hint: str | None = None) -> None:
        self._frame = self._image = self._display = self._display_image = None
        if hint is not None:
            self._hint = hint
        self.update()

    def image(self) -> QtGui.QImage | None:
        """A detached copy of the frame on show (full resolution), or None."""
        return None if self._image is None else self._image.copy()

    def frame_size(self) -> tuple[int, int] | None:
        return None if self._image is None else (self._image.width(), self._image.height())

    def target_rect(self) -> QtCore.QRect:
        """Where the frame lands in the widget: the largest centred rect with the frame's aspect."""
        if self._image is None:
            return QtCore.QRect()
        w, h = fit_size(self._image.width(), self._image.height(), self.width(), self.height())
        return QtCore.QRect((self.width() - w) // 2, (self.height() - h) // 2, w, h)

    def blits(self) -> bool:
        """True when the frame on show is painted 1:1 from its pre-scaled copy."""
        if self._display_image is None:
            return False
        ratio = self.devicePixelRatioF()
        rect = self.target_rect()
        return (self._display_image.width(), self._display_image.height()) == \
            (round(rect.width() * ratio), round(rect.height() * ratio))

    # -- Qt events -----------------------------------------------------------------------------
    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), QtGui.QColor(18, 18, 18))
        if self._image is None:
            painter.setPen(QtGui.QColor(170, 170, 170))
            painter.drawText(self.rect().adjusted(20, 20, -20, -20),
                             QtCore.Qt.AlignmentFlag.AlignCenter | QtCore.Qt.TextFlag.TextWordWrap, self._hint)
        elif self.blits():
            self._display_image.setDevicePixelRatio(self.devicePixelRatioF())
            painter.drawImage(self.target_rect().topLeft(), self._display_image)
        else:
            painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(self.target_rect(), self._image)
        painter.end()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802
        ratio = self.devicePixelRatioF()
        self.display_box = (round(self.width() * ratio), round(self.height() * ratio))
        super().resizeEvent(event)

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802
        paths = _local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)


def _local_paths(mime: QtCore.QMimeData) -> list[str]:
    if not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
