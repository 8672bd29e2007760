"""`python main.py eval --gt GT.json --dt DT.json [--diagnose [--baseline DT0.json]] [--out DIR]`.

Prints pycocotools' keypoint AP/AR as a table and writes DIR/eval.json; with --diagnose also the
Ronchi–Perona diagnosis (DIR/diagnosis.json), a Markdown report (DIR/report.md) and PNG plots
(DIR/plots/); with --baseline also the baseline's diagnosis beside it (e.g. unrefined vs refined
poses: label counts, AP, what each correction still gains; DIR/comparison.json). eval.json is written before the diagnosis starts, so it survives a later failure.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from core.errors import UserError

log = logging.getLogger("rmpe.eval")


def add_arguments(parser) -> None:
    parser.add_argument("--gt", required=True, help="COCO keypoints ground truth JSON")
    parser.add_argument("--dt", required=True,
                        help="keypoint results JSON (our results file: frame index as image_id)")
    parser.add_argument("--diagnose", action="store_true",
                        help="error diagnosis: keypoint error types, FP/FN, score errors, AP gains, plots")
    parser.add_argument("--out", default="out/eval", help="output folder (default: out/eval)")
    parser.add_argument("--baseline", metavar="DT0.json",
                        help="with --diagnose: diagnose these results too and print both side by side")
    parser.add_argument("--match-oks", type=float, default=0.1,
                        help="OKS at which the diagnosis matches detections to GT (default 0.1)")


def _write_json(path: Path, data) -> None:
    from core.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def run(args) -> int:
    from core.evaluation.coco_eval import evaluate, format_metrics_table, load_ground_truth, load_results
    from core.evaluation.report import write_report

    if not 0.0 < args.match_oks < 1.0:
        raise UserError(f"--match-oks must lie in (0, 1), got {args.match_oks}")
    from core.fileio import check_distinct_paths

    out = Path(args.out)  # what this command writes must not be what it reads
    check_distinct_paths([("--out", out / name) for name in ("eval.json", "report.md", "diagnosis.json", "plots")],
                         [("--gt", args.gt), ("--dt", args.dt)])
    gt = load_ground_truth(args.gt)
    results = load_results(args.dt, gt)
    baseline = load_results(args.baseline, gt) if args.baseline else None
    if baseline is not None and not args.diagnose:
        raise UserError("--baseline needs --diagnose")
    if not results:
        log.warning("%s holds no detections: AP is 0", args.dt)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc}")
    result = evaluate(gt, results)
    print(format_metrics_table(result))
    sources = {"ground truth": args.gt, "results": args.dt}
    _write_json(out / "eval.json", {**sources, **result.to_dict()})
    log.info("wrote %s", out / "eval.json")
    if not args.diagnose:
        write_report(out / "report.md", result, sources=sources)
        return 0

    from core.evaluation.diagnosis import diagnose
    from core.evaluation.plots import write_plots
    from core.evaluation.report import diagnosis_table

    diag = diagnose(gt, results, match_oks=args.match_oks, original=result)
    print()
    print(diagnosis_table(diag))
    _write_json(out / "diagnosis.json", {**sources, **diag.to_dict()})
    plots = write_plots(diag, out / "plots")
    report = write_report(out / "report.md", result, diag, plots, sources)
    log.info("wrote %s, %s and %d plots in %s", out / "diagnosis.json", report, len(plots), out / "plots")
    if baseline is not None:
        from core.evaluation.report import comparison_table

        before = diagnose(gt, baseline, match_oks=args.match_oks)
        print()
        print(comparison_table(before, diag, ("baseline", "results")))
        _write_json(out / "comparison.json", {"baseline": args.baseline, "results": args.dt,
                                              "counts": {"baseline": before.summary_counts(),
                                                         "results": diag.summary_counts()},
                                              "AP": {"baseline": before.ap("original"), "results": diag.ap("original")}})
    return 0
