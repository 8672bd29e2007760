"""`python main.py run` (also `python main.py --video IN --out OUT.mp4 --json OUT.json`): headless run.

Order of work: outputs are checked (folders created, writability proven), then the input is opened
(exists, decodable, has frames / camera answers / URL connects), then the models load, then the
pipeline runs. Any problem before the run is one line and a non-zero exit with nothing computed.
Ctrl-C, SIGTERM (docker stop, systemd, `timeout`) and SIGHUP (a closed terminal) stop the run;
every output is finalised up to the last finished frame (exit 128 + the signal: 130, 143, 129).

Outputs are never inputs, never each other: every path is resolved (symlinks too) and an output
that is an input (video, image, config, checkpoint) or shares its path with another output is one
line before anything is opened. Outputs are written under temporary names and renamed when
finished (core.io.writers.FileSink); "wrote" names only the finished ones.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import os
import signal
import sys
from pathlib import Path

from core.config import Config, choices
from core.errors import UserError
from core.models.catalog import describe_choices
from core.fileio import check_distinct_paths
from core.io import CocoJsonWriter, CsvWriter, OpenPoseJsonWriter, VideoWriter, open_source
from core.pipeline.profile import format_table, write_json
from core.pipeline.runner import Pipeline

log = logging.getLogger("rmpe.run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("input (exactly one)")
    src.add_argument("--video", metavar="PATH", help="video file or stream URL; 'demo' = the fetched demo video")
    src.add_argument("--images", metavar="DIR|GLOB", help="folder of images (sorted by name) or a glob pattern")
    src.add_argument("--camera", metavar="N", type=int, help="camera index (OpenCV)")
    src.add_argument("--url", metavar="URL", help="RTSP / HTTP / RTMP stream")
    src.add_argument("--fps", type=float, help="frame rate of an image sequence (default 30)")
    src.add_argument("--strict-images", action="store_true",
                     help="an unreadable or truncated image in --images stops the run (default: skipped/used "
                          "with a warning naming it)")

    out = parser.add_argument_group("outputs")
    out.add_argument("--out", metavar="OUT.mp4", help="rendered H.264 video (.mp4, .m4v, .mov or .mkv)")
    out.add_argument("--json", metavar="OUT.json", help="COCO keypoint results (one entry per person per frame)")
    out.add_argument("--openpose-json", metavar="DIR", help="OpenPose-style JSON, one file per frame")
    out.add_argument("--csv", metavar="PATH", help="CSV: frame, person, track, keypoint, x, y, score")

    add_model_arguments(parser)

    run = parser.add_argument_group("run")
    run.add_argument("--mode", choices=choices("pipeline", "mode"),
                     help="file: every frame in order; realtime (= live): at the source's own pace, frames "
                          "dropped when inference falls behind (default: realtime for cameras and streams, "
                          "file otherwise)")
    run.add_argument("--realtime", action="store_true",
                     help="play a file at its own frame rate, dropping frames inference cannot keep up with "
                          "(= --mode realtime)")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    run.add_argument("--profile", action="store_true", help="print per-stage timings at the end")
    run.add_argument("--profile-json", metavar="PATH", help="write the profile as JSON")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and compute flags that ``config_from_args`` reads (shared with ``batch``)."""
    model = parser.add_argument_group("model and compute")
    model.add_argument("--config", metavar="YAML", help="config file (sections as in assets/default.yaml)")
    model.add_argument("--detector", choices=choices("detector", "name"),
                       help=f"person detector ({describe_choices('detector')})")
    model.add_argument("--sppe", choices=choices("sppe", "model"),
                       help=f"pose model ({describe_choices('sppe')})")
    model.add_argument("--weights", metavar="PATH", help="checkpoint of a trained SPPE")
    model.add_argument("--decode", choices=choices("sppe", "decode"), help="keypoint decoding")
    model.add_argument("--device", choices=choices("runtime", "device"), help="compute device (default auto)")
    model.add_argument("--backend", choices=choices("runtime", "backend"),
                       help="model backend (auto: ONNX Runtime on CPU, jit on CUDA)")
    model.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (0 = torch default)")
    model.add_argument("--interval", type=int, metavar="N", help="run the person detector every N frames")
    model.add_argument("--max-persons", type=int, metavar="N", help="at most N people per frame")
    model.add_argument("--no-track", action="store_true", help="no tracking (no track ids)")
    model.add_argument("--no-smooth", action="store_true", help="no temporal smoothing")
    model.add_argument("--refine", choices=choices("refine", "method"),
                       help="pose refinement after pose NMS, before tracking (posefix needs --refine-weights)")
    model.add_argument("--refine-weights", metavar="CKPT", help="a train posefix checkpoint")


