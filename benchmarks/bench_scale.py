"""``make bench-scale``: detect-stage throughput with 1..N workers, each with an explicit thread budget, for
the in-process ONNX Runtime backend and for Triton (instances, dynamic batching), with Triton's own metrics.

What runs: the detect step itself (``avaforge.stages.detect.detect_clip``, the call a detector worker's
handler makes for a queue item: JPEGs read by the reader thread, letterbox, inference, NMS) in N processes
started together, each sized by ``services.common.threads.apply`` as a worker's start-up sizes itself. The
queue and S3 around it (fetch the rawframes once per clip, store a small .npz per item) are not in the loop:
they are per item, not per frame, and would only add the same small time to every row.

Every worker detects the same ``--frames`` frames (weak scaling), so throughput(N) = N x frames / the wall
time from the common start to the last worker's end, and efficiency = throughput(N) / (N x throughput(1)) of
the same backend and budget. The machine may be shared: each row also gives the CPU seconds per frame (all
threads of the workers, and of Triton's server and backend processes) and the CPU share the workers got
(CPU seconds / wall); the load average and the CPU pressure (/proc/pressure/cpu "some": the fraction of the
time some runnable task waited for a core) say how busy the machine was meanwhile.

    .venv/bin/python benchmarks/bench_scale.py [--frames 64] [--workers 1 2] \
        [--json benchmarks/last_scale_run.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avaforge.detection import make_detector  # noqa: E402
from avaforge.detection.model_files import file_digest, onnx_model, resolve_weights  # noqa: E402
from avaforge.settings import DetectSettings  # noqa: E402
from avaforge.stages.detect import detect_clip, frames_to_detect  # noqa: E402
from devstack.servers import log_tail, triton_server, wait_model_ready, wait_port  # noqa: E402
from services.common import threads  # noqa: E402
from tests.media import ffmpeg, vtest  # noqa: E402

BATCH = 8  # DetectSettings.batch: the images of one detector call (one Triton request)


@dataclass(frozen=True)
class TritonConfig:
    instances: int
    threads: int  # ONNX Runtime intra-op threads of each instance
    preferred: tuple[int, ...]  # dynamic batching's preferred batch sizes (images)
    delay_us: int  # dynamic batching's max queue delay

    def label(self) -> str:
        pref = ",".join(map(str, self.preferred)) or "-"
        return f"{self.instances} inst x {self.threads} thr, preferred [{pref}], delay {self.delay_us} us"


def make_rawframes(folder: Path, seconds: int) -> Path:
    """``seconds`` of vtest.avi as 30 fps rawframes (img_00001.jpg ...), as the frames stage writes them."""
    out = folder / "rawframes"
    out.mkdir(parents=True)
    ffmpeg("-i", str(vtest()), "-t", str(seconds), "-vf", "fps=30", "-q:v", "3", str(out / "img_%05d.jpg"))
    return out


# -- one worker process ---------------------------------------------------------------------------------


def _worker(
    settings: DetectSettings, budget: int, rawframes: str, frames: list[int], barrier: Any, out: Any
) -> None:
    threads.apply(threads.Budget(budget, "bench"))  # as a worker's start-up does, before the model loads
    detector = make_detector(settings)
    detect_clip(rawframes, frames[:BATCH], detector, BATCH)  # warm-up: first-run allocations, connections
    barrier.wait()
    start, cpu0 = time.monotonic(), time.process_time()
    dets = detect_clip(rawframes, frames, detector, BATCH)
    out.put(
        {
            "start": start,
            "end": time.monotonic(),
            "cpu_s": time.process_time() - cpu0,
            "frames": len(dets.frames),
            "boxes": sum(len(b) for b in dets.boxes),
        }
    )


# -- measurements around the workers ----------------------------------------------------------------------


def cpu_pressure_us() -> int:
    """Microseconds (cumulative) that some runnable task waited for a CPU (PSI "some")."""
    try:
        text = Path("/proc/pressure/cpu").read_text()
    except OSError:
        return 0
    return int(re.search(r"some .*total=(\d+)", text)[1])  # type: ignore[index]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and all its descendants alive now."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def triton_metrics(port: int) -> dict[str, float]:
    """Triton's Prometheus counters for the model, summed over versions."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    wanted = (
        "nv_inference_request_success",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
    )
    out = dict.fromkeys(wanted, 0.0)
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in out and 'model="person_detector"' in rest:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def run(
    settings: DetectSettings, n: int, budget: int, rawframes: Path, frames: list[int], server_pid: int | None
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # fresh interpreters: every pool sized by the budget, as in a new worker
    threads.apply(threads.Budget(budget, "bench"))  # inherited by the children's start-up imports
    barrier, out = ctx.Barrier(n + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(settings, budget, str(rawframes), frames, barrier, out))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=600)
    load0, psi0, t0 = os.getloadavg()[0], cpu_pressure_us(), time.monotonic()
    server0 = tree_cpu_s(server_pid) if server_pid else 0.0
    results = [out.get(timeout=1800) for _ in procs]
    t1 = time.monotonic()
    server_cpu = tree_cpu_s(server_pid) - server0 if server_pid else 0.0
    psi = (cpu_pressure_us() - psi0) / 1e6 / (t1 - t0)
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a worker exited with {p.exitcode}")
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    total = sum(r["frames"] for r in results)
    worker_cpu = sum(r["cpu_s"] for r in results)
    return {
        "workers": n,
        "threads": budget,
        "frames": total,
        "boxes": sum(r["boxes"] for r in results),
        "wall_s": round(wall, 3),
        "fps": round(total / wall, 3),
        "worker_cpu_s": round(worker_cpu, 3),
        "server_cpu_s": round(server_cpu, 3),
        "cpu_ms_per_frame": round(1000 * (worker_cpu + server_cpu) / total, 1),
        "cpu_share": round((worker_cpu + server_cpu) / wall, 2),  # cores the run got, on average
        "load1": round((load0 + os.getloadavg()[0]) / 2, 2),
        "cpu_pressure": round(psi, 2),
    }


