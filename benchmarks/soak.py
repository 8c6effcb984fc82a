"""``make soak``: many jobs through the local stack while detector workers are SIGKILLed and NATS restarts.

The stack is ``make up``'s (devstack) in a temporary folder on free ports, with no detector worker of its own:
this script runs two ``python -m services.detector work`` processes itself, SIGKILLs a random one every
10-20 s and starts a new one in its place, and restarts nats-server once (SIGTERM, same port and store).
Every job must succeed, and its dataset must be byte-identical to the embedded runner's on the same video and
settings (``DatasetLayout.content_files``). The queue's log trail (taken / finished / acked per message id,
with its delivery count and pid) gives the redeliveries and the duplicate executions: a message whose handler
finished more than once (must be 0).

    .venv/bin/python benchmarks/soak.py [--jobs 20] [--videos 4] [--json benchmarks/last_soak.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from avaforge.client import GatewayClient  # noqa: E402
from avaforge.dataset_layout import DatasetLayout  # noqa: E402
from avaforge.formats.actions import ActionList  # noqa: E402
from avaforge.runner import autolabel_workdir, build, import_finished, prepare  # noqa: E402
from avaforge.settings import PipelineSettings  # noqa: E402
from avaforge.v1 import common_pb2  # noqa: E402
from devstack.certs import Credentials  # noqa: E402
from devstack.servers import free_ports, nats_server  # noqa: E402
from tests.media import ffmpeg, vtest  # noqa: E402

ACTIONS = {"groups": {"body": ["stand", "walk"]}}
# two 5 s windows per 10 s video: a job's dataset needs a train and a val clip
SETTINGS = {"cut": {"plan": {"mode": "windows", "window_s": 5.0}}}
TRAIL = re.compile(r"(\w+) item (taken|finished|acked): msg_id=(\S*) delivery=(\d+) pid=(\d+)")


def make_videos(n: int, folder: Path) -> list[Path]:
    """``n`` distinct 10 s crops of vtest's busy path, at 30 fps (a different segment each)."""
    out = []
    for i in range(n):
        path = folder / f"soak{i}.mp4"
        ffmpeg("-ss", str(5 + 12 * i), "-i", str(vtest()), "-t", "10", "-vf", "crop=384:288:384:72,fps=30",
               "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an", str(path))  # fmt: skip
        out.append(path)
    return out


