#!/usr/bin/env bash
# make demo: a real multi-person video through every stage, autolabelled, to a validated dataset + report.
#   VIDEOS="a.mp4 b.mov" make demo   runs on your own files instead of OpenCV's vtest.avi
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
AV="${VENV:-.venv}/bin/avaforge"
OUT="${DEMO_OUT:-$ROOT/demo_out}"
ACTIONS="${ACTIONS:-examples/actions.yaml}"
if [[ -z "${VIDEOS:-}" ]]; then VIDEOS="$(scripts/fetch_demo_video.sh)"; fi
read -r -a videos <<< "$VIDEOS"
set -x
"$AV" prepare "${videos[@]}" --actions "$ACTIONS" --out "$OUT/work" --plan windows --window "${WINDOW:-10}" \
    --settings "${SETTINGS:-examples/demo_settings.yaml}"
"$AV" autolabel "$OUT/work"
"$AV" import "$OUT/work" "$OUT"/work/autolabel/*.via3.json
"$AV" build "$OUT/work" --out "$OUT/dataset"
"$AV" validate "$OUT/dataset"
set +x
echo
echo "VIA projects for annotators: $OUT/work/via/*.zip"
echo "dataset:                     $OUT/dataset"
echo "report:                      $OUT/dataset/report/index.html"
