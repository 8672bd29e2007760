"""``python main.py train sppe|rmpe|pgpg|posefix|synthetic|pseudo-label|posefix-data ...``.

    train sppe  --config assets/train_sppe.yaml [--out DIR] [--resume CKPT] [--init CKPT] [--set k=v ...]
    train rmpe  --config assets/train_rmpe.yaml [--out DIR] [--resume CKPT] [--set k=v ...]
    train pgpg  --config assets/train_pgpg.yaml [--out DIR] [--set k=v ...]
    train posefix --config assets/train_posefix.yaml [--out DIR] [--resume CKPT] [--init CKPT] [--set k=v ...]
    train synthetic    --out DIR [--num-images N] [--seed S] [--size H W] [--video FRAMES]
    train pseudo-label (--video PATH | --images DIR) --out DIR [--every N] [--min-score S] [--config APP.yaml]
    train posefix-data (--video PATH | --images DIR) --out DIR [--reference K=V ...] [--input K=V ...]

Scale out with torchrun (NCCL on CUDA, gloo on CPU); the config's batch size and LR are global:
    torchrun --nproc_per_node 4 main.py train sppe --config assets/train_sppe.yaml
"""
from __future__ import annotations

import json
import logging

from core.errors import UserError

log = logging.getLogger("rmpe.train")

