"""Per-video jobs and the wrapper that turns one job run into one manifest record.

A job is any picklable object with

    kind: str                                   e.g. "pose"; written to the manifest
    load(threads: int) -> state                 once per worker process (models load here)
    run(state, video: str, dest: Path, name: str, progress) -> dict
                                                process one video, writing only inside ``dest``;
                                                returns {"frames": int, "video_fps": float | None,
                                                "outputs": {kind: path relative to dest}};
                                                ``progress(frames_done)`` may be called (cheap);
                                                any exception fails this video alone

``PoseJob`` is the ``run`` command's work (Pipeline + the sinks of ``core.io``). Other commands
plug their own job into the same runner (``training.datasets.pseudo_label.PseudoLabelJob``; a
``refine`` job the same way), getting workers, Ray, manifest, resume and isolation for free.

``process_one`` is what a worker (local process or Ray task) runs per video: the job writes into
``OUT/.partial/<name>/``; after it returns, every file is hashed and the folder is renamed to
``OUT/<name>/`` in one ``os.replace``. So ``OUT/<name>/`` is always either absent, a complete
previous result, or a complete new one, never half-written, whatever kills the process.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from core.batch.inputs import Task
from core.batch.manifest import fingerprint

PARTIAL_DIR = ".partial"


@dataclasses.dataclass
class PoseJob:
    """The ``run`` command on one video: outputs ``<name>.mp4``, ``<name>.json`` (COCO results),
    ``<name>.csv`` and ``openpose/<name>_<frame>_keypoints.json`` as selected."""

    config: object  # core.config.Config (file mode is forced)
    mp4: bool = False
    json: bool = True
    csv: bool = False
    openpose: bool = False
    max_frames: int | None = None
    # (config, fps) -> the post stage's steps, as the ``run`` command builds them (a top-level
    # function, so the job pickles by reference); None = the Pipeline's default
    post_steps: object = None
    kind: str = "pose"

    def load(self, threads: int):
        from core.estimator import PoseEstimator

        config = self._config(threads)
        return PoseEstimator(config, config.runtime.device)

    def _config(self, threads: int):
        import copy

        config = copy.deepcopy(self.config)
        config.update({"runtime": {"threads": int(threads)}, "pipeline": {"mode": "file"}})
        return config

    def run(self, state, video: str, dest: Path, name: str, progress=None) -> dict:
        from core.io import CocoJsonWriter, CsvWriter, OpenPoseJsonWriter, VideoWriter, open_source
        from core.pipeline.runner import Pipeline

        outputs, sinks = {}, []
        if self.mp4:
            outputs["mp4"] = f"{name}.mp4"
            sinks.append(VideoWriter(dest / outputs["mp4"]))
        if self.json:
            outputs["json"] = f"{name}.json"
            sinks.append(CocoJsonWriter(dest / outputs["json"]))
        if self.csv:
            outputs["csv"] = f"{name}.csv"
            sinks.append(CsvWriter(dest / outputs["csv"]))
        if self.openpose:
            outputs["openpose"] = "openpose"
            sinks.append(OpenPoseJsonWriter(dest / "openpose", stem=name))
        source = open_source(video=video)
        try:
            steps = {} if self.post_steps is None else {"post_steps": self.post_steps(state.config, source.fps)}
            pipeline = Pipeline(source, state.config, sinks=sinks, estimator=state, render=self.mp4,
                                max_frames=self.max_frames, mode="file", **steps)
            if progress is not None:
                pipeline.on_result = lambda _r: progress(pipeline.frames_done + 1)
            pipeline.start()
            try:
                pipeline.wait()
            finally:
                pipeline.stop()
                pipeline.join()
            return {"frames": pipeline.frames_done, "video_fps": float(source.fps), "outputs": outputs}
        finally:
            source.close()


def process_one(job, state, task: Task, out_dir: Path, progress=None) -> dict:
    """Run ``job`` on one video with atomic publication; always returns a manifest record."""
    t0 = time.perf_counter()
    record = {"input": task.video, "name": task.name, "job": job.kind, "status": "failed", "outputs": {},
              "files": {}, "frames": 0, "fps": None, "video_fps": None, "seconds": None, "error": None,
              "worker": f"{socket.gethostname()}:{os.getpid()}"}
    tmp = out_dir / PARTIAL_DIR / task.name
    final = out_dir / task.name
    try:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a killed attempt
        tmp.mkdir(parents=True)
        info = job.run(state, task.video, tmp, task.name, progress)
        if final.exists():
            shutil.rmtree(final)  # an older, unverified result: replaced as a whole
        files = fingerprint(tmp, tmp.parent)  # keys "<name>/<file>": relative to OUT once renamed
        os.replace(tmp, final)
        seconds = time.perf_counter() - t0
        record.update(status="ok", frames=int(info["frames"]), video_fps=info.get("video_fps"),
                      outputs={k: f"{task.name}/{v}" for k, v in info["outputs"].items()}, files=files,
                      fps=round(info["frames"] / seconds, 3) if seconds > 0 else None)
    except Exception as exc:  # noqa: BLE001 - one video fails alone, with its reason
        record["error"] = _one_line(exc)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # no outputs without an ok record
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def _one_line(exc: BaseException) -> str:
    from core.errors import UserError

    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}"
