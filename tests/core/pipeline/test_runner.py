"""Pipeline threading: file-mode order, live-mode dropping and latency, failures, control, live config."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.cli import build_post_steps
from core.config import Config
from core.errors import UserError
from core.io import CocoJsonWriter, PatternSource, pattern_index
from core.io.writers import Sink
from core.pipeline import FrameResult, LatestSlot, Pipeline
from core.pipeline.profile import format_table


def _config(**sections) -> Config:
    cfg = Config.load()
    cfg.smoothing.enabled = False  # keep the boxes as the estimator made them
    cfg.update(sections)
    return cfg


def _pipeline(source, config: Config, **kw) -> Pipeline:
    """The pipeline as the CLI and the app compose it (NMS, tracking, smoothing)."""
    return Pipeline(source, config, post_steps=build_post_steps(config, source.fps), **kw)


def _collect(pipeline: Pipeline) -> list[FrameResult]:
    out: list[FrameResult] = []
    pipeline.on_result = out.append
    return out


@pytest.mark.parametrize("queue_size", [1, 4])
def test_file_mode_keeps_every_frame_in_order(pattern_estimator, queue_size):
    est = pattern_estimator(jitter_s=0.004)
    cfg = _config(pipeline={"queue_size": queue_size})
    p = _pipeline(PatternSource(96, 64, num_frames=120), cfg, estimator=est, render=True)
    results = _collect(p)
    p.start()
    p.wait()
    assert [r.index for r in results] == list(range(120))
    assert est.seen == list(range(120))
    for r in results:
        assert pattern_index(r.frame) == r.index  # frame and result belong together
        assert int(round(r.poses.boxes[0, 0])) == r.index % 56  # poses computed from this frame
        assert r.rendered is not None and r.rendered is not r.frame
        assert r.poses.track_ids[0] >= 0  # the real tracker ran
    assert est.thread_names == {"rmpe-infer"}
    s = p.stats()
    assert s["frames"] == 120 and s["dropped"] == 0 and s["mode"] == "file"
    assert s["stages"]["infer"]["count"] == 120
    assert all(q["max"] <= q["capacity"] for q in s["queues"].values())


def test_live_mode_drops_stale_frames_and_bounds_latency(pattern_estimator):
    """A 200 fps source against a 25 ms stage: infer always takes the newest frame."""
    period = 1 / 200
    est = pattern_estimator(delay_s=0.025)
    p = _pipeline(PatternSource(96, 64, fps=200, live=True), _config(), estimator=est, render=False,
                 max_frames=40)
    results = _collect(p)
    p.start()
    p.wait()
    s = p.stats()
    assert len(results) == 40 and s["mode"] == "live"
    # Stale frames were skipped: indices jump by about stage time / period (25 ms / 5 ms = 5).
    steps = np.diff([r.index for r in results])
    assert (steps >= 1).all() and np.median(steps) >= 3
    assert s["dropped"] >= 40
    # No queue grows; latency stays within two periods of the slow stage (+ scheduling slack).
    assert all(q["max"] <= 1 for q in s["queues"].values())
    lat = s["latency_ms"]
    assert lat["p95"] <= 2 * 25 + 15, lat
    # Each processed frame was at most one source period old when infer took it.
    assert lat["p50"] <= 25 + 5 + 1000 * period * 2, lat


def test_live_mode_paces_a_file_source_in_real_time(pattern_estimator):
    est = pattern_estimator()
    p = _pipeline(PatternSource(64, 48, fps=100, num_frames=30), _config(), estimator=est, render=False,
                 mode="live")
    results = _collect(p)
    t0 = time.perf_counter()
    p.start()
    p.wait()
    assert time.perf_counter() - t0 >= 0.25  # 30 frames at 100 fps, not as fast as possible
    assert results[-1].index == 29


def test_realtime_mode_drops_what_a_slow_estimator_cannot_keep_up_with(pattern_estimator):
    """A 100 fps file against a 25 ms stage: played at its own pace (not faster, not slower), frames
    in order, each processed frame the one due when infer asked, every other frame counted dropped."""
    period, n = 1 / 100, 150
    est = pattern_estimator(delay_s=0.025)
    p = Pipeline(PatternSource(64, 48, fps=100, num_frames=n), _config(), estimator=est, render=False,
                 mode="realtime")
    results = _collect(p)
    t0 = time.perf_counter()
    p.start()
    p.wait()
    wall = time.perf_counter() - t0
    s = p.stats()
    index = [r.index for r in results]
    assert s["mode"] == "realtime" and all(pattern_index(r.frame) == r.index for r in results)
    assert (np.diff(index) >= 1).all()  # order preserved
    assert wall >= (n - 1) * period * 0.95  # paced: 1.5 s of video is not played faster
    assert len(results) <= n * 0.5 and np.median(np.diff(index)) >= 2  # ≥ 25 ms per frame: ~1 in 3 kept
    assert s["dropped"] + len(results) == n  # every frame is processed or counted as dropped
    assert all(q["max"] <= 1 for q in s["queues"].values())
    # A frame waited at most one period for infer, then one stage time (+ scheduling slack).
    lat = s["latency_ms"]
    assert lat["p95"] <= 2 * 25 + 2 * 1000 * period + 15, lat


def test_realtime_mode_keeps_every_frame_when_the_estimator_keeps_up(pattern_estimator):
    """A 25 fps file against a 4 ms stage: (nearly) nothing dropped, latency within two frame
    intervals. A busy machine may stall a thread for a frame or two (first-call imports on the
    post thread, other processes): realtime then rightly skips, so up to 3 drops are allowed."""
    period, n = 1 / 25, 30
    p = Pipeline(PatternSource(64, 48, fps=25, num_frames=n), _config(), estimator=pattern_estimator(delay_s=0.004),
                 render=False, mode="realtime")
    results = _collect(p)
    t0 = time.perf_counter()
    p.start()
    p.wait()
    assert time.perf_counter() - t0 >= (n - 1) * period * 0.95
    s = p.stats()
    index = [r.index for r in results]
    assert (np.diff(index) >= 1).all() and index[-1] == n - 1
    assert s["dropped"] + len(results) == n and s["dropped"] <= 3, index
    assert s["latency_ms"]["p95"] <= 2 * 1000 * period, s["latency_ms"]


def test_realtime_mode_resumes_from_a_pause_without_catching_up(pattern_estimator):
    """After a pause playback continues from the paused frame at its pace; it does not skip the
    frames that would have played meanwhile (0.6 s = 30 frames at 50 fps)."""
    p = Pipeline(PatternSource(64, 48, fps=50, num_frames=60), _config(), estimator=pattern_estimator(),
                 render=False, mode="realtime")
    results = _collect(p)
    p.start()
    _wait_for(lambda: len(results) >= 10)
    p.pause()
    time.sleep(0.6)
    p.resume()
    p.wait()
    assert p.stats()["dropped"] <= 10, [r.index for r in results]  # a stall may skip a few, not 30
    assert results[-1].index == 59


def test_realtime_video_file_skips_frames_without_losing_their_place(tmp_path, pattern_estimator, pattern_video):
    """A video file played in real time skips frames undecoded to RGB; the frames it hands on are
    exactly the decoded frames of those indices."""
    from core.io import VideoFileSource

    path = pattern_video(tmp_path / "rt.mp4", 60, fps=100.0)
    with VideoFileSource(path) as reference:
        frames = [f.image for f in iter(reference.read, None)]
    source = VideoFileSource(path)
    p = Pipeline(source, _config(), estimator=pattern_estimator(delay_s=0.03), render=False, mode="realtime")
    results = _collect(p)
    p.start()
    p.wait()
    source.close()
    assert 3 <= len(results) < 40 and p.stats()["dropped"] + len(results) == 60
    assert (np.diff([r.index for r in results]) >= 1).all()
    assert all(np.array_equal(r.frame, frames[r.index]) for r in results)


@pytest.mark.parametrize("where", ["infer", "sinks", "on_result"])
def test_stage_failure_stops_every_thread_within_two_seconds(pattern_estimator, where):
    class FailingSink(Sink):
        def write(self, result):
            if result.index == 5:
                raise OSError("disk full")

    def fail_callback(result):
        if result.index == 5:
            raise ValueError("display closed")

    est = pattern_estimator(fail_at=5 if where == "infer" else None, delay_s=0.002)
    sinks = [FailingSink()] if where == "sinks" else []
    p = _pipeline(PatternSource(64, 48), _config(), estimator=est, sinks=sinks, render=False,
                 on_result=fail_callback if where == "on_result" else None)
    p.start()  # endless source: only the failure ends this run
    t0 = time.perf_counter()
    while p.failure is None and time.perf_counter() - t0 < 10:
        time.sleep(0.01)
    t_fail = time.perf_counter()
    assert p.join(timeout=2.0), "threads still running 2 s after the failure"
    assert time.perf_counter() - t_fail < 2.0
    expected_stage = "infer" if where == "infer" else "sinks"
    with pytest.raises(UserError) as info:
        p.wait()
    message = str(info.value)
    assert message.startswith(f"{expected_stage} stage") and "\n" not in message
    assert {"infer": "synthetic failure", "sinks": "disk full", "on_result": "display closed"}[where] in message


@pytest.mark.parametrize("damage, message", [
    ("truncate", r"video ended after frame \d+ of 90"),
    ("garbage", r"decode error after frame \d+"),
])
def test_source_error_mid_stream_keeps_decoded_frames(tmp_path, pattern_estimator, pattern_video, damage, message):
    """A corrupt file: frames decoded before the error are processed and written, then one error."""
    import json

    from core.io import VideoFileSource

    path = pattern_video(tmp_path / "fs.mp4", 90)  # our writer puts the index first (faststart)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) * 7 // 10]
    else:
        at = data.find(b"mdat") + (len(data) - data.find(b"mdat")) // 2
        data[at:at + 400] = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    source = VideoFileSource(bad)
    json_path = tmp_path / "out.json"
    p = _pipeline(source, _config(), estimator=pattern_estimator(), sinks=[CocoJsonWriter(json_path)], render=False)
    results = _collect(p)
    p.start()
    with pytest.raises(UserError, match=r"^decode stage: .*" + message) as info:
        p.wait()
    assert "\n" not in str(info.value)
    written = json.loads(json_path.read_text())
    assert 0 < len(results) < 90
    assert [r.index for r in results] == list(range(len(results)))
    assert sorted({e["image_id"] for e in written}) == [r.index for r in results]
    source.close()


def test_pause_step_resume(pattern_estimator):
    est = pattern_estimator()
    p = _pipeline(PatternSource(64, 48, num_frames=50), _config(), estimator=est, render=False)
    results = _collect(p)
    p.pause()
    p.start()
    time.sleep(0.3)
    assert results == []
    p.step()
    _wait_for(lambda: len(results) == 1)
    time.sleep(0.2)
    assert [r.index for r in results] == [0]
    p.step()
    p.step()
    _wait_for(lambda: len(results) == 3)
    p.resume()
    p.wait()
    assert [r.index for r in results] == list(range(50))


def test_seek_discards_in_flight_frames_and_resets_state(pattern_estimator):
    est = pattern_estimator(delay_s=0.003)
    p = _pipeline(PatternSource(64, 48, num_frames=400), _config(), estimator=est, render=False)
    results = _collect(p)
    p.start()
    _wait_for(lambda: len(results) >= 10)
    p.seek(300)
    p.wait()
    indices = [r.index for r in results]
    jump = next(i for i in range(1, len(indices)) if indices[i] != indices[i - 1] + 1)
    assert indices[jump] == 300 and indices[jump:] == list(range(300, 400))
    assert indices[:jump] == list(range(indices[jump - 1] + 1))
    assert est.resets == 2  # once at start, once at the seek


def test_seek_while_paused_shows_one_frame(pattern_estimator):
    est = pattern_estimator()
    p = _pipeline(PatternSource(64, 48, num_frames=100), _config(), estimator=est, render=False)
    results = _collect(p)
    p.pause()
    p.start()
    p.seek(42)
    _wait_for(lambda: len(results) == 1)
    time.sleep(0.2)
    assert [r.index for r in results] == [42]
    p.stop()
    p.join()


def test_update_config_is_applied_by_the_owning_stage(pattern_estimator):
    seen = []

    def on_result(r):
        seen.append((r.index, p.config.render.keypoint_threshold, r.poses.track_ids[0]))

    est = pattern_estimator(delay_s=0.002)
    p = _pipeline(PatternSource(64, 48, num_frames=200), _config(), estimator=est, render=True, on_result=on_result)
    p.start()
    _wait_for(lambda: len(seen) >= 20)
    p.update_config("render", keypoint_threshold=0.95)  # above the stick person's 0.9: nothing drawn
    p.update_config("tracking", enabled=False)
    p.wait()
    assert seen[0][1] == 0.3 and seen[-1][1] == 0.95
    assert seen[0][2] >= 0 and seen[-1][2] == -1  # tracking switched off live


@pytest.mark.parametrize("section, values, message", [
    ("runtime", {"device": "cuda"}, "cannot change while running"),
    ("render", {"colour": 1}, "unknown key render.colour"),
    ("sppe", {"model": "hourglass"}, "needs a new pipeline"),
])
def test_update_config_rejects_what_cannot_change_live(pattern_estimator, section, values, message):
    p = _pipeline(PatternSource(64, 48, num_frames=1), _config(), estimator=pattern_estimator(), render=False)
    with pytest.raises(UserError, match=message):
        p.update_config(section, **values)


def test_update_config_before_start_applies_at_once(pattern_estimator):
    p = _pipeline(PatternSource(64, 48, num_frames=1), _config(), estimator=pattern_estimator(), render=False)
    p.update_config("detector", score_threshold=0.77)
    assert p.config.detector.score_threshold == 0.77


def test_stats_profile_and_table(pattern_estimator):
    p = _pipeline(PatternSource(64, 48, num_frames=60), _config(), estimator=pattern_estimator(delay_s=0.002),
                 render=True, profile=True)
    p.start()
    p.wait()
    s = p.stats()
    assert set(s["stages"]) == {"decode", "infer", "post", "sinks"}
    assert {"infer.work", "post.nms", "post.track", "post.smooth", "sinks.render"} <= set(s["substages"])
    infer = s["stages"]["infer"]
    assert infer["count"] == 60 and infer["p50_ms"] >= 2.0 and infer["p95_ms"] >= infer["p50_ms"]
    assert 0 < s["fps"] <= infer["capacity_fps"] * 1.1
    assert s["latency_ms"]["p95"] >= s["latency_ms"]["p50"] > 0
    table = format_table(s)
    for word in ("decode", "infer.work", "infer_in", "end-to-end", "latency"):
        assert word in table


def test_latest_slot_keeps_newest_and_never_drops_the_end():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    from core.pipeline import END

    slot.put(END)
    assert slot.get(0.01) == 4 and slot.dropped == 4
    assert slot.get(0.01) is END


def test_max_frames_in_file_mode(pattern_estimator):
    p = _pipeline(PatternSource(64, 48), _config(), estimator=pattern_estimator(), render=False, max_frames=25)
    results = _collect(p)
    p.start()
    p.wait()
    assert [r.index for r in results] == list(range(25))


def test_stop_from_another_thread_ends_an_endless_live_run(pattern_estimator):
    p = _pipeline(PatternSource(64, 48, fps=500, live=True), _config(), estimator=pattern_estimator(), render=False)
    p.start()
    threading.Timer(0.3, p.stop).start()
    t0 = time.perf_counter()
    p.wait()
    assert time.perf_counter() - t0 < 2.0 and p.frames_done > 0 and not p.running


def _wait_for(cond, timeout: float = 5.0) -> None:
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_hold_at_end_waits_for_a_seek_then_stops_on_request(pattern_estimator):
    p = _pipeline(PatternSource(64, 48, num_frames=20), _config(), estimator=pattern_estimator(), render=False,
                 hold_at_end=True)
    results = _collect(p)
    p.start()
    _wait_for(lambda: p.at_end and len(results) == 20)
    time.sleep(0.1)
    assert p.running and len(results) == 20
    p.seek(15)
    _wait_for(lambda: len(results) == 25)
    assert [r.index for r in results[20:]] == list(range(15, 20))
    p.stop()
    p.wait()
    assert not p.running
