"""Main window: video view with the skeleton overlay, transport bar, live controls, performance
panel, recording and screenshots. Errors appear in a bar above the video, never as a crash.

The player: files play at their own pace (frames dropped when inference falls behind) unless
"Every frame" is on. Pause keeps the frame on show; Step shows the next frame; a click on the
seek groove jumps there. The end of a file is a state: Play, Step, a seek or Loop leave it.
A recording runs from Record to Stop across loops, seeks and pauses (Record while paused saves
the frame on show); its folder is chosen once and remembered.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.controls import ControlsPanel
from app.perf_panel import FPS_WINDOW_S, TICK_S, PerfPanel
from app.playback import exception_sentence, sentence
from app.recorder import Recorder
from app.session import PipelineSession, SessionInfo
from app.settings import Settings
from app.sources_dialog import (SourceSpec, ask_camera, ask_image_folder, ask_url, ask_video_file, list_cameras,
                                spec_for_path)
from app.video_view import VideoView
from core.config import Config
from core.errors import UserError

log = logging.getLogger("rmpe.app")

STATS_EVERY_S = 1.0
# Panels fold away before the video shrinks: below these window widths (px) the performance
# panel, then the controls, are hidden (and come back when the window grows again).
PERF_PANEL_MIN_WINDOW = 1150
CONTROLS_MIN_WINDOW = 820


class _JumpClickStyle(QtWidgets.QProxyStyle):
    """A left click on a slider's groove moves the handle there (and starts a drag), instead of
    paging towards the click: what a seek bar does in every video player."""

    def styleHint(self, hint, option=None, widget=None, data=None):  # noqa: N802 - Qt override
        if hint == QtWidgets.QStyle.StyleHint.SH_Slider_AbsoluteSetButtons:
            return int(QtCore.Qt.MouseButton.LeftButton.value)
        return super().styleHint(hint, option, widget, data)


def people(n: int) -> str:
    return f"{n} person" if n == 1 else f"{n} people"


class MessageBar(QtWidgets.QFrame):
    """A dismissable line above the video: info (blue) or error (red)."""

    STYLES = {"info": "#1f4e79", "error": "#8b1a1a"}

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.label = QtWidgets.QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QtWidgets.QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.level = ""
        self.hide()

    def show_message(self, text: str, level: str = "info") -> None:
        self.level = level
        self.setStyleSheet(f"MessageBar {{ background: {self.STYLES[level]}; }} QLabel {{ color: white; }}")
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, config: Config, settings: Settings, cuda_available: bool = False,
                 pause_after: int | None = None, estimator_factory=None):
        super().__init__()
        self.setWindowTitle("RMPE-Live")
        self.setAcceptDrops(True)
        self.settings = settings
        self.config = config
        self.session = PipelineSession(config, estimator_factory, self)
        self.recorder = Recorder()
        self.session.recorder = self.recorder
        self.session.loop = bool(settings["loop"])
        self.session.every_frame = bool(settings["every_frame"])
        self.pause_after = pause_after
        self.paused = False
        self.at_end = False  # the file's last frame is on show and nothing plays
        self._shown_times: deque = deque(maxlen=512)  # (wall time, source timestamp) of shown frames
        self._auto_hidden: set = set()  # docks folded away because the window is narrow
        self.frames_shown = 0
        self._last_result = None
        self._fresh_source = False
        self._seeking = False
        self._press_value = -1
        self._record_base: Path | None = None
        self._skipped_shown = 0
        self._stats_due = 0.0

        # widgets
        self.view = VideoView()
        self.message = MessageBar()
        self.perf = PerfPanel(window_s=int(settings["perf_window_s"]))
        self.session.meter = self.perf.meter
        self.session.display_box = lambda: self.view.display_box
        self.controls = ControlsPanel(config, cuda_available)
        self._build_transport()
        central = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.message)
        column.addWidget(self.view, 1)
        column.addWidget(self.transport)
        self.setCentralWidget(central)
        left = self._add_dock("Controls", self.controls, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, scroll=True)
        right = self._add_dock("Performance", self.perf, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self.controls_dock, self.perf_dock = left, right
        self.resizeDocks([left, right], [left.widget().minimumWidth(), 380], QtCore.Qt.Orientation.Horizontal)
        self._build_actions()
        self.source_label = QtWidgets.QLabel("no source")
        self.record_label = QtWidgets.QLabel("")
        self.record_label.setStyleSheet("color: #ff5555;")
        self.fps_label = QtWidgets.QLabel("")
        self.fps_label.setToolTip("Frames shown per second, of the video's own rate; and how fast the video plays")
        self.frame_label = QtWidgets.QLabel("")
        self.statusBar().addWidget(self.source_label, 1)
        self.statusBar().addPermanentWidget(self.record_label)
        self.statusBar().addPermanentWidget(self.fps_label)
        self.statusBar().addPermanentWidget(self.frame_label)
        self._set_transport_enabled(False)

        # wiring
        self.session.frame_ready.connect(self._show_latest)
        self.session.opened.connect(self._on_opened)
        self.session.failed.connect(self._on_failed)
        self.session.ended.connect(self._on_ended)
        self.session.reached_end.connect(self._on_reached_end)
        self.controls.changed.connect(self._on_control)
        self.view.files_dropped.connect(self._on_dropped)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(int(TICK_S * 1000))
        self.timer.timeout.connect(self._tick)
        self.timer.start()

        self.resize(1400, 820)
        for key, restore in (("geometry", self.restoreGeometry), ("window_state", self.restoreState)):
            if settings[key]:
                try:
                    restore(QtCore.QByteArray.fromHex(str(settings[key]).encode()))
                except (TypeError, ValueError):
                    pass
        self.perf.window_changed.connect(lambda s: self.settings.__setitem__("perf_window_s", int(s)))
        view_menu = self.menuBar().addMenu("&View")
        for dock in (self.controls_dock, self.perf_dock):
            view_menu.addAction(dock.toggleViewAction())

    # -- construction ----------------------------------------------------------------------------------
    def _add_dock(self, title: str, widget: QtWidgets.QWidget, area, scroll: bool = False) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        if scroll:
            area_widget = QtWidgets.QScrollArea()
            area_widget.setWidget(widget)
            area_widget.setWidgetResizable(True)
            area_widget.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            area_widget.setMinimumWidth(widget.sizeHint().width() + 24)
            dock.setWidget(area_widget)
        else:
            widget.setMinimumWidth(220)
            dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _fit_docks(self) -> None:
        """Fold the panels away as the window narrows (performance first), so the video and its
        seek bar keep most of the width; panels folded this way come back as it widens."""
        width = self.width()
        # A visible dock pins the window's minimum width (the transport row + the dock), so a
        # resize below that arrives clamped: fold the controls below that floor too.
        floor = (self.centralWidget().minimumSizeHint().width() + self.controls_dock.minimumSizeHint().width()
                 + 48)
        for dock, needed in ((self.perf_dock, PERF_PANEL_MIN_WINDOW),
                             (self.controls_dock, max(CONTROLS_MIN_WINDOW, floor))):
            if width < needed and dock.isVisible():
                dock.hide()
                self._auto_hidden.add(dock)
            elif width >= needed and dock in self._auto_hidden:
                dock.show()
                self._auto_hidden.discard(dock)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_docks()

    def _build_transport(self) -> None:
        self.transport = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(self.transport)
        row.setContentsMargins(6, 4, 6, 4)
        self.play_button = QtWidgets.QToolButton()
        self.play_button.setText("Pause")
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.clicked.connect(self.toggle_pause)
        self.step_button = QtWidgets.QToolButton()
        self.step_button.setText("Step ▸")
        self.step_button.setToolTip("One frame forward while paused (→)")
        self.step_button.clicked.connect(self.step)
        self.seek_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.seek_slider.setEnabled(False)
        self.seek_slider.setMinimumWidth(120)
        self._jump_style = _JumpClickStyle()
        self._jump_style.setParent(self.seek_slider)
        self.seek_slider.setStyle(self._jump_style)
        self.seek_slider.setPageStep(30)
        self.seek_slider.sliderPressed.connect(self._seek_pressed)
        self.seek_slider.sliderReleased.connect(self._seek_released)
        self.seek_slider.valueChanged.connect(self._seek_value_changed)  # keys, wheel, a groove click
        self.every_frame_box = QtWidgets.QCheckBox("Every frame")
        self.every_frame_box.setChecked(bool(self.settings["every_frame"]))
        self.every_frame_box.setToolTip("Process every frame of a file, in order (slower than the video for careful "
                                        "review). Off: play at the video's own pace, skipping frames when needed.")
        self.every_frame_box.toggled.connect(self._on_every_frame)
        self.loop_box = QtWidgets.QCheckBox("Loop")
        self.loop_box.setChecked(bool(self.settings["loop"]))
        self.loop_box.toggled.connect(self._on_loop)
        self.overlay_box = QtWidgets.QCheckBox("Overlay")
        self.overlay_box.setChecked(True)
        self.overlay_box.setToolTip("Show the skeleton overlay (recordings always include it)")
        self.overlay_box.toggled.connect(self._set_overlay)
        for w in (self.play_button, self.step_button):
            row.addWidget(w)
        row.addWidget(self.seek_slider, 1)
        row.addWidget(self.every_frame_box)
        row.addWidget(self.loop_box)
        row.addWidget(self.overlay_box)

    def _build_actions(self) -> None:
        bar = self.addToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        file_menu = self.menuBar().addMenu("&File")

        def action(text, slot, shortcut=None, menu=file_menu, checkable=False):
            a = QtGui.QAction(text, self)
            if shortcut:
                a.setShortcut(QtGui.QKeySequence(shortcut))
            a.setCheckable(checkable)
            (a.toggled if checkable else a.triggered).connect(slot)
            menu.addAction(a)
            bar.addAction(a)
            return a

        self.open_file_action = action("Open video…", self.choose_file, "Ctrl+O")
        self.open_camera_action = action("Camera…", self.choose_camera, "Ctrl+K")
        self.open_images_action = action("Image folder…", self.choose_images, "Ctrl+I")
        self.open_url_action = action("URL…", self.choose_url, "Ctrl+U")
        file_menu.addSeparator()
        bar.addSeparator()
        self.record_action = action("Record", self.set_recording, "Ctrl+R", checkable=True)
        self.screenshot_action = action("Screenshot", self.save_screenshot, "Ctrl+S")
        self.record_folder_action = QtGui.QAction("Recording folder…", self)
        self.record_folder_action.triggered.connect(lambda: self.choose_record_folder())
        file_menu.addAction(self.record_folder_action)
        file_menu.addSeparator()
        quit_action = QtGui.QAction("Quit", self)
        quit_action.setShortcut(QtGui.QKeySequence("Ctrl+Q"))
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        for key, slot in (("Space", self.toggle_pause), ("Right", self.step)):
            QtGui.QShortcut(QtGui.QKeySequence(key), self, activated=slot)

    # -- sources -------------------------------------------------------------------------------------
    def open_source(self, spec: SourceSpec, note: str = "", source=None) -> None:
        """Open a source (background); ``note`` is shown as an info line (e.g. 'no camera found').

        ``source``: an already open core.io Source to show instead of opening ``spec``.
        """
        recorded = self.recorder.active
        if recorded:  # finalised before the next source: the message says where the files are
            self.set_recording(False)
        self._reset_source_state(f"opening {spec.label()}…")
        self.view.clear(f"Opening {spec.label()}…")
        self._fresh_source = True  # plots restart when it opens (after the models have loaded)
        if note:
            self.message.show_message(note, "info")
        elif not recorded:
            self.message.hide()
        self.session.open(spec, source=source)
        if spec.kind in ("file", "images") and source is None:
            self.settings["source"] = spec.to_dict()

    def choose_file(self) -> None:
        spec = ask_video_file(self, self._start_dir())
        if spec:
            self.open_source(spec)

    def choose_camera(self) -> None:
        spec = ask_camera(self, list_cameras())
        if spec:
            self.open_source(spec)

    def choose_images(self) -> None:
        spec = ask_image_folder(self, self._start_dir())
        if spec:
            self.open_source(spec)

    def choose_url(self) -> None:
        spec = ask_url(self)
        if spec:
            self.open_source(spec)

    def _start_dir(self) -> str:
        last = SourceSpec.from_dict(self.settings["source"]) if self.settings["source"] else None
        return str(Path(str(last.value)).parent) if last and last.kind == "file" else ""

    def _on_dropped(self, paths: list[str]) -> None:
        self.open_source(spec_for_path(paths[0]))

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802 - whole window accepts drops
        self.view.dragEnterEvent(event)

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802
        self.view.dropEvent(event)

    def _reset_source_state(self, status: str) -> None:
        """Forget everything about the source that was open: status bar, seek bar, transport,
        performance panel (a source closes, fails or is replaced)."""
        self.source_label.setText(status)
        self.frame_label.setText("")
        self.fps_label.setText("")
        self._shown_times.clear()
        self.perf.reset()
        self.frames_shown = 0
        self._last_result = None
        self.paused = self.at_end = False
        self.play_button.setText("Pause")
        self.seek_slider.blockSignals(True)
        self.seek_slider.setValue(0)
        self.seek_slider.blockSignals(False)
        self._set_transport_enabled(False)

    def _set_transport_enabled(self, on: bool, seekable: bool = False) -> None:
        self.play_button.setEnabled(on)
        self.step_button.setEnabled(on)
        self.seek_slider.setEnabled(on and seekable)

    # -- transport -----------------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def set_paused(self, paused: bool) -> None:
        if self.session.pipeline is None:
            return
        self.paused = bool(paused)
        if self.paused:
            self.session.pause()
        else:
            self.session.resume()
            if self.at_end:  # Play at the end plays it again from the start
                self._leave_end()
                self.session.seek(0)
        self.play_button.setText("Play" if self.paused else "Pause")

    def step(self) -> None:
        if self.session.pipeline is None:
            return
        if not self.paused:
            self.set_paused(True)
        self._leave_end()
        shown = self._last_result.index if self._last_result is not None else None
        self.session.step(shown)

    def seek(self, index: int) -> None:
        info = self.session.info
        if info is None or not info.spec.seekable or self.session.pipeline is None:
            return
        index = int(index)
        if info.frame_count:
            index = max(0, min(index, int(info.frame_count) - 1))
        self._leave_end()
        self.session.seek(index)
        self.seek_slider.blockSignals(True)
        self.seek_slider.setValue(index)
        self.seek_slider.blockSignals(False)

    def _leave_end(self) -> None:
        if self.at_end:
            self.at_end = False
            info = self.session.info
            self.source_label.setText(f"{info.spec.kind}: {info.spec.label()}" if info else "")

    def _seek_pressed(self) -> None:
        self._seeking = True
        self._press_value = self.seek_slider.value()  # a click on the groove has already jumped here

    def _seek_released(self) -> None:
        self._seeking = False
        if self.seek_slider.value() != self._press_value:
            self.seek(self.seek_slider.value())

    def _seek_value_changed(self, value: int) -> None:
        if not self.seek_slider.isSliderDown():  # a drag seeks once, on release
            self.seek(value)

    def _on_loop(self, on: bool) -> None:
        self.session.loop = bool(on)
        self.settings["loop"] = bool(on)
        if on and self.at_end:  # Loop at the end: play again from the start
            self.set_paused(False)

    def _on_every_frame(self, on: bool) -> None:
        self.settings["every_frame"] = bool(on)
        self.session.set_every_frame(bool(on))
        if self.session.pipeline is not None and self.session.info is not None and not self.session.info.live:
            self.statusBar().showMessage("every frame: on (slower than real time)" if on
                                         else "playing at the video's own pace", 4000)

    @QtCore.Slot()
    def _on_reached_end(self) -> None:
        """The last frame of the file is on show: loop, or hold there as a state Play, Step, a
        seek or Loop can leave."""
        info = self.session.info
        if self.session.loop and not self.paused:
            self.session.seek(0)
            return
        self.paused = True
        self.session.pause()
        self.play_button.setText("Play")
        self.at_end = True
        self.source_label.setText(f"{info.spec.label()}: finished" if info else "finished")

    # -- results -------------------------------------------------------------------------------------
    @QtCore.Slot()
    def _show_latest(self) -> None:
        latest = self.session.take_latest()
        if latest is None:
            return
        result, display = latest
        self._last_result = result
        self.view.set_frame(self.session.shown_frame(result), display)
        self.frames_shown += 1
        self._shown_times.append((time.monotonic(), float(result.timestamp)))
        info = self.session.info
        total = f" / {info.frame_count}" if info and info.frame_count else ""
        # frames are numbered from 1 for people: the last of 230 reads "230 / 230"
        self.frame_label.setText(f"frame {result.index + 1}{total} · {people(len(result.poses))}")
        if info and info.frame_count and not self._seeking:
            self.seek_slider.blockSignals(True)
            self.seek_slider.setValue(int(result.index))
            self.seek_slider.blockSignals(False)
        if self.pause_after is not None and self.frames_shown >= self.pause_after and not self.paused:
            self.set_paused(True)
            log.info("paused after %d frames", self.frames_shown)
            self.pause_after = None

    def _set_overlay(self, on: bool) -> None:
        self.session.overlay = bool(on)
        if self._last_result is not None:  # show the change now, also while paused
            self.view.set_frame(self.session.shown_frame(self._last_result))

    def _redraw_shown(self) -> None:
        """Draw the frame on show again with the current draw settings (paused or at the end no
        new frame would bring a change of boxes, scores or thresholds to the screen)."""
        from core.render import draw_poses

        result = self._last_result
        if result is None:
            return
        result.rendered = draw_poses(result.frame.copy(), result.poses, self.config.render)
        self.view.set_frame(self.session.shown_frame(result))

    def playback_rate(self, window_s: float = FPS_WINDOW_S) -> tuple[float, float] | None:
        """(frames shown per second, video seconds played per second) over the last ``window_s``
        seconds of shown frames; None before two frames. A seek or a loop inside the window
        counts as one frame interval of video time."""
        now = time.monotonic()
        recent = [(t, ts) for t, ts in self._shown_times if t > now - window_s]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return None
        info = self.session.info
        interval = 1.0 / info.fps if info and info.fps else 0.0
        played = sum(b - a if 0 < b - a < 1.0 else interval for (_, a), (_, b) in zip(recent, recent[1:]))
        wall = recent[-1][0] - recent[0][0]
        return (len(recent) - 1) / wall, played / wall

    def _update_rate_label(self) -> None:
        info = self.session.info
        if info is not None and self.paused:
            self.fps_label.setText("finished" if self.at_end else "paused")
            return
        rate = self.playback_rate()
        if rate is None or info is None:
            self.fps_label.setText("")
            return
        fps, speed = rate
        of = f" of {info.fps:.0f}" if info.fps and not info.live else ""
        self.fps_label.setText(f"{fps:.1f}{of} fps" + ("" if info.live else f" · {speed:.2f}× speed"))

    def _on_opened(self, info: SessionInfo) -> None:
        self.source_label.setText(f"{info.spec.kind}: {info.spec.label()}")
        seekable = bool(info.frame_count) and info.spec.seekable
        self._set_transport_enabled(True, seekable)
        if seekable:
            self.seek_slider.setRange(0, int(info.frame_count) - 1)
        self.loop_box.setEnabled(info.spec.seekable and info.reopenable)
        self.every_frame_box.setEnabled(not info.live)
        if self._fresh_source:
            self.perf.reset()
            self._fresh_source = False
        self.perf.set_stats({}, info.device, info.backend)
        log.info("opened %s on %s (%s)", info.spec.label(), info.device, info.backend)
        self._skipped_shown = 0
        self._show_skipped()

    def _show_skipped(self) -> None:
        """Say how many unreadable images of the folder were passed over (as they are found)."""
        skipped, info = self.session.skipped_images, self.session.info
        if skipped == self._skipped_shown or info is None:
            return
        self._skipped_shown = skipped
        text = f"skipped {skipped} unreadable image{'s' if skipped != 1 else ''}"
        self.source_label.setText(f"{info.spec.kind}: {info.spec.label()} · {text}")
        if not (self.message.isVisible() and self.message.level == "error"):
            self.message.show_message(f"{text[0].upper()}{text[1:]} in {info.spec.label()}.", "info")

    def _on_failed(self, message: str) -> None:
        log.error("%s", message)
        if self.recorder.active:
            self.set_recording(False)
        self.message.show_message(sentence(message), "error")
        self._reset_source_state("no source")
        self.view.clear("Nothing to show — see the message above.")

    def _on_ended(self, message: str) -> None:
        """The pipeline stopped by itself: an error, or the end of a live stream (files hold at
        their end instead, see _on_reached_end)."""
        info = self.session.info
        if message:
            self._on_failed(message)
            return
        if self.recorder.active:
            self.set_recording(False)
        # the last frame stays on show with its numbers; nothing is left to play
        self.source_label.setText(f"{info.spec.label()}: finished" if info else "finished")
        self.fps_label.setText("")
        self._set_transport_enabled(False)

    def _tick(self) -> None:
        pipeline = self.session.pipeline
        if pipeline is not None and self.frames_shown == 0 and not getattr(pipeline, "kernels_ready", True):
            self.statusBar().showMessage("preparing: the first start compiles the pose kernels (up to a minute)…",
                                         int(TICK_S * 1000) + 200)
        if self.session.info is not None:  # no source, nothing to plot
            self.perf.tick()
            if not self.at_end:
                self.session.poll_end()
        self._update_rate_label()
        self._show_skipped()
        if self.recorder.active:
            if self.recorder.error:
                error = self.recorder.error
                self.set_recording(False)
                self.message.show_message(sentence(f"recording stopped: {error}"), "error")
            else:
                self._update_record_label()
        now = time.monotonic()
        if now >= self._stats_due and self.session.pipeline is not None:
            self._stats_due = now + STATS_EVERY_S
            info = self.session.info
            self.perf.set_stats(self.session.stats(), info.device if info else None, info.backend if info else None)

    # -- controls ------------------------------------------------------------------------------------
    def _on_control(self, section: str, values: dict) -> None:
        try:
            restarted = self.session.update_config(section, values)
        except UserError as exc:
            self.message.show_message(sentence(str(exc)), "error")
            return
        except Exception as exc:  # noqa: BLE001 - a rejected setting is a message, not a crash
            self.message.show_message(exception_sentence(exc, f"could not apply {section} {values}"), "error")
            return
        self.settings.remember(section, **values)
        if restarted:
            self.statusBar().showMessage(f"{section} changed: reloading the models…", 4000)
        elif section == "render" and (self.paused or self.at_end):
            self._redraw_shown()

    # -- record and screenshot -------------------------------------------------------------------------
    def output_dir(self) -> Path:
        """Where recordings and screenshots go: the folder the user chose, else ~/Videos/rmpe-live."""
        folder = self.settings["record_dir"] or str(Path.home() / "Videos" / "rmpe-live")
        return Path(folder).expanduser()

    def choose_record_folder(self) -> Path | None:
        """Ask where recordings go (remembered in the settings); None when cancelled."""
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Choose the folder for recordings",
                                                            str(self.output_dir()))
        if not folder:
            return None
        self.settings["record_dir"] = str(folder)
        self.statusBar().showMessage(f"recordings go to {folder}", 5000)
        return Path(folder)

    def set_recording(self, on: bool) -> None:
        """Start or stop the recording session. The first Record asks for the folder; Record
        while paused saves the frame on show at once (Step adds frames)."""
        if bool(on) == self.recorder.active:
            self._sync_record_action()
            return
        if on:
            if not self.settings["record_dir"] and self.choose_record_folder() is None:
                self._sync_record_action()  # cancelled: nothing starts
                return
            info = self.session.info
            try:
                base = self.recorder.start(self.output_dir(), fps=info.fps if info else 30.0,
                                           live=info.live if info else False)
            except (UserError, OSError) as exc:
                self.message.show_message(exception_sentence(exc, "cannot record"), "error")
                self._sync_record_action()
                return
            self._record_base = base
            if (self.paused or self.at_end) and self._last_result is not None:
                self.recorder.write(self._last_result)  # nothing else would arrive while paused
            self._update_record_label()
        else:
            frames = self.recorder.frames
            try:
                paths = self.recorder.stop()
            except Exception as exc:  # noqa: BLE001
                self.message.show_message(exception_sentence(exc, "finishing the recording failed"), "error")
            else:
                if paths:
                    self.message.show_message(f"Recording saved ({frames} frame{'s' if frames != 1 else ''}): "
                                              + ", ".join(str(p) for p in paths), "info")
                elif self.message.level != "error" or not self.message.isVisible():
                    self.message.show_message("Nothing was recorded: no frame was shown while recording "
                                              "(nothing played).", "info")
            self.record_label.setText("")
        self._sync_record_action()

    def _update_record_label(self) -> None:
        if self.recorder.active:
            self.record_label.setText(f"● REC {self.recorder.frames} frames → {self._record_base.parent}")

    def _sync_record_action(self) -> None:
        self.record_action.blockSignals(True)
        self.record_action.setChecked(self.recorder.active)
        self.record_action.setText("Stop recording" if self.recorder.active else "Record")
        self.record_action.blockSignals(False)

    def save_screenshot(self) -> Path | None:
        image = self.view.image()
        if image is None:  # the status bar: a banner here would replace an error the user needs
            self.statusBar().showMessage("no picture to save yet", 5000)
            return None
        folder = self.output_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.message.show_message(exception_sentence(exc, "cannot save the screenshot"), "error")
            return None
        path = folder / time.strftime("rmpe-%Y%m%d-%H%M%S.png")
        n = 1
        while path.exists():
            path = folder / time.strftime(f"rmpe-%Y%m%d-%H%M%S-{n}.png")
            n += 1
        if not image.save(str(path)):
            self.message.show_message(f"cannot save screenshot to {path}", "error")
            return None
        self.statusBar().showMessage(f"saved {path}", 5000)
        return path

    # -- shutdown --------------------------------------------------------------------------------------
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        self.timer.stop()
        self.session.close()
        if self.recorder.active:
            try:
                self.recorder.stop()
            except Exception as exc:  # noqa: BLE001 - still close the window
                log.error("finishing the recording failed: %s", exc)
        self.settings["geometry"] = bytes(self.saveGeometry().toHex()).decode()
        self.settings["window_state"] = bytes(self.saveState().toHex()).decode()
        try:
            self.settings.save()
        except OSError as exc:
            log.warning("could not save settings: %s", exc)
        super().closeEvent(event)