LOOPS = ("sppe", "rmpe", "pgpg", "posefix")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, text in (("sppe", "train a Stacked Hourglass / ResNet SPPE"),
                       ("rmpe", "train SSTN + SPPE with the parallel SPPE branch (staged)"),
                       ("pgpg", "fit the pose-guided proposals generator"),
                       ("posefix", "train the PoseFix pose refiner on synthesised errors")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", required=True, metavar="YAML", help="training config (see assets/train_*.yaml)")
        p.add_argument("--out", metavar="DIR", help="output folder (overrides run.out)")
        p.add_argument("--device", metavar="DEV", help="auto | cpu | cuda (overrides run.device)")
        p.add_argument("--epochs", type=int, metavar="N", help="overrides optim.epochs")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override any config value (YAML syntax), repeatable")
        p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
        if name != "pgpg":
            p.add_argument("--resume", metavar="CKPT", help="continue a run from its last.pt")
        if name in ("sppe", "posefix"):
            p.add_argument("--init", metavar="CKPT", help="start from these weights (fresh optimiser and schedule)")
    s = sub.add_parser("synthetic", help="write a synthetic COCO-format dataset of drawn people")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--num-images", type=int, default=200)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    s.add_argument("--people", type=int, nargs=2, default=(1, 3), metavar=("MIN", "MAX"))
    s.add_argument("--video", type=int, default=0, metavar="FRAMES",
                   help="also write a synthetic video of this many frames (+ its annotations)")
    q = sub.add_parser("pseudo-label", help="run the pipeline's estimator over a video or image folder and "
                                            "write COCO-format keypoint annotations")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", metavar="PATH", help="video file ('demo' for the fetched demo)")
    src.add_argument("--images", metavar="DIR", help="image folder or glob")
    src.add_argument("--collection", nargs="+", metavar="INPUT",
                     help="many videos (files, folders, globs, list files) through the batch runner: "
                          "OUT/<name>/ per video + OUT/manifest.jsonl, resumable (see main.py batch)")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--config", metavar="YAML", help="app config (assets/default.yaml sections) for the estimator")
    q.add_argument("--every", type=int, default=1, metavar="N", help="label every N-th frame")
    q.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N labelled frames (0: all)")
    q.add_argument("--min-score", type=float, default=0.5, help="keep people scoring at least this")
    q.add_argument("--keypoint-threshold", type=float, default=0.5,
                   help="keypoints scoring below this are written as unlabelled (v = 0)")
    q.add_argument("--device", default="auto")
    from core.batch.cli import add_runner_arguments

    add_runner_arguments(q)
    f = sub.add_parser("posefix-data", help="PoseFix data from unlabelled footage: a reference SPPE's poses as "
                                            "pseudo ground truth, a fast one's as inputs, split in time")
    src = f.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", metavar="PATH", help="video file ('demo' for the fetched demo)")
    src.add_argument("--images", metavar="DIR", help="image folder or glob")
    f.add_argument("--out", required=True, metavar="DIR", help="writes DIR/train and DIR/test")
    f.add_argument("--reference", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="app-config overrides of the reference estimator, e.g. sppe.model=blazepose")
    f.add_argument("--input", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="app-config overrides of the input (fast) estimator")
    f.add_argument("--every", type=int, default=1, metavar="N", help="label every N-th frame")
    f.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N labelled frames (0: all)")
    f.add_argument("--train-fraction", type=float, default=0.7, help="first fraction of the frames for training")
    f.add_argument("--min-score", type=float, default=0.5)
    f.add_argument("--keypoint-threshold", type=float, default=0.5)
    f.add_argument("--device", default="auto")


def _load(args):
    from training.config import load_config, parse_overrides

    overrides = parse_overrides(args.set)
    cfg = load_config(args.config)
    extra: dict = {}
    if args.out:
        extra.setdefault("run", {})["out"] = args.out
    if args.device:
        extra.setdefault("run", {})["device"] = args.device
    if args.no_progress:
        extra.setdefault("run", {})["progress"] = False
    if args.epochs is not None:
        extra.setdefault("optim", {})["epochs"] = args.epochs
    cfg.update(extra)
    cfg.update(overrides)
    return cfg


def run(args) -> int:
    if args.task == "synthetic":
        return _synthetic(args)
    if args.task == "pseudo-label" and args.collection:
        from core.batch.cli import run_jobs
        from training.datasets.pseudo_label import PseudoLabelJob

        args.inputs = args.collection
        return run_jobs(args, PseudoLabelJob(args.config, args.every, args.max_frames, args.min_score,
                                             args.keypoint_threshold, device=args.device))
    if args.task == "pseudo-label":
        from training.datasets.pseudo_label import pseudo_label

        _check_pseudo_label_paths(args)

        summary = pseudo_label(video=args.video, images=args.images, out_dir=args.out, app_config=args.config,
                               every=args.every, max_frames=args.max_frames, min_score=args.min_score,
                               keypoint_threshold=args.keypoint_threshold, device=args.device)
        print(json.dumps(summary))
        return 0
    if args.task == "posefix-data":
        from training.config import parse_overrides
        from training.datasets.posefix_footage import build_footage_dataset

        summary = build_footage_dataset(args.out, video=args.video, images=args.images,
                                        reference=parse_overrides(args.reference), inputs=parse_overrides(args.input),
                                        every=args.every, max_frames=args.max_frames,
                                        train_fraction=args.train_fraction, min_score=args.min_score,
                                        keypoint_threshold=args.keypoint_threshold, device=args.device)
        print(json.dumps(summary))
        return 0
    if getattr(args, "epochs", None) is not None and args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: give at least 1 (0 epochs would train nothing and save an "
                        "untrained model)")
    cfg = _load(args)
    if args.task in ("sppe", "posefix") and cfg.optim.epochs < 1:
        raise UserError(f"optim.epochs {cfg.optim.epochs}: give at least 1 (0 epochs would train nothing and save "
                        "an untrained model)")
    from training.common import check_data_sources

    check_data_sources(cfg, ("train",) if args.task == "pgpg" else ("train", "val"))  # missing data is reported now, before any synthesis or model building
    if args.task == "sppe":
        from training.sppe_loop import run_sppe

        result = run_sppe(cfg, resume=args.resume, init=args.init)
    elif args.task == "rmpe":
        from training.rmpe_loop import run_rmpe

        result = run_rmpe(cfg, resume=args.resume)
    elif args.task == "pgpg":
        from training.pgpg import run_pgpg

        result = run_pgpg(cfg)
    elif args.task == "posefix":
        from training.posefix_loop import run_posefix

        result = run_posefix(cfg, resume=args.resume, init=args.init)
    else:  # argparse restricts the choices
        raise UserError(f"unknown training task {args.task!r}")
    if "best_ap" in result:
        log.info("done: best AP %.4f; checkpoints %s, %s", result["best_ap"], result["last"], result["best"])
    return 0


def _check_pseudo_label_paths(args) -> None:
    """The labelled images and annotations must not land on the input (symlinks resolved)."""
    import glob
    import os
    from pathlib import Path

    from core.fileio import check_distinct_paths

    out = Path(args.out)
    inputs = [("--video", args.video), ("--config", args.config)]
    if args.images:
        if os.path.isdir(args.images):
            inputs.append(("--images", args.images))
            inputs += [("--images", p) for p in glob.glob(os.path.join(glob.escape(args.images), "*"))]
        else:
            inputs += [("--images", p) for p in (glob.glob(args.images) or [args.images])]
    check_distinct_paths([("--out (images folder)", out / "images"), ("--out (annotations)", out / "annotations.json")],
                         inputs)
    images_dir = (out / "images").resolve()
    for flag, path in inputs:
        if path and Path(path).resolve().parent == images_dir:
            raise UserError(f"{flag} {path} lies in {out / 'images'}, where the labelled frames are written; "
                            "choose another --out")


def _synthetic(args) -> int:
    from pathlib import Path

    from training.datasets.synthetic import SyntheticSpec, generate_dataset, generate_video

    from training.config import check_synthetic_args

    check_synthetic_args(args.num_images, args.size, args.people, args.video)
    spec = SyntheticSpec(num_images=args.num_images, seed=args.seed, image_size=tuple(args.size),
                         people=tuple(args.people))
    ann = generate_dataset(args.out, spec, progress=True)
    print(f"wrote {spec.num_images} images and {ann}")
    if args.video:
        video = generate_video(Path(args.out) / "video.mp4", spec, num_frames=args.video)
        print(f"wrote {video} and {video.with_suffix('.json')}")
    return 0
