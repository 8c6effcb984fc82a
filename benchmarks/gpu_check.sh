#!/usr/bin/env bash
# The GPU check of issue 13, one table (under 8 minutes on one GPU): Triton detector throughput at batch 1, 8
# and 32 (TensorRT FP16 and ONNX Runtime CUDA; target >= 1,000 keyframes/s at batch 32), SlowFast R50 s/iter
# at batch 8, and 2-GPU DDP when two GPUs are present. What each row measures: benchmarks/gpu_check.py.
#
#   benchmarks/gpu_check.sh [--dry-run] [--seconds S] [--json out.json]
#
# On a GPU machine: the avaforge GPU image's environment (PY=/opt/venv/bin/python) with `tritonserver` on
# PATH for the Triton rows (e.g. inside NVIDIA's Triton image with this repository and that venv mounted);
# without tritonserver the Triton rows say so and the training rows still run. --dry-run runs on this CPU at
# toy size (the local stack's Triton, the tiny preset) so the script itself is tested (tests/test_gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export YOLO_OFFLINE="${YOLO_OFFLINE:-1}"
exec timeout --signal=INT "${GPU_CHECK_TIMEOUT:-480}" "$PY" benchmarks/gpu_check.py "$@"
