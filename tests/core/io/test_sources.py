"""Sources: video files, image folders, pattern/loop/limit wrappers, and every bad input → one line."""
from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np
import pytest

from core.errors import UserError
from core.io import (CameraSource, ImageSource, LimitSource, LoopSource, PatternSource, URLSource, VideoFileSource,
                     open_source, pattern_index)


def _read_all(source):
    out = []
    while (item := source.read()) is not None:
        out.append(item)
    return out


def test_video_file_frames_timestamps_and_metadata(tmp_path, write_video):
    path = write_video(tmp_path / "v.mp4", 45, width=64, height=48, fps=25)
    with VideoFileSource(path) as src:
        assert (src.width, src.height, src.fps, src.num_frames) == (64, 48, 25.0, 45)
        assert src.seekable and not src.live
        frames = _read_all(src)
    assert [f.index for f in frames] == list(range(45))
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(45) / 25, atol=1e-6)
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    # RGB order: the bar was drawn as (200, 50, 50).
    assert frames[10].image[20, 0, 0] > 150 and frames[10].image[20, 0, 2] < 100


def test_video_file_seek(tmp_path, write_video):
    path = write_video(tmp_path / "v.mp4", 60)
    with VideoFileSource(path) as src:
        reference = [f.image for f in _read_all(src)]
        for target in (37, 3, 59, 0):
            src.seek(target)
            item = src.read()
            assert item.index == target
            np.testing.assert_array_equal(item.image, reference[target])


def test_demo_video_metadata(demo_video):
    with VideoFileSource(demo_video) as src:
        assert (src.width, src.height, round(src.fps), src.num_frames) == (1768, 994, 30, 230)


def test_image_folder_and_glob(tmp_path):
    for i, size in enumerate([(40, 30), (40, 30), (80, 60)]):
        img = np.full((size[1], size[0], 3), 10 * i, np.uint8)
        img[0, 0] = (255, 0, 0)  # RGB red → stored as BGR by OpenCV
        cv2.imwrite(str(tmp_path / f"f{i:02d}.png"), img[:, :, ::-1])
    (tmp_path / "notes.txt").write_text("not an image")
    src = ImageSource(tmp_path, fps=10)
    frames = _read_all(src)
    assert src.num_frames == 3 and [f.index for f in frames] == [0, 1, 2]
    # each image at its own size (issue 13: no resizing to the first one's size)
    assert [f.image.shape for f in frames] == [(30, 40, 3), (30, 40, 3), (60, 80, 3)]
    assert src.sizes == [(40, 30), (40, 30), (80, 60)] and src.mixed_sizes
    assert tuple(frames[0].image[0, 0]) == (255, 0, 0)
    assert frames[2].timestamp == pytest.approx(0.2)
    assert ImageSource(str(tmp_path / "f0[01].png")).num_frames == 2
    src.seek(1)
    assert src.read().index == 1


def test_pattern_source_encodes_index_and_paces_when_live():
    src = PatternSource(32, 24, fps=100, num_frames=5)
    assert [pattern_index(f.image) for f in _read_all(src)] == [0, 1, 2, 3, 4]
    live = PatternSource(32, 24, fps=100, live=True)
    t0 = time.perf_counter()
    first = live.read()
    time.sleep(0.1)  # nobody reads for 10 periods: those frames are gone, as with a camera
    later = live.read()
    assert later.index - first.index >= 8 and time.perf_counter() - t0 < 0.5


