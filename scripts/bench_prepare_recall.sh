#!/usr/bin/env bash
# make bench-prepare-recall: issue 14's "done when" on the real thing. `avaforge prepare` on vtest.avi with no
# settings file (one whole clip) and as make demo cuts it (10 s windows); per work folder, the share of the
# hand-labelled people VIA is pre-filled with (benchmarks/prepare_recall.py) and the detect stage's cost
# against today's (benchmarks/bench_detect_stage.py). Work folders under $OUT (default .cache/bench-prepare).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${VENV:-.venv}/bin/python"
AV="${VENV:-.venv}/bin/avaforge"
OUT="${OUT:-$ROOT/.cache/bench-prepare}"
VIDEO="$(scripts/fetch_demo_video.sh)"
rm -rf "$OUT"
"$AV" prepare "$VIDEO" --actions examples/actions.yaml --out "$OUT/whole"
"$AV" prepare "$VIDEO" --actions examples/actions.yaml --out "$OUT/windows" --plan windows --window 10
for plan in whole windows; do
    echo "== $plan"
    "$PY" benchmarks/prepare_recall.py "$OUT/$plan"
    "$PY" benchmarks/bench_detect_stage.py "$OUT/$plan" --repeat "${REPEAT:-2}" \
        --json "benchmarks/last_prepare_detect_$plan.json"
done
