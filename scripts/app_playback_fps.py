"""Read the desktop app's own status bar while it plays the demo: frames shown per second against
the video's frame rate, and playback speed (video seconds per second).

The check of issue 15: with no camera and fresh settings, the demo plays at >= 0.8x its own frame
rate on a 2-core machine, as read off the status bar. Run it on a quiet machine (nothing else
loading the CPU), with the models and demo installed (python main.py models install):

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/app_playback_fps.py [--warmup 5] [--seconds 10]
        [--min-ratio 0.8] [--metric fps|speed] [--json OUT.json]

Fresh settings: a throw-away settings folder, so the defaults apply (real-time playback, loop on).
The window is the real one (MainWindow), the models the real ones; the figures are the text of
the status bar's rate label ("24.1 of 30 fps · 1.00× speed"), sampled every 0.5 s after the warm-up.
Exit status 0 when the median of the chosen metric reaches --min-ratio, 1 when not, 2 on errors.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LABEL = re.compile(r"(?P<fps>[\d.]+) of (?P<video>[\d.]+) fps(?: · (?P<speed>[\d.]+)× speed)?")


def parse_rate_label(text: str) -> tuple[float, float, float | None] | None:
    """(fps shown, video fps, speed or None) from the status bar's rate label, None if blank."""
    m = LABEL.search(text)
    if not m:
        return None
    return float(m["fps"]), float(m["video"]), float(m["speed"]) if m["speed"] else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the first frame before sampling")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of samples")
    parser.add_argument("--min-ratio", type=float, default=0.8)
    parser.add_argument("--metric", choices=("fps", "speed"), default="fps",
                        help="fps: frames shown / the video's fps; speed: video seconds per second")
    parser.add_argument("--json", metavar="OUT", help="also write the samples and summary as JSON")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up when no frame shows by then")
    args = parser.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["RMPE_LIVE_CONFIG_DIR"] = tempfile.mkdtemp(prefix="rmpe-fps-")  # fresh settings
    from app.version_check import check_pyside

    check_pyside()
    from PySide6 import QtCore, QtWidgets

    from app.main_window import MainWindow
    from app.settings import Settings
    from app.sources_dialog import SourceSpec
    from core.assets import artefact_path
    from core.config import Config

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    window = MainWindow(Config.load(), Settings())
    window.show()
    window.open_source(SourceSpec("file", str(artefact_path("demo_video"))))

    def spin(seconds: float, until=lambda: False) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
            if until():
                return True
            time.sleep(0.005)
        return until()

    try:
        if not spin(args.timeout, lambda: window.frames_shown > 0):
            print(f"error: no frame within {args.timeout:.0f} s: {window.message.text()}", file=sys.stderr)
            return 2
        spin(args.warmup)
        samples = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            spin(0.5)
            parsed = parse_rate_label(window.fps_label.text())
            if parsed is not None:
                samples.append(parsed)
        mode = window.session.pipeline.mode if window.session.pipeline is not None else "?"
    finally:
        window.close()
    if not samples:
        print("error: the status bar showed no rate", file=sys.stderr)
        return 2
    fps = statistics.median(s[0] for s in samples)
    video_fps = samples[-1][1]
    speeds = [s[2] for s in samples if s[2] is not None]
    speed = statistics.median(speeds) if speeds else float("nan")
    ratio = fps / video_fps if video_fps else float("nan")
    value = ratio if args.metric == "fps" else speed
    ok = value >= args.min_ratio
    print(f"{'metric':<28}{'value':>10}")
    print(f"{'pipeline mode':<28}{mode:>10}")
    print(f"{'frames shown / s (median)':<28}{fps:>10.2f}")
    print(f"{'video fps':<28}{video_fps:>10.2f}")
    print(f"{'fps ratio':<28}{ratio:>10.2f}")
    print(f"{'playback speed (median)':<28}{speed:>10.2f}")
    print(f"{args.metric} {value:.2f} {'>=' if ok else '<'} {args.min_ratio}: {'PASS' if ok else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "mode": mode, "samples": samples, "fps": fps, "video_fps": video_fps, "fps_ratio": ratio,
            "speed": speed, "metric": args.metric, "min_ratio": args.min_ratio, "pass": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
