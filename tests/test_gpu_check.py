"""benchmarks/gpu_check.sh: its --dry-run on this CPU runs every step at toy size and prints the one table
(the real run needs a GPU machine; its numbers go to benchmarks/RESULTS.md, never into a test)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["gpu_check"] = gpu_check  # its dataclass looks its module up
_spec.loader.exec_module(gpu_check)  # type: ignore[union-attr]


def test_model_variants_come_from_the_deployed_gpu_config() -> None:
    source = gpu_check.GPU_CONFIG.read_text()
    trt = gpu_check.variant_config(source, "det_trt_fp16", tensorrt=True)
    ort = gpu_check.variant_config(source, "det_ort_cuda", tensorrt=False)
    for text, name in ((trt, "det_trt_fp16"), (ort, "det_ort_cuda")):
        assert re.search(rf'^name: "{name}"$', text, re.M)
        assert re.search(r"^max_batch_size: 32$", text, re.M)  # batch 32 must be servable
        assert 'platform: "onnxruntime_onnx"' in text and "KIND_GPU" in text
    assert '"tensorrt"' in trt and '"FP16"' in trt
    assert "optimization" not in ort and "tensorrt" not in ort
    assert ort.count("{") == ort.count("}")  # the block was removed whole


@pytest.mark.slow
def test_dry_run_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    env = {**os.environ, "PY": str(ROOT / ".venv" / "bin" / "python"), "GPU_CHECK_TIMEOUT": "900"}
    done = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=960,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print("\n" + "\n".join(line for line in done.stdout.splitlines() if line.startswith("| ")))
    rows = json.loads(out.read_text())
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == len(rows) + 2  # header, rule, one line a row: one table
    by_check: dict[str, list[dict]] = {}
    for r in rows:
        by_check.setdefault(r["check"], []).append(r)
    cpu = by_check["Triton det_cpu (python backend, CPU)"]
    assert [r["setting"] for r in cpu] == ["batch 1, 64x64", "batch 8, 64x64", "batch 32, 64x64"]
    assert all(float(r["result"].split()[0]) > 0 for r in cpu)
    for name in ("det_trt_fp16", "det_ort_cuda"):  # the GPU rows checked their repository, not run
        assert by_check[f"Triton {name}"][0]["result"] == "not run (dry run)"
    (tiny,) = by_check["tiny training"]
    assert tiny["result"].endswith("s/iter") and float(tiny["result"].split()[0]) > 0
    assert by_check["tiny DDP"][0]["result"] == "not run"