def with_efficiency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """efficiency = fps(N) / (N x fps(1)) against the 1-worker row of the same backend and budget."""
    for row in rows:
        same = [r for r in rows if (r["backend"], r["threads"]) == (row["backend"], row["threads"])]
        base = next((r for r in same if r["workers"] == 1), None)
        if base:
            row["speedup"] = round(row["fps"] / base["fps"], 2)
            row["efficiency"] = round(row["fps"] / (row["workers"] * base["fps"]), 2)
    return rows


def triton_repository(folder: Path, cfg: TritonConfig) -> Path:
    """deploy/triton/local with the instance count and dynamic batching of ``cfg``."""
    repo = folder / "repository"
    shutil.copytree(ROOT / "deploy" / "triton" / "local", repo)
    path = repo / "person_detector" / "config.pbtxt"
    text = path.read_text()
    batching = (
        "dynamic_batching {\n"
        + (f"  preferred_batch_size: [ {', '.join(map(str, cfg.preferred))} ]\n" if cfg.preferred else "")
        + f"  max_queue_delay_microseconds: {cfg.delay_us}\n}}"
    )
    text = re.sub(r"dynamic_batching \{[^}]*\}", batching, text)
    text = re.sub(r"count: \d+", f"count: {cfg.instances}", text)
    path.write_text(text)
    return repo