def progress(line: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {line}", flush=True)


def embedded(video: Path, work: Path) -> tuple[list[Path], dict[str, bytes]]:
    """The embedded runner's autolabelled projects and dataset content for one video."""
    settings = PipelineSettings.from_dict(SETTINGS)
    prepare([video], ActionList.from_obj(ACTIONS), work / "work", settings)
    projects = autolabel_workdir(work / "work")
    import_finished(work / "work", projects)
    build(work / "work", work / "dataset")
    return projects, content(work / "dataset")


def content(root: Path) -> dict[str, bytes]:
    return {str(rel): (root / rel).read_bytes() for rel in DatasetLayout(root).content_files()}


class Workers:
    """Two detector workers, one replaced by a fresh process after each SIGKILL."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs, self.killed = env, logs, [], []  # type: ignore[var-annotated]
        for _ in range(2):
            self.procs.append(self._start())

    def _start(self) -> subprocess.Popen:
        log = open(self.logs / f"detector-{len(self.procs) + len(self.killed)}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "services.detector", "work"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )  # fmt: skip

    def kill_one(self) -> None:
        victim = random.choice(self.procs)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        self.killed.append(victim.pid)
        self.procs[self.procs.index(victim)] = self._start()

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            p.wait(60)


def trail(folder: Path) -> list[tuple[str, str, str, int, int]]:
    """(stage, event, msg id, delivery, pid) of every queue trail line in the logs under ``folder``."""
    out = []
    for log in folder.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError, KeyError):
                    if m := TRAIL.search(json.loads(line)["message"]):
                        out.append((m[1], m[2], m[3], int(m[4]), int(m[5])))
    return out


def wait_state(client: GatewayClient, job_id: str, states: set[int], timeout_s: float) -> common_pb2.Job:
    """Poll the job (through gateway and NATS restarts) until it reaches ``states`` or fails."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            job = client.get(job_id)
        except grpc.RpcError as exc:  # NATS restarting: the gateway answers UNAVAILABLE/UNKNOWN for a moment
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise
            time.sleep(1)
            continue
        if job.state in states | {common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}:
            return job
        time.sleep(1)
    raise TimeoutError(f"job {job_id} not done after {timeout_s:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--videos", type=int, default=4, help="distinct videos the jobs cycle through")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="avaforge-soak-") as tmpdir:
        tmp = Path(tmpdir)
        videos = make_videos(args.videos, tmp)
        expected = [embedded(v, tmp / f"embedded{i}") for i, v in enumerate(videos)]
        progress(f"embedded reference built for {len(videos)} videos")
        state = tmp / "stack"
        nats_port, s3_port, triton_port, gateway_port = free_ports(10)[:4]
        env = {
            **os.environ,
            "AVAFORGE_STACK_DIR": str(state),
            "AVAFORGE_NATS_PORT": str(nats_port),
            "AVAFORGE_S3_PORT": str(s3_port),
            "AVAFORGE_TRITON_PORT": str(triton_port),
            "AVAFORGE_GATEWAY_PORT": str(gateway_port),
            "AVAFORGE_DETECT_WORKERS": "0",
            "AVAFORGE_ACK_WAIT_S": "15",
        }
        up = subprocess.run([sys.executable, "-m", "devstack", "up"], env=env, cwd=ROOT)
        if up.returncode:
            return up.returncode
        stop_chaos = threading.Event()
        workers, chaos_thread = None, None
        try:
            stack = dict(line.split("=", 1) for line in (state / "stack.env").read_text().splitlines())
            worker_env = {
                **env,
                **stack,
                "AVAFORGE_CACHE_DIR": str(tmp / "detect-cache"),
                "AVAFORGE_METRICS_PORT": "0",
                # A kill every 10-20 s among 2 workers gives each ~30 s of life, and a 32-frame detect item
                # takes 10-20 s on a loaded machine: 4 deliveries (the default) all lost to kills then happen
                # by chance (the first 20-job run, at load 11, dead-lettered job 1's first detect item that
                # way: each of its 4 holders SIGKILLed). 10 makes that negligible; a poison item still goes.
                "AVAFORGE_MAX_DELIVER": "10",
            }
            workers = Workers(worker_env, state)
            client = GatewayClient(
                stack["AVAFORGE_GATEWAY"],
                timeout_s=120,
                ca=stack["AVAFORGE_CA"],
                token=stack["AVAFORGE_TOKEN"],
            )
            jobs = []
            for i in range(args.jobs):
                job = client.submit([videos[i % len(videos)]], ACTIONS, PipelineSettings.from_dict(SETTINGS))
                jobs.append((job.job_id, i % len(videos)))
            restarts: list[float] = []

            def chaos() -> None:
                nats_pid = json.loads((state / "pids.json").read_text())["nats"]
                while not stop_chaos.wait(random.uniform(10, 20)):
                    workers.kill_one()
                    if len(workers.killed) == 3 and not restarts:  # once, a few kills in
                        os.killpg(nats_pid, signal.SIGTERM)
                        time.sleep(2)
                        tls = Credentials(state / "auth").server_tls  # as make up starts it: TLS
                        again = nats_server(state, nats_port, tls=tls).start()
                        pids = json.loads((state / "pids.json").read_text())
                        (state / "pids.json").write_text(json.dumps({**pids, "nats": again.proc.pid}))  # type: ignore[union-attr]  # make down stops it
                        restarts.append(time.monotonic() - started)

            chaos_thread = threading.Thread(target=chaos, daemon=True)
            chaos_thread.start()
            results = []
            for job_id, v in jobs:
                job = wait_state(client, job_id, {common_pb2.JOB_STATE_AWAITING_LABELS}, 3600)
                if job.state != common_pb2.JOB_STATE_AWAITING_LABELS:
                    results.append((job_id, f"failed before labels: {job.error.message}"))
                    progress(f"job {len(results)}/{len(jobs)}: {results[-1][1]}")
                    continue
                for project in expected[v][0]:
                    client.upload_finished(job_id, project)
                time.sleep(1)
                client.build(job_id)
                job = wait_state(client, job_id, {common_pb2.JOB_STATE_SUCCEEDED}, 1800)
                if job.state != common_pb2.JOB_STATE_SUCCEEDED:
                    results.append((job_id, f"failed: {job.error.stage}: {job.error.message}"))
                    progress(f"job {len(results)}/{len(jobs)}: {results[-1][1]}")
                    continue
                got = content(client.download_dataset(job_id, tmp / "got" / job_id))
                results.append((job_id, "identical" if got == expected[v][1] else "DIFFERENT"))
                progress(f"job {len(results)}/{len(jobs)}: {results[-1][1]}, {len(workers.killed)} kills")
        finally:  # also on Ctrl-C: no chaos thread restarting workers after the stack is down
            stop_chaos.set()
            if chaos_thread is not None:
                chaos_thread.join(60)
            if workers is not None:
                workers.stop()
            subprocess.run([sys.executable, "-m", "devstack", "down"], env=env, cwd=ROOT)
        events = trail(state)
        finished = Counter(mid for _, ev, mid, _, _ in events if ev == "finished")
        summary = {
            "jobs": len(jobs),
            "succeeded_identical": sum(1 for _, r in results if r == "identical"),
            "results": results,
            "detector_kills": len(workers.killed),
            "nats_restarts_at_s": restarts,
            "redeliveries": sum(1 for _, ev, _, d, _ in events if ev == "taken" and d >= 2),
            "duplicate_executions": sum(n - 1 for n in finished.values() if n > 1),
            "items_finished": len(finished),
            "wall_s": round(time.monotonic() - started, 1),
        }
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=1))
    for job_id, r in results:
        print(job_id, r)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    ok = summary["succeeded_identical"] == summary["jobs"] and summary["duplicate_executions"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
