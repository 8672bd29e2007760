"""Main window: video view with the skeleton overlay, transport bar, live controls, performance
panel, recording and screenshots. Errors appear in a bar above the video, never as a crash."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.controls import ControlsPanel
from app.perf_panel import TICK_S, PerfPanel
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
        self.pause_after = pause_after
        self.paused = False
        self.frames_shown = 0
        self._last_result = None
        self._fresh_source = False
        self._seeking = False
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
        self.resizeDocks([left, right], [left.widget().minimumWidth(), 380], QtCore.Qt.Orientation.Horizontal)
        self._build_actions()
        self.source_label = QtWidgets.QLabel("no source")
        self.frame_label = QtWidgets.QLabel("")
        self.statusBar().addWidget(self.source_label, 1)
        self.statusBar().addPermanentWidget(self.frame_label)

        # wiring
        self.session.frame_ready.connect(self._show_latest)
        self.session.opened.connect(self._on_opened)
        self.session.failed.connect(self._on_failed)
        self.session.ended.connect(self._on_ended)
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
            widget.setMinimumWidth(300)
            dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

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
        self.seek_slider.sliderPressed.connect(lambda: setattr(self, "_seeking", True))
        self.seek_slider.sliderReleased.connect(self._seek_released)
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
        self.source_label.setText(f"opening {spec.label()}…")
        self.view.clear(f"Opening {spec.label()}…")
        self.perf.reset()
        self.frames_shown = 0
        self._last_result = None
        self._fresh_source = True  # plots restart when it opens (after the models have loaded)
        self.paused = False
        self.play_button.setText("Pause")
        if note:
            self.message.show_message(note, "info")
        else:
            self.message.hide()
        if self.recorder.active:  # finalised before the next source: says where the files are
            self.set_recording(False)
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
        self.play_button.setText("Play" if self.paused else "Pause")

    def step(self) -> None:
        if self.session.pipeline is None:
            return
        if not self.paused:
            self.set_paused(True)
        self.session.step()

    def seek(self, index: int) -> None:
        info = self.session.info
        if info is None or not info.spec.seekable:
            return
        self.session.seek(index)

    def _seek_released(self) -> None:
        self._seeking = False
        self.seek(self.seek_slider.value())

    def _on_loop(self, on: bool) -> None:
        self.session.loop = bool(on)
        self.settings["loop"] = bool(on)

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
        info = self.session.info
        total = f" / {info.frame_count}" if info and info.frame_count else ""
        self.frame_label.setText(f"frame {result.index}{total} · {len(result.poses)} people")
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

    def _on_opened(self, info: SessionInfo) -> None:
        self.source_label.setText(f"{info.spec.kind}: {info.spec.label()}")
        seekable = bool(info.frame_count) and info.spec.seekable
        self.seek_slider.setEnabled(seekable)
        if seekable:
            self.seek_slider.setRange(0, int(info.frame_count) - 1)
        self.loop_box.setEnabled(info.spec.seekable and info.reopenable)
        if self._fresh_source:
            self.perf.reset()
            self._fresh_source = False
        self.perf.set_stats({}, info.device, info.backend)
        log.info("opened %s on %s (%s)", info.spec.label(), info.device, info.backend)

    def _on_failed(self, message: str) -> None:
        log.error("%s", message)
        self.message.show_message(message, "error")
        self.source_label.setText("no source")
        self.view.clear("Nothing to show — see the message above.")
        if self.recorder.active:
            self.set_recording(False)

    def _on_ended(self, message: str) -> None:
        info = self.session.info
        if message:
            self._on_failed(message)
            return
        if self.recorder.active:  # a recording holds one pass over a file, never two
            self.set_recording(False)
        if info is not None and info.spec.seekable and info.reopenable and self.session.loop:
            self.session.open(info.spec)  # replay from the start
            return
        self.source_label.setText(f"{info.spec.label()}: finished" if info else "finished")

    def _tick(self) -> None:
        self.perf.tick()
        if self.recorder.active and self.recorder.error:
            error = self.recorder.error
            self.set_recording(False)
            self.message.show_message(f"recording stopped: {error}", "error")
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
            self.message.show_message(str(exc), "error")
            return
        except Exception as exc:  # noqa: BLE001 - a rejected setting is a message, not a crash
            self.message.show_message(f"could not apply {section} {values}: {exc}", "error")
            return
        self.settings.remember(section, **values)
        if restarted:
            self.statusBar().showMessage(f"{section} changed: reloading the models…", 4000)

    # -- record and screenshot -------------------------------------------------------------------------
    def output_dir(self) -> Path:
        folder = self.settings["record_dir"] or str(Path.home() / "Videos" / "rmpe-live")
        return Path(folder).expanduser()

    def set_recording(self, on: bool) -> None:
        if bool(on) == self.recorder.active:
            self._sync_record_action()
            return
        if on:
            info = self.session.info
            try:
                base = self.recorder.start(self.output_dir(), fps=info.fps if info else 30.0,
                                           live=info.live if info else False)
            except (UserError, OSError) as exc:
                self.message.show_message(f"cannot record: {exc}", "error")
                self._sync_record_action()
                return
            self.statusBar().showMessage(f"recording to {base}.mp4 / .json / .csv", 5000)
        else:
            try:
                paths = self.recorder.stop()
            except Exception as exc:  # noqa: BLE001
                self.message.show_message(f"finishing the recording failed: {exc}", "error")
            else:
                if paths:
                    self.message.show_message("saved " + ", ".join(str(p) for p in paths), "info")
        self._sync_record_action()

    def _sync_record_action(self) -> None:
        self.record_action.blockSignals(True)
        self.record_action.setChecked(self.recorder.active)
        self.record_action.setText("Stop recording" if self.recorder.active else "Record")
        self.record_action.blockSignals(False)

    def save_screenshot(self) -> Path | None:
        image = self.view.image()
        if image is None:
            self.message.show_message("nothing to save yet", "info")
            return None
        folder = self.output_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.message.show_message(f"cannot save screenshot: {exc}", "error")
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
