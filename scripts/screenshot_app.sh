#!/usr/bin/env bash
# Screenshot of the desktop app running on the demo video, taken from a virtual X server (Xvfb).
#
# Usage: scripts/screenshot_app.sh [OUT.png] [FRAMES]
#   OUT.png  where to save it (default docs/screenshot_app.png; kept under 500 KB)
#   FRAMES   frames to show before the app pauses and the screen is grabbed (default 45)
#
# Needs (installs nothing itself):
#   - Xvfb: Debian/Ubuntu package `xvfb`
#   - the libraries of Qt's X11 plugin: libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
#     libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0
#     (the app names any that are missing); a font, e.g. fonts-dejavu-core
#   - the project venv (PYTHON, default .venv/bin/python) with PySide6 and Pillow, and the fetched
#     demo video (python main.py models install)
# The app runs with a throw-away settings folder, pauses itself after FRAMES frames (--pause-after),
# a second Qt process grabs the X screen, and the app is closed with SIGINT (a normal close).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-docs/screenshot_app.png}
FRAMES=${2:-45}
W=1400 H=820
TIMEOUT_S=${TIMEOUT_S:-400}

command -v Xvfb >/dev/null || { echo "error: Xvfb not found (Debian/Ubuntu: apt-get install xvfb)" >&2; exit 2; }
[ -x "$PY" ] || { echo "error: $PY not found (make install, or set PYTHON)" >&2; exit 2; }

work=$(mktemp -d)
n=90
while [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ]; do n=$((n + 1)); done
xvfb_pid="" app_pid=""
cleanup() {
  if [ -n "$app_pid" ] && kill -0 "$app_pid" 2>/dev/null; then
    kill -INT "$app_pid" 2>/dev/null || true  # the app closes its window: pipeline stopped, settings saved
    for _ in $(seq 100); do kill -0 "$app_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$app_pid" 2>/dev/null || true
    rc=0; wait "$app_pid" || rc=$?
    if [ "$rc" -ne 0 ]; then echo "warning: the app exited with code $rc:" >&2; tail -20 "$work/app.log" >&2; fi
  fi
  [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

Xvfb ":$n" -screen 0 "${W}x${H}x24" -nolisten tcp >"$work/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$n" ] && break; sleep 0.1; done
[ -e "/tmp/.X11-unix/X$n" ] || { echo "error: Xvfb did not start: $(tail -1 "$work/xvfb.log")" >&2; exit 1; }
export DISPLAY=":$n" QT_QPA_PLATFORM=xcb

RMPE_LIVE_CONFIG_DIR="$work/config" PYTHONFAULTHANDLER=1 "$PY" main.py gui --video demo --pause-after "$FRAMES" >"$work/app.log" 2>&1 &
app_pid=$!
deadline=$((SECONDS + TIMEOUT_S))
until grep -q "paused after" "$work/app.log" 2>/dev/null; do
  if ! kill -0 "$app_pid" 2>/dev/null; then
    echo "error: the app exited:" >&2; tail -5 "$work/app.log" >&2; exit 1
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo "error: no $FRAMES frames within ${TIMEOUT_S}s" >&2; tail -5 "$work/app.log" >&2; exit 1
  fi
  sleep 0.5
done
sleep 1.5  # the last frame and a perf tick get painted

mkdir -p "$(dirname "$OUT")"
"$PY" - "$OUT" <<'PYEOF'
"""Grab the X screen with Qt and save a PNG under 500 KB (palette-quantised if needed)."""
import io
import sys

from PIL import Image
from PySide6 import QtCore, QtGui

app = QtGui.QGuiApplication(sys.argv[:1])
shot = app.primaryScreen().grabWindow(0)
buf = QtCore.QBuffer()
buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
shot.save(buf, "PNG")
image = Image.open(io.BytesIO(bytes(buf.data()))).convert("RGB")
limit = 500 * 1024
for colours in (None, 256, 128, 64):
    out = io.BytesIO()
    (image if colours is None else image.quantize(colours, method=Image.Quantize.MEDIANCUT)).save(
        out, "PNG", optimize=True)
    if out.tell() < limit:
        break
with open(sys.argv[1], "wb") as f:
    f.write(out.getvalue())
print(f"saved {sys.argv[1]}: {image.width}x{image.height}, {out.tell() // 1024} KB"
      + (f", {colours} colours" if colours else ""))
PYEOF
grep -E "opened|paused after|No camera" "$work/app.log" | sed 's/^/app: /' || true
