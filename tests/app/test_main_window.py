"""The desktop app on the demo video with the real models (offscreen Qt).

One window serves the tests of this module in order (loading the models once): it opens the demo,
shows poses, plots FPS, pauses / steps / resumes, applies a control live, records, saves a
screenshot, seeks, and finally closes with every pipeline thread gone.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from core.config import Config

pytestmark = [pytest.mark.gui, pytest.mark.assets]


def _skeleton_colours(poses) -> np.ndarray:
    """Exact RGB colours core.render paints for these poses: person colours (tracked) and
    per-limb colours (untracked). White joints are left out: the demo has white sky."""
    from core.render import limb_colors, track_color

    colours = [limb_colors(poses.layout)]
    colours += [track_color(t)[None] for t in poses.track_ids if t >= 0]
    return np.unique(np.concatenate(colours), axis=0)


def _count_colours(image: np.ndarray, colours: np.ndarray, tol: int = 0) -> int:
    rgb = image[..., :3].astype(np.int16)
    hit = np.zeros(rgb.shape[:2], bool)
    for c in colours.astype(np.int16):
        hit |= (np.abs(rgb - c).max(-1) <= tol)
    return int(hit.sum())


def _qimage_rgb(image) -> np.ndarray:
    from PySide6 import QtGui

    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    h, w, bpl = image.height(), image.width(), image.bytesPerLine()
    return np.frombuffer(image.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)[:, :w * 3].reshape(h, w, 3).copy()


@pytest.fixture(scope="module")
def window(qapp, demo_video, blazepose_models, tmp_path_factory):
    from app.main_window import MainWindow
    from app.settings import Settings
    from app.sources_dialog import SourceSpec

    folder = tmp_path_factory.mktemp("app")
    settings = Settings(folder / "app.yaml")
    settings["record_dir"] = str(folder / "out")
    # Every frame (file mode): the pause / step checks below count decoded frames against results,
    # which real-time playback (the default, covered in test_player.py) drops on purpose.
    settings["every_frame"] = True
    # One full-frame detector pass instead of tiles and short queues: the same code paths, less
    # CPU per frame and fewer frames in flight, so the checks below take seconds.
    config = Config.load(overrides={"detector": {"tiling": False}, "pipeline": {"queue_size": 1}})
    w = MainWindow(config, settings)
    w.resize(1200, 700)
    w.show()
    w.open_source(SourceSpec("file", str(demo_video)))
    yield w
    w.close()


def _results(w) -> int:
    return w.session.results


def test_window_opens_demo_and_shows_poses(window, wait):
    assert wait(lambda: window.frames_shown >= 3 and window._last_result is not None
                and len(window._last_result.poses) > 0, timeout=90), window.message.text()
    result = window._last_result
    assert window.session.info.frame_count == 230
    assert window.view.frame_size() == (1768, 994)
    colours = _skeleton_colours(result.poses)
    shown = _qimage_rgb(window.view.image())
    assert shown.shape == result.frame.shape
    # Joints and limbs in their exact colours: many on the shown image, hardly any on the raw frame.
    on_view, on_raw = _count_colours(shown, colours), _count_colours(result.frame, colours)
    assert on_view > 500 and on_view > 10 * max(on_raw, 1), (on_view, on_raw)
    # And on screen: the widget's own pixels, scaled, still carry them (with blending tolerance).
    painted = _qimage_rgb(window.view.grab().toImage())
    r = window.view.target_rect()
    painted = painted[r.y():r.y() + r.height(), r.x():r.x() + r.width()]
    raw_scaled = _qimage_rgb(__import__("app.video_view", fromlist=["x"]).frame_to_qimage(result.frame)
                             .scaled(r.width(), r.height()))
    assert _count_colours(painted, colours, tol=12) > 3 * max(_count_colours(raw_scaled, colours, tol=12), 1)


def test_fps_plot_updates(window, wait):
    def plotted():
        xs, ys = window.perf.fps_curve.getData()
        return xs is not None and len(xs) >= 2 and np.nanmax(ys) > 0
    assert wait(plotted, timeout=30)
    assert {"decode", "infer", "post"} <= set(window.perf.stage_names())
    assert "cpu" in window.perf.device.text() or "cuda" in window.perf.device.text()
    assert wait(lambda: "infer" in window.perf.queues.text(), timeout=10)


def test_pause_step_resume(window, wait):
    p = window.session.pipeline
    window.set_paused(True)
    decoded = lambda: p.stats()["stages"]["decode"]["count"]  # noqa: E731
    # frames already decoded still finish; then nothing moves
    assert wait(lambda: p.frames_done == decoded() and _results(window) == p.frames_done, timeout=90)
    held = _results(window)
    t0 = time.monotonic()
    wait(lambda: False, timeout=1.5)
    assert _results(window) == held and time.monotonic() - t0 >= 1.5
    window.step()  # exactly one more frame
    assert wait(lambda: _results(window) == held + 1, timeout=30)
    wait(lambda: False, timeout=1.0)
    assert _results(window) == held + 1
    window.set_paused(False)
    assert wait(lambda: _results(window) >= held + 3, timeout=60)
    assert window.play_button.text() == "Pause"


def test_control_change_applies_live(window, wait):
    # No keypoint scores above 1 and no ids: the pipeline's renderer draws nothing on new frames.
    mark = window._last_result.index
    window.controls.set_value("render", "keypoint_threshold", 1.0)
    window.controls.set_value("render", "draw_ids", False)
    assert wait(lambda: (r := window._last_result).index > mark + 2 and len(r.poses) > 0
                and np.array_equal(r.rendered, r.frame), timeout=60)
    window.controls.set_value("render", "keypoint_threshold", 0.3)
    window.controls.set_value("render", "draw_ids", True)
    window.controls.set_value("tracking", "enabled", False)  # ids disappear from new results
    mark = window._last_result.index
    assert wait(lambda: (r := window._last_result).index > mark + 2 and len(r.poses) > 0
                and (r.poses.track_ids == -1).all(), timeout=60)
    assert not np.array_equal(window._last_result.rendered, window._last_result.frame)
    window.controls.set_value("tracking", "enabled", True)
    assert window.settings["config"]["tracking"] == {"enabled": True}
    assert window.settings["config"]["render"] == {"keypoint_threshold": pytest.approx(0.3), "draw_ids": True}


def test_recording_writes_playable_mp4_json_csv(window, wait):
    import av

    window.set_recording(True)
    assert window.recorder.active and window.record_action.isChecked()
    assert wait(lambda: window.recorder.frames >= 4, timeout=60)
    window.set_recording(False)
    assert not window.recorder.active
    out = sorted((window.output_dir()).glob("*.mp4"))
    assert len(out) == 1
    with av.open(str(out[0])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) >= 4 and frames[0].shape == (994, 1768, 3)
    entries = json.loads(out[0].with_suffix(".json").read_text())
    assert entries and len(entries[0]["keypoints"]) == 17 * 3
    assert out[0].with_suffix(".csv").read_text().startswith("frame,person,track,keypoint,x,y,score")


def test_screenshot_saves_the_annotated_frame(window):
    from PySide6 import QtGui

    path = window.save_screenshot()
    assert path is not None and path.suffix == ".png"
    image = QtGui.QImage(str(path))
    assert (image.width(), image.height()) == (1768, 994)


def test_seek_jumps_to_the_frame(window, wait):
    window.seek(200)
    assert wait(lambda: window._last_result is not None and window._last_result.index >= 200, timeout=60)
    assert window.seek_slider.value() >= 200


def test_close_while_recording_finalises_and_stops_every_thread(window, wait):
    """What Ctrl-C does (it closes the window): the recording is finalised, every thread ends."""
    import av

    before = set(window.output_dir().glob("*.mp4"))
    window.seek(0)  # far from the end: frames keep coming while recording
    assert wait(lambda: window._last_result is not None and window._last_result.index < 100, timeout=60)
    window.set_recording(True)
    assert wait(lambda: window.recorder.frames >= 3, timeout=60)
    assert [t for t in threading.enumerate() if t.name.startswith("rmpe-")]  # something to stop
    window.close()
    left = [t.name for t in threading.enumerate() if t.name.startswith("rmpe-")]
    assert left == []
    assert window.settings.path.exists() and not window.recorder.active
    (mp4,) = set(window.output_dir().glob("*.mp4")) - before
    with av.open(str(mp4)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == window.recorder.frames >= 3
    assert len(json.loads(mp4.with_suffix(".json").read_text())) > 0
