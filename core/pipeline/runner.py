"""The threaded pipeline: decode → infer → post → sinks, one thread per stage.

    source ──decode──▶ [q] ──infer──▶ [q] ──post──▶ [q] ──sinks──▶ render, writers, on_result
                       estimator.infer  post steps in order
                       (detect / ROI    (pose NMS → [refine] →
                        track, crop,     tracking → smoothing;
                        SPPE, decode)    see core/pipeline/steps.py)

Stages talk through bounded queues; every blocking get/put waits with a short timeout and checks
the stop flag, so nothing busy-waits and every thread notices a stop within ``POLL_S``.

Modes
    file      every frame, in order, as fast as the slowest stage allows (queues of
              ``config.pipeline.queue_size`` apply back-pressure down to the decoder). A
              scheduled detector run starts on a worker on the frame it is due, alongside that
              frame's SPPE, and the next frame waits for it and reads the new people it found
              (``core.detection.background.DeferredDetector``): results do not depend on
              timing, and no frame pays for both.
    realtime  the source at its own pace, frames dropped when inference falls behind (counted in
              ``stats()['dropped']``); the queues after infer hold one item, so no queue grows.
              Cameras and streams: the decoder overwrites a one-slot "latest" buffer in front of
              infer, so infer always takes the newest frame. Files: the decoder hands infer a
              frame only when infer asks for one, and then the frame due now (frame i is due at
              start + its timestamp, as a camera would deliver it); frames whose successor is
              already due are skipped without their RGB conversion. A frame's latency
              (``captured_at`` = its due time) is then at most one frame interval of waiting plus
              the stage times. The estimator runs its detector on a worker thread here
              (``PoseEstimator.set_background_detection``), so no frame waits for a detector run.
    live      the same as realtime (the name used for cameras and streams).
    auto      realtime for cameras and streams (``source.live``), file otherwise.

Before the first frame the decoder waits for the numba kernels (``core.jit.warm_up_async``,
started when the pipeline is built): a cold cache delays the start instead of stalling a frame.

Public API (also used by the desktop app)
    FrameResult(index, timestamp, frame, poses, captured_at, timings, rendered)
    Pipeline(source, config, sinks=(), on_result=None, profile=False, estimator=None,
             render=True, max_frames=None, mode=None, hold_at_end=False, post_steps=None)
        estimator     any object with infer / reset / device / backend; default
                      ``PoseEstimator(config, config.runtime.device)``
        post_steps    ordered ``PostStep``s (core/pipeline/steps.py) run by the post stage; the
                      CLI and the app pass ``core.cli.build_post_steps(config, source.fps)``
                      (NMS, tracking, smoothing). Default: ``core_post_steps`` (pose NMS only:
                      ``core`` does not import ``trackers``).
        max_frames    file mode: decode only that many; realtime: stop after that many results
        hold_at_end   a seekable source does not end the run at its last frame: the decoder
                      waits for ``seek`` or ``stop`` (a player's behaviour; ``.at_end`` tells)
        .start()                start the threads (opens the sinks first)
        .stop()                 ask every stage to stop; sinks are closed by their thread
        .join(timeout=None)     wait for the threads; True when all have ended
        .wait()                 join, then raise UserError("<stage> stage: ...") if a stage failed
        .pause() .resume()      hold / release the decoder (frames in flight still finish)
        .step()                 while paused: let exactly one more frame through
        .seek(frame_index)      seekable sources: continue from that frame; frames in flight
                                from before the seek are discarded and estimator ROI state
                                and every post step are reset (a paused pipeline shows one frame)
        .update_config(section, **values)
                                live, thread-safe: the stage that owns the section applies the
                                values before its next frame (detector, sppe decode options →
                                infer; pose_nms, tracking, smoothing → post; render → sinks)
        .stats()                per-stage mean/p50/p95 ms and throughput, estimator sub-stages,
                                queue depths, end-to-end fps (total and recent), latency
                                (frame captured → result ready), frames, dropped
        .running, .paused, .at_end, .failure, .frames_done, .config, .estimator, .source
        .kernels_ready          False while the first frame waits for the numba kernels (a cold
                                cache compiles them once, ~20-60 s; a GUI may say so)

``on_result(result)`` runs on the sinks thread after the writers; it must be quick (a GUI should
hand the frame to its own thread). ``result.frame`` is the untouched RGB frame; with ``render=True``
``result.rendered`` is a copy with the skeletons drawn (``core.render.draw_poses``).

Failures: an exception in any stage stops every thread (within ``POLL_S`` plus the running call of
each stage) and ``wait`` raises one ``UserError`` naming the stage. A source that fails mid-stream
(corrupt file, dropped stream) is different: the frames already decoded are still processed and
written, then ``wait`` raises. Sinks are always closed, so their files stay valid.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np

from core.config import Config, check_value, choices
from core.errors import UserError, one_line
from core.io.writers import SourceInfo
from core.pipeline.profile import DepthRecorder, RateMeter, Recorder, latency_summary
from core.pipeline.steps import PostStep, core_post_steps
from core.poses import Poses
from core.render import draw_poses

log = logging.getLogger("rmpe.pipeline")

POLL_S = 0.05  # longest a blocked thread waits before checking the stop flag
STAGES = ("decode", "infer", "post", "sinks")
MODES = choices("pipeline", "mode")  # auto | file | realtime | live
# Config sections that may change while running, and the stage that applies them.
LIVE_SECTIONS = {"detector": "infer", "sppe": "infer", "pose_nms": "post", "tracking": "post",
                 "smoothing": "post", "refine": "post", "render": "sinks"}
# Keys that change which model is loaded: they need a new estimator, not a live update.
RESTART_KEYS = {("sppe", "model"), ("sppe", "weights"), ("sppe", "keypoint_layout"), ("detector", "name")}


@dataclass
class FrameResult:
    """One processed frame. ``timings`` maps stage (and ``infer.<sub-stage>``) to milliseconds."""

    index: int
    timestamp: float
    frame: np.ndarray
    poses: Poses
    captured_at: float
    timings: dict = field(default_factory=dict)
    rendered: np.ndarray | None = None


class _End:
    """End-of-stream marker passed down the queues."""


END = _End()


class LatestSlot:
    """A one-item buffer whose ``put`` replaces what it holds: the consumer always gets the newest.

    The end marker is kept apart, so it is never dropped and comes after the last held item.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._has = False
        self._ended = False
        self._takers = 0  # consumers blocked in get()
        self.dropped = 0
        self.maxsize = 1

    def put(self, item, timeout: float | None = None) -> None:
        with self._cond:
            if item is END:
                self._ended = True
            else:
                if self._has:
                    self.dropped += 1
                self._item, self._has = item, True
            self._cond.notify_all()

    def get(self, timeout: float | None = None):
        with self._cond:
            if not self._has and not self._ended:
                self._takers += 1
                self._cond.notify_all()  # wakes a producer in wait_for_taker
                try:
                    self._cond.wait(timeout)
                finally:
                    self._takers -= 1
            if self._has:
                item, self._item, self._has = self._item, None, False
                return item
            if self._ended:
                return END
        raise queue.Empty

    def qsize(self) -> int:
        return int(self._has)

    def wait_for_taker(self, timeout: float | None = None) -> bool:
        """Block until the slot is empty and a consumer waits in ``get`` (True), or ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._takers > 0 and not self._has, timeout)


class Pipeline:
    """Threaded pose pipeline over one source; see the module docstring for the API."""

    def __init__(self, source, config: Config | None = None, sinks=(), on_result=None, profile: bool = False,
                 estimator=None, render: bool = True, max_frames: int | None = None, mode: str | None = None,
                 hold_at_end: bool = False, post_steps: Sequence[PostStep] | None = None):
        self.source = source
        self.config = config if config is not None else Config.load()
        self.sinks = list(sinks)
        self.on_result = on_result
        self.profile = bool(profile)
        self.render = bool(render)
        self.max_frames = int(max_frames) if max_frames else None
        self.hold_at_end = bool(hold_at_end)
        self._at_end = False
        mode = mode or self.config.pipeline.mode
        if mode not in MODES:
            raise UserError(f"pipeline mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = ("live" if source.live else "file") if mode == "auto" else mode
        self._realtime = self.mode in ("live", "realtime")
        from core import jit

        self._kernels = jit.warm_up_async()  # compiles / loads while the models load
        if estimator is None:
            from core.estimator import PoseEstimator

            estimator = PoseEstimator(self.config, self.config.runtime.device)
        self.estimator = estimator
        # Each step reads its config section on every call, so live changes need no rebuild.
        self.post_steps: list[PostStep] = list(core_post_steps(self.config) if post_steps is None else post_steps)
        names = [step.name for step in self.post_steps]
        if len(set(names)) != len(names):
            raise ValueError(f"post step names must be unique (they key the timings): {names}")

        qs = max(1, int(self.config.pipeline.queue_size))
        if self._realtime:
            self._queues = {"infer_in": LatestSlot(), "post_in": queue.Queue(1), "sinks_in": queue.Queue(1)}
        else:
            self._queues = {name: queue.Queue(qs) for name in ("infer_in", "post_in", "sinks_in")}
        self._depths = {name: DepthRecorder(q.maxsize) for name, q in self._queues.items()}
        self._rec = {name: Recorder() for name in STAGES}
        self._sub: dict[str, Recorder] = {}
        self._latency = Recorder()
        self._latency_out = Recorder()
        self._recent = RateMeter()

        self._stop = threading.Event()
        self._ctl = threading.Condition()  # guards pause / step / seek / generation
        self._paused = False
        self._steps = 0
        self._seek_to: int | None = None
        self._gen = 0  # bumped by every seek; items of older generations are discarded
        self._cfg_lock = threading.Lock()
        self._pending: dict[str, dict] = {}
        self._threads: list[threading.Thread] = []
        self._failure: tuple[str, BaseException] | None = None
        self._source_error: UserError | None = None
        self._started_at: float | None = None
        self._last_result_at: float | None = None
        self.frames_done = 0
        self.skipped = 0  # realtime file playback: frames passed over undecoded to RGB
        self._sinks_closed = False

    # ---------------------------------------------------------------- control

    def start(self) -> "Pipeline":
        if self._threads:
            raise RuntimeError("pipeline already started")
        info = SourceInfo(self.source.name, float(self.source.fps), int(self.source.width), int(self.source.height),
                          self.source.num_frames, self._realtime)
        opened = []
        try:
            for sink in self.sinks:
                sink.open(info, self.config)
                opened.append(sink)
        except BaseException:
            for sink in opened:  # nothing was written: drop their files rather than finish them
                getattr(sink, "abort", sink.close)()
            raise
        self.estimator.reset()  # an estimator reused from another run must not carry its ROIs over
        self._started_at = time.perf_counter()  # reset when frames start to flow (after the kernels)
        for name, target in (("decode", self._decode_loop), ("infer", self._infer_loop),
                             ("post", self._post_loop), ("sinks", self._sinks_loop)):
            t = threading.Thread(target=self._run_stage, args=(name, target), name=f"rmpe-{name}", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._ctl:
            self._ctl.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.perf_counter() + timeout
        for t in self._threads:
            while t.is_alive():
                left = POLL_S if deadline is None else min(POLL_S, deadline - time.perf_counter())
                if left <= 0:
                    return False
                t.join(left)  # short joins keep the main thread responsive to Ctrl-C
        return True

    def wait(self) -> None:
        """Run to the end (or until stopped); raise the first stage failure as a UserError."""
        self.join()
        failure = self._failure
        if failure is not None:
            stage, exc = failure
            if isinstance(exc, UserError):
                raise UserError(f"{stage} stage: {exc}", exit_code=exc.exit_code) from None
            raise UserError(f"{stage} stage failed: {type(exc).__name__}: {one_line(exc)}", exit_code=1) from None
        if self._source_error is not None:
            raise UserError(f"decode stage: {self._source_error}", exit_code=self._source_error.exit_code) from None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self.join()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    @property
    def at_end(self) -> bool:
        """True while a ``hold_at_end`` pipeline has decoded its last frame and waits for a seek."""
        return self._at_end

    @property
    def kernels_ready(self) -> bool:
        return self._kernels.done

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def failure(self) -> tuple[str, BaseException] | None:
        return self._failure

    def pause(self) -> None:
        with self._ctl:
            self._paused = True

    def resume(self) -> None:
        with self._ctl:
            self._paused = False
            self._steps = 0
            self._ctl.notify_all()

    def step(self) -> None:
        """While paused, let one more frame through (no effect while running)."""
        with self._ctl:
            if self._paused:
                self._steps += 1
                self._ctl.notify_all()

    def seek(self, frame_index: int) -> None:
        if not self.source.seekable:
            raise UserError(f"{self.source.name}: cannot seek in this source")
        with self._ctl:
            self._seek_to = int(frame_index)
            self._gen += 1  # from now on, items decoded before the seek are stale
            self._ctl.notify_all()

    def update_config(self, section: str, **values) -> None:
        """Change config values while running; applied by the owning stage before its next frame."""
        if section not in LIVE_SECTIONS:
            raise UserError(f"config section {section!r} cannot change while running; "
                            f"live sections: {', '.join(LIVE_SECTIONS)}")
        target = getattr(self.config, section)
        by_name = {f.name: f for f in fields(target)}
        values = dict(values)
        for key in values:
            if key not in by_name:
                raise UserError(f"config: unknown key {section}.{key}")
            if (section, key) in RESTART_KEYS:
                raise UserError(f"config: {section}.{key} selects a model; it needs a new pipeline")
            values[key] = check_value(type(target), by_name[key], values[key], f"config: {section}.{key}")
        with self._cfg_lock:
            self._pending.setdefault(section, {}).update(values)
        if not self.running:  # nothing would pick it up: apply now
            self._apply_pending(LIVE_SECTIONS[section])

    # ---------------------------------------------------------------- stages

    def _run_stage(self, name: str, loop) -> None:
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - any failure stops every stage
            if self._failure is None and not self._stop.is_set():
                self._failure = (name, exc)
                log.debug("%s stage failed", name, exc_info=exc)
            self.stop()
        finally:
            if name == "sinks":
                self._close_sinks()

    def _get(self, name: str):
        """Next item from queue ``name``; None when stopping."""
        q = self._queues[name]
        self._depths[name].add(q.qsize())
        while not self._stop.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return None

    def _put(self, name: str, item) -> bool:
        q = self._queues[name]
        while not self._stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _is_stale(self, gen: int) -> bool:
        return gen != self._gen

    def _control(self) -> tuple[bool, int | None, int]:
        """Block while paused; return (go on, seek target or None, generation)."""
        with self._ctl:
            while self._paused and self._steps == 0 and self._seek_to is None and not self._stop.is_set():
                self._ctl.wait(POLL_S)
            if self._stop.is_set():
                return False, None, self._gen
            target, self._seek_to = self._seek_to, None
            if self._paused and target is None:
                self._steps -= 1
            return True, target, self._gen

    def _hold(self) -> None:
        with self._ctl:
            self._at_end = True
            while self._seek_to is None and not self._stop.is_set():
                self._ctl.wait(POLL_S)
            self._at_end = False

    def _decode_loop(self) -> None:
        rec = self._rec["decode"]
        pace = self._realtime and not self.source.live  # a file played in real time at its fps
        period = 1.0 / max(float(self.source.fps), 1e-6)
        pace_origin = None  # perf_counter time of media time 0
        last = None  # the last frame handed on
        count = 0
        try:
            while not self._kernels.wait(POLL_S):  # no frame may wait on a numba compile
                if self._stop.is_set():
                    return
            self._started_at = time.perf_counter()
            while True:
                if self._paused:
                    pace_origin = None  # after a pause playback resumes from here, not catching up
                go, target, gen = self._control()
                if not go:
                    return
                if target is not None:
                    self.source.seek(target)
                    pace_origin = None
                limit_reached = self.max_frames is not None and not self._realtime and count >= self.max_frames
                item = None
                if not limit_reached:
                    if pace and not self._wait_for_taker():
                        return
                    t0 = time.perf_counter()
                    try:
                        ended = pace and pace_origin is not None and \
                            not self._skip_late(pace_origin + last.timestamp, last.index, period, t0)
                        item = None if ended else self.source.read()
                    except UserError as exc:
                        self._source_error = exc  # keep what was decoded: drain, then report
                        return
                    t1 = time.perf_counter()
                if item is None:
                    if not self.hold_at_end or not self.source.seekable:
                        return
                    self._hold()  # a player stays open at the end, waiting for a seek or stop
                    count = 0
                    pace_origin = None
                    continue
                if pace:
                    if pace_origin is None:
                        pace_origin = t1 - item.timestamp
                    last = item
                    due = pace_origin + item.timestamp
                    if self._stop.wait(max(0.0, due - time.perf_counter())):
                        return
                    item.captured_at = due  # when a camera would have delivered it
                rec.add((t1 - t0) * 1000)
                result = FrameResult(item.index, item.timestamp, item.image, None, item.captured_at,
                                     {"decode": (t1 - t0) * 1000})
                if not self._put("infer_in", (gen, result)):
                    return
                count += 1
        finally:
            self._put("infer_in", END)

    def _wait_for_taker(self) -> bool:
        """Realtime file playback: block until infer asks for a frame; False when stopping."""
        slot = self._queues["infer_in"]
        while not slot.wait_for_taker(POLL_S):
            if self._stop.is_set():
                return False
        return not self._stop.is_set()

    def _skip_late(self, last_due: float, last_index: int, period: float, now: float) -> bool:
        """Pass over the frames after ``last_index`` (due at ``last_due``) whose successor is already
        due (timestamps estimated one ``period`` apart), never the source's last frame; False when
        the source ended meanwhile."""
        late = int((now - last_due) / period) - 1  # frames last+1 … last+late are stale
        total = self.source.num_frames
        if total is not None:
            late = min(late, total - last_index - 2)
        for _ in range(max(0, late)):
            if not self.source.skip():
                return False
            self.skipped += 1
        return True

    def _inbox(self, inbox: str, outbox: str | None, reset=None):
        """Yield the current generation's (gen, result) items of queue ``inbox``; END is passed on
        to ``outbox`` and ends the loop, and ``reset`` runs when a seek/restart starts a new
        generation (stage state such as ROI tracks must not leak across it)."""
        last_gen = 0
        while True:
            item = self._get(inbox)
            if item is None:
                return
            if item is END:
                if outbox is not None:
                    self._put(outbox, END)
                return
            gen, result = item
            if self._is_stale(gen):
                continue
            if gen != last_gen and reset is not None:
                reset()
            last_gen = gen
            yield gen, result

    def _reset_post(self) -> None:
        for step in self.post_steps:
            step.reset()

    def _infer_loop(self) -> None:
        background = getattr(self.estimator, "set_background_detection", None)
        if background is not None:
            # real time: no frame waits for a detector run; file mode: timing-independent results.
            # Owned by this thread: its worker ends with the run (an estimator outlives pipelines).
            background(self._realtime)
        prepare = getattr(self.estimator, "prepare", None)
        if prepare is not None:  # before the first frame is asked for: its time is start-up time
            prepare(int(self.source.height), int(self.source.width))
        try:
            self._infer_frames()
        finally:
            if background is not None:
                background(False)

    def _infer_frames(self) -> None:
        rec = self._rec["infer"]
        size = None
        for gen, result in self._inbox("infer_in", "post_in", self.estimator.reset):
            self._apply_pending("infer")
            if result.frame.shape[:2] != size:  # another frame size (an image folder): a new scene,
                if size is not None:  # ROIs from the last image mean nothing in this one
                    self.estimator.reset()
                size = result.frame.shape[:2]
            timings = {} if self.profile else None
            t0 = time.perf_counter()
            result.poses = self.estimator.infer(result.frame, timings)
            ms = (time.perf_counter() - t0) * 1000
            rec.add(ms)
            result.timings["infer"] = ms
            if timings:
                for key, value in timings.items():
                    self._sub_rec(f"infer.{key}").add(float(value))
                    result.timings[f"infer.{key}"] = float(value)
            if not self._put("post_in", (gen, result)):
                return

    def _post_loop(self) -> None:
        rec = self._rec["post"]
        keys = [f"post.{step.name}" for step in self.post_steps]
        size = None
        for gen, result in self._inbox("post_in", "sinks_in", self._reset_post):
            self._apply_pending("post")
            if result.frame.shape[:2] != size:  # a new scene: no tracks or smoothing across it
                if size is not None:
                    self._reset_post()
                size = result.frame.shape[:2]
            t0 = t = time.perf_counter()
            poses = result.poses
            for key, step in zip(keys, self.post_steps):
                poses = step(poses, result.timestamp, result.frame)
                now = time.perf_counter()
                self._sub_rec(key).add((now - t) * 1000)
                result.timings[key] = (now - t) * 1000
                t = now
            result.poses = poses
            rec.add((t - t0) * 1000)
            result.timings["post"] = (t - t0) * 1000
            self._latency.add((t - result.captured_at) * 1000)
            result.timings["latency"] = (t - result.captured_at) * 1000
            if not self._put("sinks_in", (gen, result)):
                return

    def _sinks_loop(self) -> None:
        rec = self._rec["sinks"]
        names = [f"sinks.{type(s).__name__}" for s in self.sinks]
        for _gen, result in self._inbox("sinks_in", None):
            self._apply_pending("sinks")
            t0 = time.perf_counter()
            if self.render:
                result.rendered = draw_poses(result.frame.copy(), result.poses, self.config.render)
                self._sub_rec("sinks.render").add((time.perf_counter() - t0) * 1000)
            for name, sink in zip(names, self.sinks):
                ts = time.perf_counter()
                sink.write(result)
                self._sub_rec(name).add((time.perf_counter() - ts) * 1000)
            if self.on_result is not None:
                ts = time.perf_counter()
                self.on_result(result)
                self._sub_rec("sinks.on_result").add((time.perf_counter() - ts) * 1000)
            now = time.perf_counter()
            rec.add((now - t0) * 1000)
            self._latency_out.add((now - result.captured_at) * 1000)
            self._last_result_at = now
            self._recent.tick(now)
            self.frames_done += 1
            if self.max_frames is not None and self.frames_done >= self.max_frames:
                self.stop()  # live mode ends here; file mode already stopped decoding
                return

    def _close_sinks(self) -> None:
        if self._sinks_closed:
            return
        self._sinks_closed = True
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - report, but close the others too
                if self._failure is None:
                    self._failure = ("sinks", exc)

    def _sub_rec(self, name: str) -> Recorder:
        rec = self._sub.get(name)
        if rec is None:
            with self._cfg_lock:
                rec = self._sub.setdefault(name, Recorder())
        return rec

    def _apply_pending(self, stage: str) -> None:
        if not self._pending:  # fast path, no lock
            return
        with self._cfg_lock:
            mine = {s: v for s, v in self._pending.items() if LIVE_SECTIONS[s] == stage}
            for s in mine:
                del self._pending[s]
        for section, values in mine.items():
            target = getattr(self.config, section)
            for key, value in values.items():
                setattr(target, key, value)
            hook = getattr(self.estimator, "config_changed", None)
            if stage == "infer" and hook is not None:
                hook(section, values)

    # ---------------------------------------------------------------- measurements

    def stats(self) -> dict:
        now = time.perf_counter()
        end = self._last_result_at if (self._last_result_at and not self.running) else now
        elapsed = (end - self._started_at) if self._started_at else 0.0
        dropped = self.skipped + sum(getattr(q, "dropped", 0) for q in self._queues.values())
        with self._cfg_lock:
            subs = list(self._sub.items())
        return {
            "mode": self.mode,
            "source": self.source.name,
            "frames": self.frames_done,
            "dropped": dropped,
            "elapsed_s": elapsed,
            "fps": self.frames_done / elapsed if elapsed > 0 else 0.0,
            "fps_recent": self._recent.rate(),
            "latency_ms": latency_summary(self._latency),
            "latency_out_ms": latency_summary(self._latency_out),
            "stages": {name: rec.snapshot(elapsed) for name, rec in self._rec.items()},
            "substages": {name: rec.snapshot(elapsed) for name, rec in sorted(subs)},
            "queues": {name: d.snapshot() for name, d in self._depths.items()},
            "device": str(getattr(self.estimator, "device", "")),
            "backend": str(getattr(self.estimator, "backend", "")),
        }

