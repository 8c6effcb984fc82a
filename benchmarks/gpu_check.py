"""The GPU check (``benchmarks/gpu_check.sh``): one table with what a GPU machine gives avaforge.

- Triton detector throughput (keyframes/s) at batch 1, 8 and 32 for the person detector under Triton's
  ONNX Runtime backend with TensorRT FP16 and with plain ONNX Runtime CUDA (both model configs derived from
  deploy/triton/gpu/person_detector/config.pbtxt, max batch 32); inputs and outputs through system shared
  memory, so the figure is the server's, not the gRPC copy's. Target: >= 1,000 keyframes/s at batch 32.
- SlowFast R50 training, s/iter at batch 8 (mmengine's per-iteration time, warm-up iterations excluded), on a
  dataset made from the test videos (tests/media.py, tests/conftest.write_demo_dataset).
- 2-GPU DDP (``avaforge train --nproc 2``, global batch 16 = 8 per GPU) when two GPUs are present.

``--dry-run`` runs on CPU at toy size: the local stack's Triton (python backend, ONNX Runtime CPU) at
64x64 inputs, the tiny preset for 3 iterations at batch 2; the GPU-only rows say what would run and check
that their inputs exist. The table prints either way.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GPU_CONFIG = REPO / "deploy" / "triton" / "gpu" / "person_detector" / "config.pbtxt"
LOCAL_CONFIG = REPO / "deploy" / "triton" / "local" / "person_detector" / "config.pbtxt"
BATCHES = (1, 8, 32)
TARGET_KEYFRAMES_S = 1000.0  # issue 13: one H200-class GPU, batch 32


@dataclass
class Row:
    check: str
    setting: str
    result: str
    note: str = ""


def variant_config(source: str, name: str, tensorrt: bool) -> str:
    """The deploy config as a benchmark model: its own name, max batch 32, TensorRT on or off."""
    text = re.sub(r'^name:\s*"[^"]+"', f'name: "{name}"', source, flags=re.M)
    text = re.sub(r"^max_batch_size:\s*\d+", "max_batch_size: 32", text, flags=re.M)
    text = re.sub(r"preferred_batch_size:\s*\[[^\]]*\]", "preferred_batch_size: [ 8, 16, 32 ]", text)
    if not tensorrt:
        text = re.sub(r"^optimization \{.*?^\}\n", "", text, flags=re.M | re.S)
    return text


def write_repository(out: Path, variants: dict[str, tuple[Path, bool]]) -> Path:
    from avaforge.detection.model_repo import write_repo

    for name, (source, tensorrt) in variants.items():
        config = out / f"{name}.pbtxt"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(variant_config(source.read_text(), name, tensorrt))
        write_repo(config, out / "repo")
    return out / "repo"


def throughput(url: str, model: str, batch: int, size: int, seconds: float, clients: int = 2) -> float:
    """Images per second with ``clients`` requests in flight, tensors in system shared memory."""
    import numpy as np
    import tritonclient.grpc as grpcclient
    import tritonclient.utils.shared_memory as shm

    head = grpcclient.InferenceServerClient(url)
    meta = head.get_model_metadata(model)
    out_name = meta.outputs[0].name
    probe = grpcclient.InferInput("images", [batch, 3, size, size], "FP32")
    probe.set_data_from_numpy(np.zeros((batch, 3, size, size), np.float32))
    out_shape = head.infer(model, [probe]).as_numpy(out_name).shape  # also the warm-up (engine build)
    in_bytes = batch * 3 * size * size * 4
    out_bytes = int(np.prod(out_shape)) * 4
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def run(i: int) -> None:
        client = grpcclient.InferenceServerClient(url)
        tag = f"gpucheck_{model}_{batch}_{i}"
        regions = []
        try:
            for kind, nbytes in (("in", in_bytes), ("out", out_bytes)):
                handle = shm.create_shared_memory_region(f"{tag}_{kind}", f"/{tag}_{kind}", nbytes)
                client.register_system_shared_memory(f"{tag}_{kind}", f"/{tag}_{kind}", nbytes)
                regions.append(handle)
            data = np.random.default_rng(i).random((batch, 3, size, size), dtype=np.float32)
            shm.set_shared_memory_region(regions[0], [data])
            inp = grpcclient.InferInput("images", [batch, 3, size, size], "FP32")
            inp.set_shared_memory(f"{tag}_in", in_bytes)
            out = grpcclient.InferRequestedOutput(out_name)
            out.set_shared_memory(f"{tag}_out", out_bytes)
            while time.monotonic() < stop:
                client.infer(model, [inp], outputs=[out])
                counts[i] += batch
        finally:
            for kind, handle in zip(("in", "out"), regions, strict=False):
                client.unregister_system_shared_memory(f"{tag}_{kind}")
                shm.destroy_shared_memory_region(handle)

    start = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def triton_rows(tmp: Path, dry_run: bool, seconds: float) -> list[Row]:
    from devstack.servers import free_port, triton_server, wait_model_ready

    rows: list[Row] = []
    gpu_variants = {"det_trt_fp16": (GPU_CONFIG, True), "det_ort_cuda": (GPU_CONFIG, False)}
    if dry_run:
        repo = write_repository(tmp / "gpu", gpu_variants)  # checks the configs and the model export
        for name in gpu_variants:
            assert (repo / name / "1" / "model.onnx").exists() and (repo / name / "config.pbtxt").exists()
            rows.append(
                Row(
                    f"Triton {name}",
                    "batch 1/8/32, 640x640",
                    "not run (dry run)",
                    f"repo {repo.name}/{name} ok",
                )
            )
        from avaforge.detection.model_files import detector_model

        onnx, digest = detector_model(None, 640)
        local = tmp / "local"
        (local / "det_cpu" / "1").mkdir(parents=True)
        (local / "det_cpu" / "config.pbtxt").write_text(
            variant_config(LOCAL_CONFIG.read_text(), "det_cpu", False)
        )
        shutil.copy2(LOCAL_CONFIG.parent / "1" / "model.py", local / "det_cpu" / "1" / "model.py")
        server = triton_server(tmp / "triton", onnx, digest, local, free_port()).start(timeout=300)
        try:
            wait_model_ready(server.port, "det_cpu")
            for batch in BATCHES:
                rate = throughput(f"127.0.0.1:{server.port}", "det_cpu", batch, 64, seconds)
                rows.append(
                    Row(
                        "Triton det_cpu (python backend, CPU)",
                        f"batch {batch}, 64x64",
                        f"{rate:.1f} keyframes/s",
                        "toy size",
                    )
                )
        finally:
            server.stop()
        return rows
    binary = shutil.which("tritonserver")
    if binary is None:
        return [Row("Triton", "-", "not run", "no tritonserver on PATH (run inside the Triton GPU image)")]
    repo = write_repository(tmp / "gpu", gpu_variants)
    port = free_port()
    log = (tmp / "tritonserver.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--model-repository={repo}", f"--grpc-port={port}", f"--http-port={free_port()}",
         f"--metrics-port={free_port()}", "--strict-readiness=true"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for name in gpu_variants:
            wait_model_ready(port, name, timeout=300)
            for batch in BATCHES:
                rate = throughput(f"127.0.0.1:{port}", name, batch, 640, seconds)
                note = ""
                if batch == 32:
                    verdict = "PASS" if rate >= TARGET_KEYFRAMES_S else "FAIL"
                    note = f"target >= {TARGET_KEYFRAMES_S:.0f}: {verdict}"
                rows.append(Row(f"Triton {name}", f"batch {batch}, 640x640", f"{rate:.1f} keyframes/s", note))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return rows


def iteration_seconds(run: Path, skip: int) -> float:
    log = "".join(p.read_text() for p in sorted(run.glob("*/*.log")))
    times = [float(t) for t in re.findall(r"Iter\(train\) \[\s*\d+/\d+\].*?\btime: ([0-9.]+)", log)]
    return statistics.median(times[skip:] or times)


def train_only(
    dataset: Path, preset: str, run: Path, iters: int, batch: int, workers: int, nproc: int
) -> None:
    """``avaforge train``'s training loop without validation or the final evaluation (not timed here)."""
    from avaforge.trainer.config import build_config, write_config
    from avaforge.trainer.train import runner_overrides, train_config

    cfg = build_config(dataset, preset, run, iters=iters, batch_size=batch, workers=workers, processes=nproc)
    cfg.train_cfg.val_begin = iters + 1
    config = write_config(cfg, run / "config.py")
    train_config(config, nproc, runner_overrides(config, iters, False))


