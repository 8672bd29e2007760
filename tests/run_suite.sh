#!/usr/bin/env bash
# Runs the whole suite; pytest's "no tests collected" (exit 5) is a failure, not a pass.
set -uo pipefail
PY=${1:-python}
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
"$PY" -m pytest "${@:2}"
rc=$?
if [ $rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit $rc
