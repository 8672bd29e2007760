"""One running pipeline at a time, seen from the GUI thread.

Opening a source (loading models, probing a camera) runs on a helper thread so the event loop
never blocks. Results arrive on the pipeline's sinks thread; there they go to the recorder and the
FPS meter, then into a one-slot mailbox: the GUI is told with a queued signal only when the slot
was empty, so a slow GUI shows the newest frame and never builds a backlog (frames it skips are
counted, not queued). Frames are never copied here: the view shows the pipeline's own arrays.

The pose estimator (the loaded models) outlives pipelines: a new source, a loop back to the start
or a restart after a model-level change reuses it unless the change selects other models.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass

import cv2
from PySide6 import QtCore

from app.playback import PlayerSource, exception_sentence, sentence
from app.sources_dialog import SourceSpec
from app.video_view import fit_size
from core.config import Config
from core.errors import UserError
from core.pipeline.runner import RESTART_KEYS

log = logging.getLogger("rmpe.app")

JOIN_TIMEOUT_S = 15.0  # a stage notices stop between calls; one model call can be slow on a busy CPU
OPEN_JOIN_TIMEOUT_S = 120.0  # loading models cannot be interrupted; a late pipeline stops itself
PLOTTED_STAGES = ("decode", "infer", "post")  # top-level stage timings carried by every result
# Changes the running pipeline cannot apply: they select other models or another device. The
# session restarts the pipeline at the current frame with a new estimator.
# The pipeline's own RESTART_KEYS (model choice) plus the compute settings.
ESTIMATOR_KEYS = RESTART_KEYS | {("runtime", "device"), ("runtime", "backend"), ("runtime", "threads"),
                                 ("runtime", "half")}
RESTART_SECTIONS = {"runtime", "pipeline"}
# Files play at their own pace, frames dropped when inference falls behind (the pipeline's
# real-time mode); "process every frame" runs them in file mode. Cameras and streams run live.
REALTIME_MODE = "realtime"
HELD_MAX = 64  # results kept back while paused (frames that were in flight when the user paused)


@dataclass
class SessionInfo:
    spec: SourceSpec
    frame_count: int | None  # None for live sources and unknown lengths
    fps: float
    width: int
    height: int
    live: bool
    device: str
    backend: str
    reopenable: bool = True  # False for a source object handed in: it cannot be opened again


def _estimator_key(config: Config) -> tuple:
    return tuple(getattr(getattr(config, s), k) for s, k in sorted(ESTIMATOR_KEYS))


class PipelineSession(QtCore.QObject):
    opened = QtCore.Signal(object)  # SessionInfo
    failed = QtCore.Signal(str)  # one line for the message bar
    ended = QtCore.Signal(str)  # "" at the end of a file, else the error line
    frame_ready = QtCore.Signal()
    reached_end = QtCore.Signal()  # the last frame of a file / image folder is on its way to the view
    _built = QtCore.Signal(int, object, object)  # worker thread -> GUI thread

    def __init__(self, config: Config, estimator_factory=None, parent: QtCore.QObject | None = None):
        """``estimator_factory(config)`` builds the pose estimator (default: core PoseEstimator)."""
        super().__init__(parent)
        self.config = config  # the GUI's copy; each pipeline works on its own
        self.estimator_factory = estimator_factory
        self.loop = False
        self.paused = False
        self.every_frame = False  # files: process every frame (file mode) instead of real time
        self.recorder = None  # app.recorder.Recorder, set by the window
        self.meter = None  # app.perf_panel.FrameMeter, set by the window
        # Display pre-scaling, read on the pipeline thread: where the frame will be shown (device
        # px, or None to skip) and whether the skeleton overlay is on.
        self.display_box = lambda: None
        self.overlay = True
        self.pipeline = None
        self.info: SessionInfo | None = None
        self.last_index = 0  # index of the newest result, for restarts at the same place
        self.results = 0  # results seen on the pipeline side (current source)
        self.skipped = 0  # results replaced in the mailbox before the GUI took them
        self._generation = 0
        self._lock = threading.Lock()
        self._latest = None
        self._pending = False
        self._threads: list[threading.Thread] = []
        self._running: set = set()  # registered pipelines whose source is still open (see _release)
        self._estimator = None
        self._estimator_key: tuple | None = None
        self._closing = False
        # While paused, results still in flight are held back (the view stays on the frame the
        # user paused on); Step takes the next one from here. ``_want``: the index to show next.
        self._holding = False
        self._held: list = []
        self._want: int | None = None
        self._offered: int | None = None  # index of the newest result put in the mailbox
        self._end_sent = False
        self._end_seen: tuple[int, float] | None = None  # (results, time) when poll_end first saw the end
        self._player: PlayerSource | None = None  # the current generation's seekable source
        self._built.connect(self._accept)

    # -- lifecycle (GUI thread) --------------------------------------------------------------------
    def open(self, spec: SourceSpec, start_at: int = 0, source=None, paused: bool = False) -> None:
        """Stop what runs and open ``spec`` in the background; ``opened`` or ``failed`` follows.

        ``source``: an already open core.io Source to use instead of opening ``spec`` (embedding,
        tests); it is closed with its pipeline. ``paused``: show frame ``start_at`` and hold there.
        """
        if self._closing:
            return
        self._generation += 1
        self.paused = bool(paused)
        self.pipeline, self.info = None, None
        with self._lock:
            self._latest, self._pending = None, False
            self.results = self.skipped = 0
            self._holding, self._held = self.paused, []
            self._want = int(start_at) if self.paused else None
            self._offered, self._end_sent = None, False
        self._player, self._end_seen = None, None
        self.last_index = start_at
        self._spawn(self._open_worker, self._generation, spec, int(start_at), source, name="rmpe-app-open")

    def restart(self) -> None:
        """Reopen the current source where it is (after a change a running pipeline cannot take)."""
        info = self.info
        if info is not None and info.reopenable:
            start = (self.last_index if self.paused else self.last_index + 1) if info.spec.seekable else 0
            self.open(info.spec, start, paused=self.paused)

    def close(self) -> None:
        """Stop every pipeline and wait for every thread this session started."""
        self._closing = True
        self._generation += 1
        self.pipeline = None
        for t in list(self._threads):
            if t.name == "rmpe-app-open":
                t.join(OPEN_JOIN_TIMEOUT_S)
        self._stop_all()
        for t in list(self._threads):
            t.join(JOIN_TIMEOUT_S)
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._threads:
            log.warning("threads still running after close: %s", [t.name for t in self._threads])

    @property
    def stopped(self) -> bool:
        """True when no thread this session started (open, watch, pipeline stages) is alive."""
        with self._lock:
            running = list(self._running)
        return not any(t.is_alive() for t in self._threads) and not any(p.running for p in running)

    def take_latest(self):
        """(newest result not yet shown, its frame pre-scaled for the view or None), or None."""
        with self._lock:
            latest, self._latest, self._pending = self._latest, None, False
        if latest is not None:
            self.last_index = int(latest[0].index)
        return latest

    def shown_frame(self, result):
        """The full-resolution picture the view shows for ``result``."""
        if self.overlay and result.rendered is not None:
            return result.rendered
        return result.frame

    def _prescale(self, result):
        """The shown picture resized to the view's box (a display copy; None when it fits as is)."""
        box = self.display_box()
        if not box:
            return None
        frame = self.shown_frame(result)
        h, w = frame.shape[:2]
        size = fit_size(w, h, box[0], box[1])
        if size == (w, h):
            return None
        scaled = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR)
        return cv2.cvtColor(scaled, cv2.COLOR_RGB2BGRA)  # Qt's native layout: blitted without conversion

    # -- controls -----------------------------------------------------------------------------------
    def update_config(self, section: str, values: dict) -> bool:
        """Apply a control change; True when it needed a pipeline restart."""
        self.config.update({section: values})  # validates names first: UserError on a bad key
        needs_restart = section in RESTART_SECTIONS or any((section, k) in ESTIMATOR_KEYS for k in values)
        pipeline = self.pipeline
        if pipeline is None:
            return False
        if needs_restart:
            self.restart()
            return True
        pipeline.update_config(section, **values)
        return False

    def pause(self) -> None:
        """Hold the decoder and keep the view on the frame shown now: results still in flight
        arrive later and are held back for Step instead of moving the picture on."""
        self.paused = True
        with self._lock:
            self._holding, self._want = True, None
            if self._pending:  # not shown yet: it came after the frame on show
                self._held.append(self._latest[0])
                self._latest, self._pending = None, False
        if self.pipeline is not None:
            self.pipeline.pause()

    def resume(self) -> None:
        self.paused = False
        with self._lock:
            self._holding, self._held, self._want = False, [], None
        if self.pipeline is not None:
            self.pipeline.resume()

    def step(self, shown: int | None = None) -> None:
        """Show frame ``shown + 1`` (default: after the newest shown): from the held results when
        it is there, else by letting the decoder read it, else by seeking to it."""
        pipeline = self.pipeline
        if pipeline is None:
            return
        target = (self.last_index if shown is None else int(shown)) + 1
        source = pipeline.source
        if not isinstance(source, PlayerSource):  # live: the next frame that comes
            pipeline.step()
            return
        if source.exhausted and not any(r.index >= target for r in self._held):
            target = 0  # a step past the end starts again at the first frame
        with self._lock:
            notify = False
            self._held = [r for r in self._held if r.index >= target]
            if self._held and self._held[0].index == target:
                notify = self._offer(self._held.pop(0), None)
                offered = True
            else:
                self._want, offered = target, False
                decoder_next = source.position == target - 1 and not source.exhausted
                if not decoder_next:
                    self._held, self._end_sent = [], False
        if offered:
            if notify:  # outside the lock: the view takes the frame from this very thread
                self.frame_ready.emit()
            # the decoder moves on by one too, so the frames in flight stay the same number ahead
            # (in file mode Step after Step shows consecutive frames from the held ones)
            if not source.exhausted:
                pipeline.step()
            self._check_end(self._generation, target)
        elif decoder_next:
            pipeline.step()
        else:
            pipeline.seek(target)

    def seek(self, index: int) -> None:
        if self.pipeline is not None and self.pipeline.source.seekable:
            with self._lock:
                self._held = []
                self._want = int(index) if self._holding else None
                self._end_sent = False
            self.pipeline.seek(int(index))

    @property
    def source(self):
        """The source the running pipeline reads (as opened or handed in, not the player's wrapper)."""
        pipeline = self.pipeline
        if pipeline is None:
            return None
        return pipeline.source.inner if isinstance(pipeline.source, PlayerSource) else pipeline.source

    @property
    def skipped_images(self) -> int:
        """Unreadable images of the open image folder passed over so far."""
        source = self._player
        return len(getattr(source.inner, "skipped", ()) or ()) if source is not None else 0

    @property
    def at_end(self) -> bool:
        """True while the decoder waits at the end of a file or image folder."""
        pipeline = self.pipeline
        return bool(pipeline is not None and pipeline.at_end)

    def set_every_frame(self, on: bool) -> None:
        """Switch files between real time and every frame (a restart at the current frame)."""
        if bool(on) == self.every_frame:
            return
        self.every_frame = bool(on)
        info = self.info
        if info is not None and not info.live:
            self.restart()

    def stats(self) -> dict:
        pipeline = self.pipeline
        if pipeline is None:
            return {}
        try:
            return pipeline.stats()
        except Exception as exc:  # noqa: BLE001 - a stats hiccup must not take the window down
            log.debug("stats failed: %s", exc)
            return {}

    # -- threads -------------------------------------------------------------------------------------
    def _spawn(self, target, *args, name: str) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _open_worker(self, gen: int, spec: SourceSpec, start_at: int, source=None) -> None:
        handed_in = source is not None
        self._stop_all()
        if gen != self._generation:
            if source is not None:
                source.close()
            return
        try:
            source = source if source is not None else _open(spec)
            if source.seekable and not source.live:
                source = PlayerSource(source, on_exhausted=lambda: self._check_end(gen, None))
                self._player = source
            pipeline = self._make_pipeline(source, gen)
        except Exception as exc:  # noqa: BLE001 - shown in the window, never a crash
            if source is not None:
                source.close()
            if not isinstance(exc, UserError):
                log.exception("opening %s failed", spec.label())
            if gen == self._generation:  # not for a source the user has already left
                self.failed.emit(_message(exc, spec))
            return
        info = SessionInfo(spec=spec, frame_count=source.num_frames if source.seekable else None,
                           fps=float(source.fps), width=int(source.width), height=int(source.height),
                           live=bool(source.live), device=str(pipeline.estimator.device),
                           backend=str(pipeline.estimator.backend), reopenable=not handed_in)
        with self._lock:
            # registered before it starts, so close() always finds it
            if gen != self._generation or self._closing:
                source.close()
                return
            self._running.add(pipeline)
        try:
            if start_at and source.seekable and (source.num_frames is None or start_at < source.num_frames):
                pipeline.seek(start_at)
            if self.paused:
                pipeline.pause()
                pipeline.step()  # show the first frame, then hold
            pipeline.start()
        except Exception as exc:  # noqa: BLE001
            self._stop(pipeline)
            if gen == self._generation:
                self.failed.emit(_message(exc, spec))
            return
        self._built.emit(gen, pipeline, info)

    def _make_pipeline(self, source, gen: int):
        from core.cli import build_post_steps
        from core.estimator import PoseEstimator
        from core.pipeline import Pipeline

        key = _estimator_key(self.config)
        with self._lock:
            busy = bool(self._running)  # an old pipeline that did not stop in time still uses it
        if self._estimator is not None and self._estimator_key == key and not busy:
            estimator = self._estimator
            config = estimator.config  # the estimator reads its live settings from this object
            config.update(copy.deepcopy(self.config.to_dict()))  # no pipeline runs now: safe to write
            estimator.reset()
        else:
            self._estimator = None  # let the old models go before loading new ones
            config = copy.deepcopy(self.config)
            if self.estimator_factory is not None:
                estimator = self.estimator_factory(config)
            else:
                estimator = PoseEstimator(config, config.runtime.device)
            self._estimator, self._estimator_key = estimator, key
        kwargs = dict(on_result=lambda r: self._on_result(gen, r), profile=True, estimator=estimator,
                      post_steps=build_post_steps(config, source.fps),
                      hold_at_end=bool(source.seekable and not source.live))
        mode = None if source.live else ("file" if self.every_frame else REALTIME_MODE)
        return Pipeline(source, config, mode=mode, **kwargs)

    @QtCore.Slot(int, object, object)
    def _accept(self, gen: int, pipeline, info: SessionInfo) -> None:
        """GUI thread: adopt a freshly started pipeline unless another source was chosen since."""
        if gen != self._generation or self._closing:
            self._spawn(self._stop, pipeline, name="rmpe-app-stop")
            return
        self.pipeline, self.info = pipeline, info
        self.opened.emit(info)
        self._spawn(self._watch, gen, pipeline, name="rmpe-app-watch")
        self._catch_up(pipeline)

    def _catch_up(self, pipeline) -> None:
        """Controls changed while the models loaded: hand the differences to the new pipeline."""
        from core.pipeline.runner import LIVE_SECTIONS

        if _estimator_key(self.config) != _estimator_key(pipeline.config):
            self.restart()
            return
        for section in LIVE_SECTIONS:
            mine, theirs = getattr(self.config, section), getattr(pipeline.config, section)
            diff = {f.name: getattr(mine, f.name) for f in dataclasses.fields(mine)
                    if getattr(mine, f.name) != getattr(theirs, f.name)}
            if diff:
                pipeline.update_config(section, **diff)

    def _watch(self, gen: int, pipeline) -> None:
        """Wait for the pipeline to finish; report its end or its error line."""
        try:
            pipeline.wait()
            message = ""
        except UserError as exc:
            message = sentence(str(exc))
        except Exception as exc:  # noqa: BLE001
            message = exception_sentence(exc, "playback stopped")
        finally:
            self._release(pipeline)  # wait() returned: every stage thread has ended
        if gen == self._generation and not self._closing:
            self.ended.emit(message)

    def _stop(self, pipeline) -> None:
        """Stop ``pipeline`` and release it once its threads have ended.

        One that is still running after ``JOIN_TIMEOUT_S`` stays registered with its source open
        (its decoder may still be reading): the next ``_stop_all`` tries again, and its watcher
        releases it when it does end.
        """
        try:
            pipeline.stop()
            joined = pipeline.join(JOIN_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - stopping must always finish
            log.warning("stopping the pipeline: %s", exc)
            joined = not pipeline.running
        if joined:
            self._release(pipeline)
        else:
            log.warning("pipeline threads still running %.0f s after stop", JOIN_TIMEOUT_S)

    def _release(self, pipeline) -> None:
        """Close the source of a pipeline whose threads have all ended: once, whoever calls.

        The stopper and the watcher see the last stage thread end at the same moment. PyAV's
        ``close`` is not thread-safe (it drops the GIL before checking whether the demuxer is still
        open), so two concurrent closes free it twice: a segfault on Ctrl-C, seen under load. The
        caller that takes the pipeline out of ``_running`` closes; the other does nothing.
        """
        with self._lock:
            if pipeline not in self._running:
                return
            self._running.discard(pipeline)
        try:
            pipeline.source.close()
        except Exception as exc:  # noqa: BLE001 - closing must always finish
            log.warning("closing %s: %s", getattr(pipeline.source, "name", "the source"), exc)

    def _stop_all(self) -> None:
        with self._lock:
            running = list(self._running)
        for pipeline in running:
            self._stop(pipeline)

    def _on_result(self, gen: int, result) -> None:
        """Pipeline sinks thread: record, meter, then offer to the GUI without blocking."""
        if gen != self._generation:
            return
        recorder = self.recorder
        if recorder is not None:
            recorder.write(result)
        meter = self.meter
        if meter is not None:
            stages = {k: v for k, v in result.timings.items() if k in PLOTTED_STAGES}
            meter.add(stages, (time.perf_counter() - result.captured_at) * 1000.0)
        display = self._prescale(result)
        with self._lock:
            self.results += 1
            if self._holding and result.index != self._want:
                self._held.append(result)  # in flight when the user paused: kept for Step
                del self._held[:-HELD_MAX]
                return
            self._want = None
            notify = self._offer(result, display)
        if notify:
            self.frame_ready.emit()
        self._check_end(gen, result.index)

    def _offer(self, result, display) -> bool:
        """Put ``result`` in the one-slot mailbox (lock held); True when the GUI must be told
        (the slot was empty); the caller emits ``frame_ready`` once the lock is released."""
        if self._pending:
            self.skipped += 1
        notify = not self._pending
        self._latest, self._pending = (result, display), True
        self._offered = int(result.index)
        return notify

    def poll_end(self, quiet_s: float = 0.5) -> None:
        """GUI timer: report the end when the decoder has waited at it for ``quiet_s`` with no
        result since (a fallback for an end the frame count could not tell, e.g. the last frames
        passed over in real-time playback)."""
        pipeline, source = self.pipeline, self._player
        if pipeline is None or source is None or self._end_sent or self._holding \
                or not (pipeline.at_end and source.exhausted):
            self._end_seen = None
            return
        now = time.monotonic()
        if self._end_seen is None or self._end_seen[0] != self.results:
            self._end_seen = (self.results, now)
            return
        if now - self._end_seen[1] >= quiet_s:
            with self._lock:
                if self._end_sent:
                    return
                self._end_sent = True
            self.reached_end.emit()

    def _check_end(self, gen: int, index: int | None) -> None:
        """Decoder or sinks thread: report the end once the decoder found it and the last frame it
        read has been offered to the view (whichever of the two happens second reports)."""
        source = self._player
        if gen != self._generation or source is None:
            return
        with self._lock:
            if self._end_sent or not source.exhausted or self._offered is None:
                return
            if self._offered != source.last_index:
                return
            self._end_sent = True
        self.reached_end.emit()


def _open(spec: SourceSpec):
    from core.io import open_source

    if spec.kind == "file":
        return open_source(video=str(spec.value))
    if spec.kind == "camera":
        return open_source(camera=int(spec.value))
    if spec.kind == "images":
        from core.io import ImageSource

        return ImageSource(str(spec.value), skip_unreadable=True)  # one bad image must not end the show
    return open_source(url=str(spec.value))


def _message(exc: BaseException, spec: SourceSpec) -> str:
    return exception_sentence(exc, f"could not open {spec.label()}")