def training_rows(tmp: Path, dry_run: bool) -> list[Row]:
    import torch

    from avaforge.settings import CutSettings, FrameSettings, ScheduleSettings
    from avaforge.stages.frames import cut_with_frames
    from avaforge.stages.ingest import ClipSpec
    from tests import media
    from tests.conftest import write_demo_dataset

    video = media.make(media.PEOPLE_2997, tmp / "videos")
    frames = tmp / "frames" / "people"
    spec = ClipSpec("people", "people", 0, 0.0, 10.01)
    cut_with_frames(video, spec, tmp / "clip.mp4", frames, CutSettings(), FrameSettings(), ScheduleSettings())
    dataset = write_demo_dataset(tmp / "dataset", frames, {"train": ["a", "c", "d"], "val": ["b"]})
    preset, batch, iters, skip = ("tiny", 2, 3, 1) if dry_run else ("slowfast_r50", 8, 12, 4)
    device = "CPU (dry run)" if dry_run else "CPU"
    if not dry_run and torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    one = tmp / "train1"
    train_only(dataset, preset, one, iters, batch, workers=0 if dry_run else 4, nproc=1)
    t1 = iteration_seconds(one, skip)
    rows = [
        Row(
            f"{preset} training",
            f"batch {batch}, 1 process, {device}",
            f"{t1:.3f} s/iter",
            f"median of iters {skip + 1}-{iters}",
        )
    ]
    gpus = torch.cuda.device_count()
    if dry_run or gpus < 2:
        why = "dry run: tests/test_train_ddp.py runs 2 CPU processes" if dry_run else f"{gpus} GPU"
        rows.append(Row(f"{preset} DDP", f"2 processes, global batch {2 * batch}", "not run", why))
        return rows
    two = tmp / "train2"
    train_only(dataset, preset, two, iters, 2 * batch, workers=4, nproc=2)
    t2 = iteration_seconds(two, skip)
    efficiency = (2 * batch / t2) / (2 * batch / t1)
    rows.append(
        Row(
            f"{preset} DDP",
            f"2 GPUs, global batch {2 * batch}",
            f"{t2:.3f} s/iter",
            f"scaling efficiency {efficiency:.2f}",
        )
    )
    return rows


def print_table(rows: list[Row]) -> None:
    head = Row("check", "setting", "result", "note")
    widths = [max(len(getattr(r, f)) for r in [head, *rows]) for f in ("check", "setting", "result", "note")]
    for r in [head, Row(*("-" * w for w in widths)), *rows]:
        cells = (r.check, r.setting, r.result, r.note)
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes (see above)")
    parser.add_argument("--seconds", type=float, help="measuring time per Triton row (default 10, dry run 1)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.dry_run else 10.0)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmpdir:
        tmp = Path(tmpdir)
        for step in (
            lambda: triton_rows(tmp / "triton", args.dry_run, seconds),
            lambda: training_rows(tmp / "train", args.dry_run),
        ):
            try:
                rows += step()
            except Exception as exc:  # one failing step still leaves the table
                rows.append(Row("step failed", "-", f"{type(exc).__name__}", str(exc)[:160]))
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 1 if any(r.check == "step failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