def bench_triton(
    cfg: TritonConfig, workers: list[int], rawframes: Path, frames: list[int], folder: Path
) -> list[dict[str, Any]]:
    weights = resolve_weights(None)
    server = triton_server(
        folder / "triton",
        onnx_model(weights, 640),
        file_digest(weights)[:16],
        triton_repository(folder / f"repo-{cfg.instances}-{cfg.delay_us}", cfg),
    )
    server.env["AVAFORGE_DETECTOR_THREADS"] = str(cfg.threads)
    metrics_port = int(next(a for a in server.argv if a.startswith("--metrics-port=")).split("=")[1])
    server.start(timeout=300)
    rows = []
    try:
        wait_model_ready(server.port, "person_detector", timeout=600)
        log = server.workdir / "triton.log"
        try:
            wait_port(metrics_port, 120, server.proc, log)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"Triton's metrics port: {exc}\n{log_tail(log, 20)}") from None
        settings = DetectSettings(backend="triton", triton_url=f"127.0.0.1:{server.port}")
        for n in workers:
            before = triton_metrics(metrics_port)
            row = run(settings, n, 1, rawframes, frames, server.proc.pid)  # type: ignore[union-attr]
            after = triton_metrics(metrics_port)
            d = {k: after[k] - before[k] for k in after}
            requests = d["nv_inference_request_success"] or 1
            images_per_exec = d["nv_inference_count"] / (d["nv_inference_exec_count"] or 1)
            row |= {
                "backend": f"triton ({cfg.label()})",
                "triton_requests": int(d["nv_inference_request_success"]),
                "triton_images_per_exec": round(images_per_exec, 1),
                "triton_queue_ms_per_request": round(
                    d["nv_inference_queue_duration_us"] / requests / 1000, 1
                ),
                "triton_compute_ms_per_request": round(
                    (
                        d["nv_inference_compute_input_duration_us"]
                        + d["nv_inference_compute_infer_duration_us"]
                        + d["nv_inference_compute_output_duration_us"]
                    )
                    / requests
                    / 1000,
                    1,
                ),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.stop()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| backend | workers x threads | frames/s | speedup | efficiency | CPU ms/frame | CPU share | "
        "load1 | CPU pressure | Triton queue / compute ms per request, images per execution |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        triton = (
            f"{r['triton_queue_ms_per_request']} / {r['triton_compute_ms_per_request']}, "
            f"{r['triton_images_per_exec']}"
            if "triton_requests" in r
            else "-"
        )
        lines.append(
            f"| {r['backend']} | {r['workers']} x {r['threads']} | {r['fps']} | {r.get('speedup', '-')} | "
            f"{r.get('efficiency', '-')} | {r['cpu_ms_per_frame']} | {r['cpu_share']} | {r['load1']} | "
            f"{r['cpu_pressure']} | {triton} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=64, help="frames each worker detects (batches of 8)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--skip-triton", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    # Triton configurations: as many instances as cores with 1 thread each and no batching wait (what
    # independent workers do), and one instance with every core that batches the workers' requests together.
    triton_configs = [
        TritonConfig(cores, 1, (), 0),
        TritonConfig(1, cores, tuple(BATCH * k for k in range(2, cores + 1)) or (BATCH,), 5000),
    ]
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        folder = Path(tmp)
        seconds = -(-args.frames * 3 // 30) + 1  # detection at 10 fps: every 3rd frame
        rawframes = make_rawframes(folder, seconds)
        count = len(list(rawframes.glob("img_*.jpg")))
        frames = frames_to_detect(count, 10.0, ())[: args.frames]
        if not args.skip_onnx:
            settings = DetectSettings(backend="onnx")
            budgets = [(n, 1) for n in args.workers] + [(1, cores)]  # 1 thread each; one worker with all
            for n, budget in budgets:
                row = {"backend": "onnx runtime, in process"}
                row |= run(settings, n, budget, rawframes, frames, None)
                rows.append(row)
                print(json.dumps(row), flush=True)
        if not args.skip_triton:
            for cfg in triton_configs:
                try:
                    rows += bench_triton(cfg, args.workers, rawframes, frames, folder)
                except (RuntimeError, TimeoutError, OSError) as exc:  # the other rows still count
                    print(f"triton ({cfg.label()}) failed: {exc}", file=sys.stderr, flush=True)
                    errors.append(f"{cfg.label()}: {exc}")
    rows = with_efficiency(rows)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": cores,
        "frames_per_worker": len(frames),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "errors": errors}, indent=1) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
