"""``python main.py refine (--video SRC | --images DIR) --dt IN.json --out OUT.json --weights CKPT``.

Refines every person of a keypoint results JSON (ours: ``image_id`` = frame index, as ``run
--json`` writes) with a PoseFix checkpoint, on the frames of the source they came from. The input
is checked before anything is written (checkpoint kind, keypoint count, frame ids within the
source); the output is written to a temporary name and renamed, so it is whole or absent.
"""
from __future__ import annotations

import json
import logging

from core.errors import UserError

log = logging.getLogger("rmpe.refine")


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", metavar="PATH", help="video file ('demo' for the fetched demo video)")
    src.add_argument("--images", metavar="DIR|GLOB", help="image folder (sorted by name) or glob")
    parser.add_argument("--dt", required=True, metavar="IN.json", help="keypoint results (image_id = frame index)")
    parser.add_argument("--out", required=True, metavar="OUT.json", help="refined results")
    parser.add_argument("--weights", metavar="CKPT", help="train posefix checkpoint (default: refine.weights)")
    parser.add_argument("--config", metavar="YAML", help="app config (its refine section)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--no-flip-test", action="store_true", help="one pass per person instead of two")


def run(args) -> int:
    from core.config import Config
    from core.evaluation.coco_eval import read_json
    from core.fileio import atomic_write_text
    from core.io.sources import open_source
    from core.io.writers import check_output_path
    from core.refine import PoseFixRefiner, refine_results, results_by_frame

    config = Config.load(args.config)
    weights = args.weights or config.refine.weights
    if not weights:
        raise UserError("give --weights CKPT (a train posefix checkpoint) or refine.weights in --config")
    out = check_output_path(args.out, "refined JSON")
    results = read_json(args.dt, "results")
    if not isinstance(results, list):
        raise UserError(f"{args.dt}: expected a list of keypoint results")
    refiner = PoseFixRefiner(weights, args.device, flip_test=config.refine.flip_test and not args.no_flip_test)
    results_by_frame(results, refiner.spec.num_keypoints, args.dt)  # shape errors before decoding
    source = open_source(video=args.video, images=args.images)
    try:
        last = max((int(r["image_id"]) for r in results), default=-1)

        def frames():
            while True:
                frame = source.read()
                if frame is None or frame.index > last:
                    return
                yield frame.index, frame.image

        refined = refine_results(frames(), source.num_frames if args.images else None, results, refiner, args.dt)
    finally:
        source.close()
    atomic_write_text(out, json.dumps(refined) + "\n")
    log.info("refined %d people on %d frames → %s", len(refined), len({r['image_id'] for r in refined}), out)
    return 0
