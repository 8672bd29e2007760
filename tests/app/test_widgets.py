"""The app's pieces on their own: version gate, settings, controls, video view, perf panel, sources."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import Config
from core.errors import UserError

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("version, ok", [("6.11.2", True), ("6.11.0", True), ("6.12.0", False), (None, False)])
def test_version_gate(version, ok, monkeypatch):
    from app import version_check

    if version is None:
        monkeypatch.setattr(version_check, "installed_pyside_version", lambda: None)
    if ok:
        assert version_check.check_pyside(version) == version
    else:
        with pytest.raises(UserError) as err:
            version_check.check_pyside(version)
        assert "PySide6-Essentials==6.11.2" in str(err.value)
        assert "\n" not in str(err.value)


def test_installed_version_is_allowed():
    from app.version_check import check_pyside, installed_pyside_version

    assert installed_pyside_version() is not None
    check_pyside()


def test_settings_round_trip_and_stale_keys(isolated_settings):
    from app.settings import Settings

    s = Settings().load()
    assert s.path == isolated_settings and not s.path.exists()
    s.remember("detector", interval=3)
    s.remember("smoothing", enabled=False)
    s["loop"] = False
    s.data["config"]["detector"]["no_such_key"] = 1  # renamed between versions
    s.data["config"]["no_such_section"] = {"x": 1}
    s.save()
    again = Settings().load()
    cfg = again.apply_to(Config.load())
    assert cfg.detector.interval == 3 and cfg.smoothing.enabled is False
    assert again["loop"] is False
    assert again["config"] == {"detector": {"interval": 3}, "smoothing": {"enabled": False}}


@pytest.mark.parametrize("content", ["{not: [valid", "- a list\n- not a mapping\n", ""])
def test_settings_damaged_file_falls_back_to_defaults(isolated_settings, content):
    from app.settings import DEFAULTS, Settings

    isolated_settings.parent.mkdir(parents=True)
    isolated_settings.write_text(content)
    assert Settings().load().data == DEFAULTS


@pytest.mark.parametrize("section, key, value", [
    ("detector", "name", "hog"),
    ("detector", "score_threshold", 0.7),
    ("detector", "interval", 3),
    ("sppe", "decode", "dark"),
    ("pose_nms", "enabled", False),
    ("pose_nms", "preset", "alphapose"),
    ("tracking", "enabled", False),
    ("smoothing", "enabled", False),
    ("smoothing", "strength", 10.0),
    ("render", "keypoint_threshold", 0.5),
    ("render", "draw_boxes", True),
    ("render", "draw_scores", True),
    ("render", "draw_ids", False),
    ("runtime", "device", "cpu"),
])
def test_controls_emit_changes(qapp, section, key, value):
    from app.controls import ControlsPanel

    panel = ControlsPanel(Config.load(), cuda_available=True)
    seen = []
    panel.changed.connect(lambda s, v: seen.append((s, v)))
    panel.set_value(section, key, value)
    assert seen and seen[-1][0] == section
    got = seen[-1][1][key]
    assert got == pytest.approx(value) if isinstance(value, float) else got == value


def test_device_control_disabled_without_cuda(qapp):
    from app.controls import ControlsPanel

    assert not ControlsPanel(Config.load(), cuda_available=False).widget("runtime", "device").isEnabled()
    assert ControlsPanel(Config.load(), cuda_available=True).widget("runtime", "device").isEnabled()


@pytest.mark.parametrize("strength", [0.1, 0.5, 1.0, 2.0, 10.0])
def test_smoothing_slider_mapping_round_trips(strength):
    from app.controls import slider_to_strength, strength_to_slider

    assert slider_to_strength(strength_to_slider(strength)) == pytest.approx(strength, rel=0.05)


def test_video_view_shares_memory_and_shows_frame(qapp):
    from app.video_view import VideoView, frame_to_qimage

    frame = np.zeros((120, 160, 3), np.uint8)
    frame[10:20, 30:50] = (255, 0, 0)
    image = frame_to_qimage(frame)
    frame[0, 0] = (1, 2, 3)  # the image sees later writes: no copy was made
    assert image.pixelColor(0, 0).getRgb()[:3] == (1, 2, 3)
    assert image.pixelColor(35, 15).getRgb()[:3] == (255, 0, 0)

    view = VideoView()
    view.resize(320, 320)
    view.show()
    view.set_frame(frame)
    qapp.processEvents()
    assert view.frame_size() == (160, 120)
    rect = view.target_rect()
    assert (rect.width(), rect.height()) == (320, 240)  # letterboxed, aspect kept
    shot = view.grab().toImage()
    c = shot.pixelColor(rect.x() + 80, rect.y() + 30)  # red block centre, scaled ×2
    assert c.red() > 200 and c.green() < 50
    assert not view.blits()  # no pre-scaled copy: Qt scales while painting
    # a copy pre-scaled to the view's box (as the session makes on the pipeline thread) is blitted
    import cv2

    from app.video_view import fit_size

    assert view.display_box == (320, 320) and fit_size(160, 120, *view.display_box) == (320, 240)
    view.set_frame(frame, cv2.cvtColor(cv2.resize(frame, (320, 240), interpolation=cv2.INTER_NEAREST),
                                       cv2.COLOR_RGB2BGRA))
    assert view.blits()
    shot = view.grab().toImage()
    assert shot.pixelColor(rect.x() + 80, rect.y() + 30).getRgb()[:3] == (255, 0, 0)
    assert view.image().width() == 160  # screenshots keep the full resolution
    view.resize(400, 400)
    qapp.processEvents()
    assert not view.blits()  # stale size after a resize: scaled while painting until the next frame
    with pytest.raises(ValueError):
        frame_to_qimage(np.zeros((4, 4), np.uint8))


def test_perf_panel_plots_fps_and_stage_latency(qapp):
    from app.perf_panel import END_TO_END, PerfPanel

    panel = PerfPanel(window_s=5)
    t0 = 1000.0
    panel._t0 = t0
    for tick in range(1, 30):
        for k in range(10):  # 10 results per 0.5 s tick = 20 fps
            panel.meter.add({"detect": 5.0, "sppe": 12.0 + (tick > 10)}, latency_ms=40.0,
                            now=t0 + 0.5 * (tick - 1) + 0.05 * (k + 1))
        panel.tick(now=t0 + 0.5 * tick)
    fps = panel.fps_history()
    assert len(fps) == 11  # the last 5 s only: history is bounded
    assert fps[-1] == pytest.approx(20.0)
    xs, ys = panel.fps_curve.getData()
    assert len(xs) == 11 and ys[-1] == pytest.approx(20.0)
    assert sorted(panel.stage_names()) == sorted(["detect", "sppe", END_TO_END])
    assert panel._curves["sppe"].yData[-1] == pytest.approx(13.0)
    assert "FPS 20.0" in panel.summary.text() and "40 ms" in panel.summary.text()
    panel.tick(now=t0 + 0.5 * 30 + 4.0)  # nothing arrived for 4 s: paused
    assert panel.fps_history()[-1] == 0.0
    assert panel._curves["sppe"].yData[-1] == pytest.approx(13.0)  # last measured value is held
    panel.set_stats({"queues": {"infer_in": {"capacity": 4, "mean": 2.5, "max": 4, "samples": 9}},
                     "dropped": 3, "mode": "live", "frames": 120, "fps": 7.5}, "cpu", "jit")
    assert "infer 2.5/4 (max 4)" in panel.queues.text()
    assert panel.totals.text() == "120 frames · 7.5 fps average · dropped 3"
    assert "cpu" in panel.device.text() and "jit" in panel.device.text()
    seen = []
    panel.window_changed.connect(seen.append)
    panel.window_box.setValue(60)  # the user widens the window: history kept, room for more
    assert panel._t.maxlen == 121 and len(panel.fps_history()) == 11 and seen[-1] == 60
    panel.tick(now=t0 + 0.5 * 31 + 4.0)
    assert len(panel.fps_history()) == 12
    panel.reset()
    assert panel.fps_history() == [] and panel.stage_names() == []


@pytest.mark.parametrize("path, kind", [
    ("clip.mp4", "file"), ("rtsp://cam/1", "url"), ("http://x/y.mjpg", "url"), ("frames/*.jpg", "images"),
])
def test_spec_for_path(path, kind):
    from app.sources_dialog import spec_for_path

    assert spec_for_path(path).kind == kind


def test_spec_for_folder_and_single_image(tmp_path):
    from app.sources_dialog import spec_for_path

    (tmp_path / "a.png").write_bytes(b"")
    assert spec_for_path(str(tmp_path)).kind == "images"
    spec = spec_for_path(str(tmp_path / "a.png"))
    assert spec.kind == "images" and spec.value == str(tmp_path)


@pytest.mark.parametrize("env, has_cursor, error", [
    ({"QT_QPA_PLATFORM": "offscreen"}, False, None),
    ({"WAYLAND_DISPLAY": "wayland-0"}, False, None),
    ({"DISPLAY": ":0"}, True, None),
    ({}, True, "no display"),
    ({"QT_QPA_PLATFORM": "xcb"}, True, "no display"),
    ({"DISPLAY": ":0"}, False, "apt-get install libxcb-cursor0 libxcb-icccm4"),
])
def test_platform_gate(env, has_cursor, error):
    from app.version_check import check_platform

    def find(name):
        return f"lib{name}.so" if has_cursor else None

    if error is None:
        check_platform(env, "linux", find)
    else:
        with pytest.raises(UserError, match=error):
            check_platform(env, "linux", find)


def test_model_selectors_list_only_installed_models(qapp, tmp_path, monkeypatch):
    """The Detector and Pose model boxes offer what the cache holds; a checkpoint adds the trained
    SPPEs; the configured value stays visible even when its model is missing."""
    import os

    from app.controls import ControlsPanel
    from core.assets import manifest
    from core.config import Config
    from core.models import npm_fetch

    real = npm_fetch._cache()
    for name in ("pose_detection", "pose_landmark_full"):
        file = manifest()[name].file
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(real / file, tmp_path / file)
    monkeypatch.setenv("RMPE_LIVE_CACHE", str(tmp_path))

    def items(panel, section, key):
        box = panel.widget(section, key)
        return [box.itemText(i) for i in range(box.count())]

    panel = ControlsPanel(Config.load(overrides={"detector": {"name": "blazepose"}}), cuda_available=False)
    assert items(panel, "detector", "name") == ["blazepose", "hog"]
    assert items(panel, "sppe", "model") == ["blazepose", "blazepose-full"]
    panel = ControlsPanel(Config.load(overrides={"sppe": {"weights": "hg.pt"}}), cuda_available=False)
    assert items(panel, "sppe", "model") == ["blazepose", "blazepose-full", "hourglass", "resnet"]
    assert items(panel, "detector", "name") == ["blazepose", "hog", "nanodet"]  # the default, kept visible
    assert panel.widget("detector", "name").currentText() == "nanodet"