def config_from_args(args: argparse.Namespace) -> Config:
    """The config file (if any) with the command-line flags applied on top."""
    o: dict[str, dict] = {}

    def put(section: str, key: str, value) -> None:
        if value is not None:
            o.setdefault(section, {})[key] = value

    put("detector", "name", args.detector)
    put("detector", "interval", args.interval)
    put("detector", "max_persons", args.max_persons)
    if args.weights and args.sppe in (None, "blazepose"):  # the checkpoint's own config decides its architecture
        from core.models.trained_sppe import checkpoint_arch

        arch = checkpoint_arch(args.weights)
        if args.sppe == "blazepose":
            raise UserError(f"--sppe blazepose takes no checkpoint, and --weights {args.weights} holds a {arch} "
                            f"SPPE: drop --sppe (the checkpoint decides) or drop --weights")
        args.sppe = arch
    put("sppe", "model", args.sppe)
    put("sppe", "weights", args.weights)
    put("sppe", "decode", args.decode)
    put("runtime", "device", args.device)
    put("runtime", "backend", args.backend)
    put("runtime", "threads", args.threads)
    if args.realtime:
        if args.mode not in (None, "realtime", "live"):
            raise UserError(f"--realtime contradicts --mode {args.mode}")
        args.mode = "realtime"
    put("pipeline", "mode", args.mode)
    put("refine", "method", args.refine)
    put("refine", "weights", args.refine_weights)
    if args.refine_weights and args.refine is None:
        put("refine", "method", "posefix")
    if args.no_track:
        put("tracking", "enabled", False)
    if args.no_smooth:
        put("smoothing", "enabled", False)
    if args.fps is not None and not args.fps > 0:
        raise UserError(f"--fps must be > 0, not {args.fps:g}")
    for name in ("interval", "max_persons", "max_frames", "threads"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "threads" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'threads' else '>= 1'}")
    return Config.load(args.config, o)


def make_sinks(args: argparse.Namespace) -> list:
    """Writers for the requested outputs; constructing them proves each destination writable."""
    sinks = []
    if args.out:
        sinks.append(VideoWriter(args.out))
    if args.json:
        sinks.append(CocoJsonWriter(args.json))
    if args.openpose_json:
        sinks.append(OpenPoseJsonWriter(args.openpose_json))
    if args.csv:
        sinks.append(CsvWriter(args.csv))
    if args.profile_json:
        from core.io.writers import check_output_path

        check_output_path(args.profile_json, "profile JSON")
    return sinks


OUTPUT_FLAGS = (("--out", "out"), ("--json", "json"), ("--openpose-json", "openpose_json"), ("--csv", "csv"),
                ("--profile-json", "profile_json"))


