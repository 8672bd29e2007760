"""Starting the app, opening every kind of source, looping, drag-and-drop, and errors shown in the
window (never a crash). Every window runs the real pose estimator; tests that push frames through
it ask for the installed models (``blazepose_models``) and skip without them."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from core.config import Config

pytestmark = pytest.mark.gui


@pytest.fixture
def small_video(tmp_path):
    """A 12-frame 160×120 H.264 test pattern written with our own VideoWriter."""
    from core.io import PatternSource, VideoWriter
    from core.io.writers import SourceInfo
    from core.pipeline import FrameResult
    from core.poses import Poses

    path = tmp_path / "small.mp4"
    source = PatternSource(160, 120, 30.0, num_frames=12)
    writer = VideoWriter(path)
    writer.open(SourceInfo("pattern", 30.0, 160, 120, 12, False), Config.load())
    while (item := source.read()) is not None:
        writer.write(FrameResult(item.index, item.timestamp, item.image, Poses.empty(), item.captured_at))
    writer.close()
    return path


def test_refuses_pyside_6_12_with_one_line(monkeypatch, capsys):
    import logging

    from app import version_check
    from core.cli import main

    monkeypatch.setattr(version_check, "installed_pyside_version", lambda: "6.12.0")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert main(["gui"]) == 2
    finally:  # main() points logging at this test's captured stderr: put it back
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "PySide6-Essentials==6.11.2" in err and "6.12.0" in err


def test_no_arguments_open_camera_or_demo_with_a_message(demo_video):
    from app.cli import initial_source
    from app.sources_dialog import list_cameras

    args = argparse.Namespace(video=None, camera=None, images=None, url=None)
    spec, note = initial_source(args)
    if list_cameras():
        assert spec.kind == "camera" and note == ""
    else:
        assert (spec.kind, spec.value) == ("file", str(demo_video))
        assert "No camera found" in note and "demo video" in note


@pytest.mark.parametrize("flag, value, kind", [("video", "clip.mp4", "file"), ("camera", 2, "camera"),
                                                ("images", "frames/", "images"), ("url", "rtsp://h/s", "url")])
def test_source_flags(flag, value, kind):
    from app.cli import initial_source

    args = argparse.Namespace(video=None, camera=None, images=None, url=None)
    setattr(args, flag, value)
    spec, note = initial_source(args)
    assert (spec.kind, spec.value, note) == (kind, value, "")


def test_video_file_plays_to_the_end_and_loops(make_window, wait, small_video, blazepose_models):
    from app.sources_dialog import SourceSpec

    w = make_window(loop=True)
    seen: list[int] = []
    w.session.frame_ready.connect(lambda: seen.append(w.session.results))
    w.open_source(SourceSpec("file", str(small_video)))
    assert wait(lambda: w.session.info is not None and w.session.info.frame_count == 12, timeout=30)
    assert w.seek_slider.isEnabled() and w.seek_slider.maximum() == 11
    # after frame 11 the file starts again at 0
    indices: list[int] = []
    w.session.frame_ready.connect(lambda: indices.append(w.session.last_index))
    assert wait(lambda: w._last_result is not None and w._last_result.index == 11, timeout=30)
    assert wait(lambda: w._last_result.index < 11, timeout=30)
    assert w.message.text() == ""


def test_video_file_without_loop_finishes(make_window, wait, small_video, blazepose_models):
    from app.sources_dialog import SourceSpec

    w = make_window(loop=False)
    w.open_source(SourceSpec("file", str(small_video)))
    assert wait(lambda: "finished" in w.source_label.text(), timeout=30)
    assert w._last_result.index == 11 and w.message.text() == ""


def test_image_folder_and_drag_and_drop(make_window, wait, tmp_path, blazepose_models):
    import cv2
    from PySide6 import QtCore, QtGui, QtWidgets

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((90, 120, 3), 40 * i, np.uint8))
    w = make_window(loop=False)
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(folder))])
    pos = QtCore.QPointF(w.view.width() / 2, w.view.height() / 2)
    for event_type in (QtCore.QEvent.Type.DragEnter, QtCore.QEvent.Type.Drop):
        cls = QtGui.QDragEnterEvent if event_type == QtCore.QEvent.Type.DragEnter else QtGui.QDropEvent
        args = (pos.toPoint(),) if cls is QtGui.QDragEnterEvent else (pos,)
        event = cls(*args, QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
                    QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(w.view, event)
        assert event.isAccepted()
    assert wait(lambda: w.session.info is not None and w.session.info.spec.kind == "images", timeout=30)
    assert w.session.info.frame_count == 3
    assert wait(lambda: "finished" in w.source_label.text(), timeout=30)
    assert w.view.frame_size() == (120, 90)


@pytest.mark.parametrize("kind, value, expected", [
    ("file", "/no/such/video.mp4", "video not found"),
    ("file", "NOT_A_VIDEO", "is not a readable video"),
    ("camera", 9, "camera 9"),
    ("images", "/no/such/folder", "not found"),
    ("url", "rtsp://127.0.0.1:9/none", "cannot open stream"),
])
def test_bad_sources_are_messages_in_the_window(make_window, wait, tmp_path, kind, value, expected):
    from app.sources_dialog import SourceSpec

    if value == "NOT_A_VIDEO":
        value = tmp_path / "broken.mp4"
        value.write_bytes(b"this is not a video" * 100)
        value = str(value)
    w = make_window()
    w.open_source(SourceSpec(kind, value))
    assert wait(lambda: w.message.level == "error" and w.message.isVisible(), timeout=30)
    assert expected in w.message.text(), w.message.text()
    assert w.session.pipeline is None and w.isVisible()


def test_missing_models_name_the_install_command(make_window, wait, small_video, tmp_path, monkeypatch):
    from app.sources_dialog import SourceSpec

    monkeypatch.setenv("RMPE_LIVE_CACHE", str(tmp_path / "empty-cache"))
    w = make_window()  # the real estimator looks for the models
    w.open_source(SourceSpec("file", str(small_video)))
    assert wait(lambda: w.message.level == "error" and w.message.isVisible(), timeout=60)
    assert "python main.py models install" in w.message.text()


def test_changing_source_finalises_the_recording(make_window, wait, small_video, blazepose_models):
    """Switching source while recording closes the files instead of mixing two sources."""
    import av

    from app.sources_dialog import SourceSpec
    from core.io import PatternSource

    w = make_window()
    w.open_source(SourceSpec("url", "pattern"), source=PatternSource(160, 120, num_frames=100000))
    assert wait(lambda: w.frames_shown >= 1, timeout=30)
    w.set_recording(True)
    assert wait(lambda: w.recorder.frames >= 5, timeout=30)
    w.open_source(SourceSpec("file", str(small_video)))
    assert not w.recorder.active and not w.record_action.isChecked()
    assert "saved" in w.message.text()
    mp4 = next(w.output_dir().glob("*.mp4"))
    with av.open(str(mp4)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n >= 5


def test_model_level_change_restarts_with_new_models(make_window, wait, small_video, blazepose_models):
    """Detector choice selects other models: the session builds a new estimator and goes on; a
    threshold change is applied to the running pipeline instead."""
    from app.sources_dialog import SourceSpec
    from core.estimator import PoseEstimator

    built = []

    def factory(config):
        built.append(config.detector.name)
        return PoseEstimator(config, config.runtime.device)

    w = make_window(estimator_factory=factory, loop=True)
    w.open_source(SourceSpec("file", str(small_video)))
    assert wait(lambda: w.frames_shown >= 3 and w.session.pipeline is not None, timeout=30)
    first = w.session.pipeline
    w.controls.set_value("detector", "score_threshold", 0.7)
    from core.config import Config

    default = Config.load().detector.name  # nanodet since issue 12
    assert built == [default]
    assert wait(lambda: first.config.detector.score_threshold == 0.7 or w.session.pipeline is not first, timeout=10)
    w.controls.set_value("detector", "name", "hog")
    assert wait(lambda: built == [default, "hog"] and w.session.pipeline is not None, timeout=30)
    shown = w.frames_shown
    assert wait(lambda: w.frames_shown > shown + 3, timeout=30)
    # the 12-frame clip loops: between two passes the session has no pipeline for a moment
    assert wait(lambda: (p := w.session.pipeline) is not None and p.config.detector.name == "hog"
                and p.config.detector.score_threshold == 0.7, timeout=10)
    assert w.message.text() == ""


def test_controls_changed_while_models_load_reach_the_pipeline(make_window, wait, man_clip, blazepose_models):
    import time

    from app.sources_dialog import SourceSpec
    from core.estimator import PoseEstimator
    from core.io import ImageSource, LoopSource

    def slow_factory(config):
        time.sleep(1.0)  # a slow model load: the controls below change meanwhile
        return PoseEstimator(config, config.runtime.device)

    clip = man_clip(8, 0)
    w = make_window(estimator_factory=slow_factory)
    w.open_source(SourceSpec("images", str(clip)), source=LoopSource(ImageSource(clip), 100000))
    w.controls.set_value("tracking", "enabled", False)
    w.controls.set_value("detector", "interval", 3)
    assert w.session.pipeline is None  # still loading
    assert wait(lambda: w.frames_shown >= 5, timeout=30)
    cfg = w.session.pipeline.config
    assert cfg.tracking.enabled is False and cfg.detector.interval == 3
    # tracking off from the first frame: the man is found, and never given a track id
    people = []
    w.session.frame_ready.connect(lambda: people.append(w._last_result.poses))
    assert wait(lambda: sum(len(p) > 0 for p in people) >= 5, timeout=30)
    assert all((p.track_ids == -1).all() for p in people), [p.track_ids for p in people]