def test_loop_and_limit_sources():
    loop = LoopSource(PatternSource(16, 16, fps=10, num_frames=4), 10)
    frames = _read_all(loop)
    assert [f.index for f in frames] == list(range(10))
    assert [pattern_index(f.image) for f in frames] == [0, 1, 2, 3] * 2 + [0, 1]
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    assert [f.index for f in _read_all(LimitSource(PatternSource(16, 16), 3))] == [0, 1, 2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket closes


def _zero_frame_avi(path):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    return path


def _bad_input(kind: str, tmp_path, write_video):
    if kind == "missing":
        return dict(video=str(tmp_path / "nope.mp4")), "video not found"
    if kind == "text":
        p = tmp_path / "notes.mp4"
        p.write_text("this is not a video\n" * 20)
        return dict(video=str(p)), "is not a readable video"
    if kind == "folder_as_video":
        return dict(video=str(tmp_path)), "is a folder"
    if kind == "zero_frames_mp4":
        return dict(video=str(write_video(tmp_path / "z.mp4", 0))), "no video stream"
    if kind == "zero_frames_avi":
        return dict(video=str(_zero_frame_avi(tmp_path / "z.avi"))), "has no frames"
    if kind == "truncated_index":  # moov at the end: cut off
        p = write_video(tmp_path / "t.mp4", 60)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return dict(video=str(p)), "is not a readable video"
    if kind == "camera_absent":
        return dict(camera=97), "camera 97"
    if kind == "url_closed_port":
        return dict(url=f"http://127.0.0.1:{_closed_port()}/stream.mp4"), "cannot open stream"
    if kind == "rtsp_closed_port":
        return dict(url=f"rtsp://127.0.0.1:{_closed_port()}/live"), "cannot open stream"
    if kind == "images_missing":
        return dict(images=str(tmp_path / "none")), "image folder or pattern not found"
    if kind == "images_glob_nothing":
        return dict(images=str(tmp_path / "none" / "*.png")), "no images"
    if kind == "images_empty":
        (tmp_path / "empty").mkdir()
        return dict(images=str(tmp_path / "empty")), "no images"
    if kind == "two_inputs":
        return dict(video="a.mp4", camera=0), "exactly one input"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "text", "folder_as_video", "zero_frames_mp4", "zero_frames_avi",
                                  "truncated_index", "camera_absent", "url_closed_port", "rtsp_closed_port",
                                  "images_missing", "images_glob_nothing", "images_empty", "two_inputs"])
def test_bad_input_is_one_line_and_fast(kind, tmp_path, write_video):
    spec, message = _bad_input(kind, tmp_path, write_video)
    t0 = time.perf_counter()
    with pytest.raises(UserError) as info:
        open_source(**spec)
    assert time.perf_counter() - t0 < 6.0
    assert message in str(info.value) and "\n" not in str(info.value)


def test_truncated_video_with_index_first_ends_with_an_error_after_the_good_frames(tmp_path, write_video):
    p = write_video(tmp_path / "fs.mp4", 80, faststart=True)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 8 // 10])
    with VideoFileSource(p) as src:
        good = []
        with pytest.raises(UserError, match=r"video ended after frame \d+ of 80"):
            while (item := src.read()) is not None:
                good.append(item.index)
    assert 10 < len(good) < 80 and good == list(range(len(good)))


def test_classes_raise_the_same_errors_directly(tmp_path):
    with pytest.raises(UserError, match="camera 98"):
        CameraSource(98)
    with pytest.raises(UserError, match="cannot open stream"):
        URLSource(f"http://127.0.0.1:{_closed_port()}/x", connect_timeout=1, read_timeout=1)


def test_url_source_reads_an_http_stream(tmp_path, write_video):
    import functools
    import http.server
    import threading

    write_video(tmp_path / "cam.mp4", 12, faststart=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = URLSource(f"http://127.0.0.1:{server.server_address[1]}/cam.mp4")
        frames = _read_all(src)
        src.close()
    finally:
        server.shutdown()
        server.server_close()
    assert src.live and (src.width, src.height) == (64, 48)
    assert [f.index for f in frames] == list(range(12))
    assert all(b.timestamp >= a.timestamp for a, b in zip(frames, frames[1:]))


def test_url_that_accepts_but_never_answers_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        t0 = time.perf_counter()
        with pytest.raises(UserError, match=r"no answer within 1 s"):
            URLSource(f"http://127.0.0.1:{listener.getsockname()[1]}/x.mp4", connect_timeout=1, read_timeout=1)
        assert time.perf_counter() - t0 < 3


def test_closing_from_two_threads_closes_once(demo_video):
    """Two threads closing one source at the same moment must not double-free the container."""
    for _ in range(20):
        source = VideoFileSource(demo_video)
        start = threading.Barrier(2)

        def close():
            start.wait()
            source.close()

        threads = [threading.Thread(target=close) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        source.close()  # and a third time, after the fact