def _input_paths(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Every file the run reads, by flag (the images of a folder or glob each)."""
    from core.io.sources import IMAGE_EXTENSIONS, is_url

    inputs = [("--config", args.config), ("--weights", args.weights)]
    if args.video and not is_url(args.video):
        if args.video == "demo":
            from core.assets import artefact

            inputs.append(("--video", str(artefact("demo_video").path)))
        else:
            inputs.append(("--video", args.video))
    if args.images:
        spec = str(args.images)
        if os.path.isdir(spec):
            files = [os.path.join(spec, f) for f in os.listdir(spec)]
        elif any(c in spec for c in "*?["):
            files = glob.glob(spec)
        else:
            files = [spec]
        inputs += [("--images", f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS) or f == spec]
    return inputs


def check_paths(args: argparse.Namespace) -> None:
    """Outputs that are inputs or share one path: one UserError before anything is opened."""
    check_distinct_paths([(flag, getattr(args, name)) for flag, name in OUTPUT_FLAGS], _input_paths(args))


class Terminated(KeyboardInterrupt):
    """SIGTERM / SIGHUP, handled like Ctrl-C (the main thread unwinds; the pipeline finalises)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals():
    """While running, SIGTERM and SIGHUP raise ``Terminated`` in the main thread and SIGINT raises
    KeyboardInterrupt, so every way of stopping a run finalises its outputs. SIGINT is set
    explicitly: a process started with it ignored (a parent's SIG_IGN is inherited, and Python then
    installs no handler) would otherwise never stop on ``kill -INT``."""
    def handler(signum, _frame):
        raise Terminated(signum)

    previous = {}
    for name, on_signal in (("SIGINT", signal.default_int_handler), ("SIGTERM", handler), ("SIGHUP", handler)):
        sig = getattr(signal, name, None)
        if sig is None:  # no SIGHUP on Windows
            continue
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread (an embedding app): leave its handlers alone
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _exit_code(exc: KeyboardInterrupt) -> int:
    return 128 + exc.signum if isinstance(exc, Terminated) else 130


def _by(exc: KeyboardInterrupt) -> str:
    return f" by {exc}" if isinstance(exc, Terminated) else ""


def run(args: argparse.Namespace) -> int:
    check_paths(args)
    config = config_from_args(args)
    sinks = make_sinks(args)
    with stop_signals():
        try:
            source = open_source(video=args.video, camera=args.camera, images=args.images, url=args.url, fps=args.fps,
                                 strict_images=args.strict_images)
        except KeyboardInterrupt as exc:
            print(f"interrupted{_by(exc)} before the run started: nothing written", file=sys.stderr)
            return _exit_code(exc)
        try:
            if args.out and getattr(source, "mixed_sizes", False):
                sizes = sorted(set(source.sizes))
                raise UserError(f"--out {args.out}: the images have {len(sizes)} different sizes "
                                f"({', '.join(f'{w}x{h}' for w, h in sizes[:3])}{', ...' if len(sizes) > 3 else ''}); "
                                "a video holds one size: drop --out (--json/--csv keep each image's own pixels) "
                                "or give images of one size")
            if not sinks and not args.profile:
                log.warning("no outputs requested (--out, --json, --openpose-json, --csv); running for timing only")
            return _run_with_source(args, config, source, sinks)
        except KeyboardInterrupt as exc:  # before the pipeline started: no output file exists yet
            print(f"interrupted{_by(exc)} before the run started: nothing written", file=sys.stderr)
            return _exit_code(exc)
        finally:
            source.close()


def _run_with_source(args, config: Config, source, sinks) -> int:
    from core.estimator import PoseEstimator  # heavy (torch, models): only once the inputs are known good

    log.info("input %s: %dx%d @ %.3g fps%s", source.name, source.width, source.height, source.fps,
             f", {source.num_frames} frames" if source.num_frames else "")
    from core.cli import build_post_steps  # the composition root: NMS, tracking, smoothing

    estimator = PoseEstimator(config, config.runtime.device)  # logs device, backend and torch threads
    pipeline = Pipeline(source, config, sinks=sinks, profile=args.profile or bool(args.profile_json),
                        estimator=estimator, render=bool(args.out), max_frames=args.max_frames, mode=args.mode,
                        post_steps=build_post_steps(config, source.fps))
    progress = _progress(args, pipeline)
    pipeline.on_result = (lambda _result: progress.update(1)) if progress is not None else None
    interrupted = None
    try:
        try:
            pipeline.start()
            pipeline.wait()
        except KeyboardInterrupt as exc:
            interrupted = exc
            pipeline.stop()
            try:
                pipeline.join()  # the sinks thread finalises the files
            except KeyboardInterrupt:  # a second signal: stop now, outputs stay under their .part names
                print("interrupted again: outputs not finished (left as .rmpe-tmp-*.part files)", file=sys.stderr)
                return _exit_code(interrupted)
            if pipeline.failure is not None and pipeline.failure[0] == "sinks":
                pipeline.wait()  # an output that could not be finished: its error, not "finalised"
    finally:
        if progress is not None:
            progress.close()
        _report(args, pipeline)
    if interrupted is not None:
        print(f"interrupted{_by(interrupted)}: outputs finalised after {pipeline.frames_done} frames", file=sys.stderr)
        return _exit_code(interrupted)
    return 0


def _progress(args, pipeline: Pipeline):
    if args.no_progress:
        return None
    from tqdm import tqdm

    total = pipeline.source.num_frames if pipeline.mode == "file" else None
    if total is not None and args.max_frames:
        total = min(total, args.max_frames)
    return tqdm(total=total, unit="frame", desc=Path(str(pipeline.source.name)).name[:30], mininterval=0.5,
                file=sys.stderr, dynamic_ncols=True, leave=True)


def _report(args, pipeline: Pipeline) -> None:
    stats = pipeline.stats()
    done = [s for s in pipeline.sinks if s.finished]
    outputs = ", ".join(str(s.path) for s in done)
    log.info("%d frames in %.1f s (%.1f fps)%s", stats["frames"], stats["elapsed_s"], stats["fps"],
             f"; wrote {outputs}" if outputs else "")
    unfinished = [str(s.path) for s in pipeline.sinks if not s.finished]
    if unfinished:
        log.warning("not written (unfinished): %s", ", ".join(unfinished))
    if args.profile:
        print(format_table(stats), flush=True)
    if args.profile_json:
        write_json(stats, args.profile_json)
