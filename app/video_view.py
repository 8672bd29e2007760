"""The video widget: paints the latest annotated frame, scaled to fit, without copying it."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets


def frame_to_qimage(frame: np.ndarray) -> QtGui.QImage:
    """Wrap an RGB uint8 [H, W, 3] array as a QImage that shares its memory.

    The caller must keep ``frame`` alive as long as the image is used (VideoView holds both).
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 [H, W, 3] frame, got {frame.dtype} {frame.shape}")
    if not frame.flags.c_contiguous:
        frame = np.ascontiguousarray(frame)
    h, w = frame.shape[:2]
    return QtGui.QImage(frame.data, w, h, frame.strides[0], QtGui.QImage.Format.Format_RGB888)


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
        self._hint = "Open a video, a camera, an image folder or a URL (or drop a file here)"
        self.frames_shown = 0

    # -- content -------------------------------------------------------------------------------
    def set_frame(self, frame: np.ndarray) -> None:
        image = frame_to_qimage(frame)
        self._frame, self._image = frame, image
        self.frames_shown += 1
        self.update()

    def clear(self, hint: str | None = None) -> None:
        self._frame = self._image = None
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
        size = self._image.size().scaled(self.size(), QtCore.Qt.AspectRatioMode.KeepAspectRatio)
        x = (self.width() - size.width()) // 2
        y = (self.height() - size.height()) // 2
        return QtCore.QRect(x, y, size.width(), size.height())

    # -- Qt events -----------------------------------------------------------------------------
    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), QtGui.QColor(18, 18, 18))
        if self._image is None:
            painter.setPen(QtGui.QColor(170, 170, 170))
            painter.drawText(self.rect().adjusted(20, 20, -20, -20),
                             QtCore.Qt.AlignmentFlag.AlignCenter | QtCore.Qt.TextFlag.TextWordWrap, self._hint)
        else:
            painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(self.target_rect(), self._image)
        painter.end()

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
