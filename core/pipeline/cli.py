"""`python main.py run` (also `python main.py --video IN --out OUT.mp4 --json OUT.json`): headless run.

Order of work: outputs are checked (folders created, writability proven), then the input is opened
(exists, decodable, has frames / camera answers / URL connects), then the models load, then the
pipeline runs. Any problem before the run is one line and a non-zero exit with nothing computed.
Ctrl-C stops the run; every output is finalised up to the last finished frame (exit 130).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.config import Config, choices
from core.errors import UserError
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

    out = parser.add_argument_group("outputs")
    out.add_argument("--out", metavar="OUT.mp4", help="rendered H.264 video")
    out.add_argument("--json", metavar="OUT.json", help="COCO keypoint results (one entry per person per frame)")
    out.add_argument("--openpose-json", metavar="DIR", help="OpenPose-style JSON, one file per frame")
    out.add_argument("--csv", metavar="PATH", help="CSV: frame, person, track, keypoint, x, y, score")

    add_model_arguments(parser)

    run = parser.add_argument_group("run")
    run.add_argument("--mode", choices=choices("pipeline", "mode"),
                     help="file: every frame in order; live: newest frame, drop stale (default: by input)")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    run.add_argument("--profile", action="store_true", help="print per-stage timings at the end")
    run.add_argument("--profile-json", metavar="PATH", help="write the profile as JSON")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and compute flags that ``config_from_args`` reads (shared with ``batch``)."""
    model = parser.add_argument_group("model and compute")
    model.add_argument("--config", metavar="YAML", help="config file (sections as in assets/default.yaml)")
    model.add_argument("--detector", choices=choices("detector", "name"), help="person detector")
    model.add_argument("--sppe", choices=choices("sppe", "model"), help="pose model")
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
    put("sppe", "model", args.sppe)
    put("sppe", "weights", args.weights)
    put("sppe", "decode", args.decode)
    put("runtime", "device", args.device)
    put("runtime", "backend", args.backend)
    put("runtime", "threads", args.threads)
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


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    sinks = make_sinks(args)
    source = open_source(video=args.video, camera=args.camera, images=args.images, url=args.url, fps=args.fps)
    if not sinks and not args.profile:
        log.warning("no outputs requested (--out, --json, --openpose-json, --csv); running for timing only")
    try:
        return _run_with_source(args, config, source, sinks)
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
    interrupted = False
    try:
        pipeline.start()
        pipeline.wait()
    except KeyboardInterrupt:
        interrupted = True
        pipeline.stop()
        pipeline.join()  # the sinks thread finalises the files (a second Ctrl-C aborts)
    finally:
        if progress is not None:
            progress.close()
        _report(args, pipeline)
    if interrupted:
        print(f"interrupted: outputs finalised after {pipeline.frames_done} frames", file=sys.stderr)
        return 130
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
    outputs = ", ".join(str(p) for p in (args.out, args.json, args.openpose_json, args.csv) if p)
    log.info("%d frames in %.1f s (%.1f fps)%s", stats["frames"], stats["elapsed_s"], stats["fps"],
             f"; wrote {outputs}" if outputs else "")
    if args.profile:
        print(format_table(stats), flush=True)
    if args.profile_json:
        write_json(stats, args.profile_json)
