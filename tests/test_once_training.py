"""The issue's repro, on real nats-server + S3 + mmaction2: two ``python -m services.trainer work`` processes
with a 3 s ack wait. A tiny training several times longer than the ack wait runs once; a cancelled training
stops, stores nothing and ends CANCELLED; a training item that cannot run is dead-lettered and the job shows
FAILED; a worker SIGKILLed mid-training loses its item to the other, which finishes it once.

The evidence is the queue's trail in each worker's JSON log: "train item taken|acked: msg_id=... delivery=N
pid=P" (avaforge.queue.WorkQueue._handle), with the log line's time."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avaforge.queue import WorkQueue
from avaforge.storage import ArtifactRef
from avaforge.v1 import common_pb2, stages_pb2
from devstack.servers import nats_server
from services.common import auth, jobs
from services.common.convert import ref_from_proto
from services.trainer.servicer import TrainerServicer, training_job
from tests.conftest import CREDS, REPO

pytestmark = pytest.mark.slow
ACK_WAIT_S = 3
TRAIL = re.compile(
    r"^train item (taken|acked|stopped and dropped.*): msg_id=train\.(\w+) delivery=(\d+) pid=(\d+)$"
)


class Cluster:
    """Two trainer worker processes on one nats-server and S3, and the trainer API (in this process)."""

    def __init__(self, store, dataset, url: str, logs: list[Path], procs: list[subprocess.Popen]) -> None:  # type: ignore[no-untyped-def]
        self.store, self.dataset, self.url, self.logs, self.procs = store, dataset, url, logs, procs

    def call(self, fn):  # type: ignore[no-untyped-def]
        """``fn(queue, servicer)`` on a fresh connection (each test step runs its own event loop)."""

        async def main():  # type: ignore[no-untyped-def]
            auth._current.set(auth.LOCAL)  # called directly, not through the runtime's auth interceptor
            queue = await WorkQueue.connect(self.url)
            try:
                return await fn(queue, TrainerServicer(queue, self.store))
            finally:
                await queue.close()

        return asyncio.run(asyncio.wait_for(main(), 60))

    def start(self, iters: int) -> str:
        request = stages_pb2.StartTrainingRequest(dataset=self.dataset, preset="tiny", iters=iters)
        return self.call(lambda q, api: api.StartTraining(request, None)).job_id

    def job(self, job_id: str) -> common_pb2.Job:
        return self.call(lambda q, api: training_job(q, job_id))

    def fact(self, key: str) -> dict | None:
        return self.call(lambda q, api: jobs.get(q, key))

    def wait(self, job_id: str, done, timeout_s: float = 300) -> common_pb2.Job:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if done(job):
                return job
            time.sleep(0.5)
        pytest.fail(f"training {job_id} did not get there in {timeout_s} s: {self.job(job_id)}")

    def settled_trail(self, job_id: str, events: int) -> list[tuple[str, int, int, float]]:
        """The trail once it has ``events`` lines (the ack is logged just after the job's result is put)."""
        deadline = time.monotonic() + 30
        while len(trail := self.trail(job_id)) < events and time.monotonic() < deadline:
            time.sleep(0.2)
        return trail

    def trail(self, job_id: str) -> list[tuple[str, int, int, float]]:
        """(event, delivery, pid, time) of the job's item, from every worker's log."""
        out = []
        for log in self.logs:
            for line in log.read_text().splitlines():
                if line.startswith("{"):
                    entry = json.loads(line)
                    if (m := TRAIL.match(entry["message"])) and m[2] == job_id:
                        out.append((m[1], int(m[3]), int(m[4]), entry["time"]))
        return sorted(out, key=lambda e: e[3])


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory: pytest.TempPathFactory, training_dataset):  # type: ignore[no-untyped-def]
    server, store = s3
    tmp = tmp_path_factory.mktemp("once_training")
    dataset = training_dataset
    nats = nats_server(tmp / "nats").start()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AVAFORGE_NATS_URL": f"nats://127.0.0.1:{nats.port}",
        "AVAFORGE_S3_ENDPOINT": f"http://127.0.0.1:{server.port}",  # plaintext test server
        "AVAFORGE_S3_ACCESS_KEY": CREDS.access_key,
        "AVAFORGE_S3_SECRET_KEY": CREDS.secret_key,
        "AVAFORGE_S3_BUCKET": store.bucket,
        "AVAFORGE_ACK_WAIT_S_TRAIN": str(ACK_WAIT_S),  # the stage's own ack wait (the table says 300)
        "AVAFORGE_MAX_DELIVER": "2",
        "AVAFORGE_METRICS_PORT": "0",
    }
    logs = [tmp / f"worker-{i}.log" for i in range(2)]
    sinks = [log.open("w") for log in logs]  # JSON log lines; Python's stderr is line-buffered
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.trainer", "work"],
            env={**env, "AVAFORGE_CACHE_DIR": str(tmp / f"cache-{i}")},
            cwd=REPO,
            start_new_session=True,
            stderr=sink,
        )
        for i, sink in enumerate(sinks)
    ]
    try:
        yield Cluster(store, dataset, env["AVAFORGE_NATS_URL"], logs, procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sink in sinks:
            sink.close()
        nats.stop()


# Tiny preset iterations: the run (dataset download, mmaction2's Runner set-up, 30 iterations, evaluation)
# outlasts the 3 s ack wait five times over: measured 0.3-7 s an iteration on 2 shared cores, plus ~8 s of
# set-up; the run's length is asserted from the worker's log, not assumed.
ITERS = 30


def test_a_training_longer_than_its_ack_wait_runs_once_with_two_workers(cluster: Cluster) -> None:
    job_id = cluster.start(ITERS)
    done = cluster.wait(job_id, lambda j: j.state in jobs.TERMINAL_STATES, 900)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done
    assert done.progress[0].done == ITERS
    trail = cluster.settled_trail(job_id, 2)
    assert [(ev, delivery) for ev, delivery, *_ in trail] == [("taken", 1), ("acked", 1)], trail
    (_, _, taker, taken_at), (_, _, acker, acked_at) = trail
    assert taker == acker and acked_at - taken_at > 5 * ACK_WAIT_S, trail  # ran > 15 s, delivered once
    result = cluster.fact(f"train.{job_id}.result")
    assert cluster.store.exists(ArtifactRef(**result["checkpoint"]))


def test_a_cancelled_training_stops_and_stores_nothing(cluster: Cluster) -> None:
    """Cancel during the run: the worker stops it between iterations and acks the item; no checkpoint or
    metrics are stored (the run's outputs are stored only at its end), the dataset it read stays."""
    job_id = cluster.start(100_000)
    cluster.wait(job_id, lambda j: j.state == common_pb2.JOB_STATE_RUNNING)
    request = stages_pb2.CancelTrainingRequest(job_id=job_id)
    cluster.call(lambda q, api: api.CancelTraining(request, None))
    at = time.monotonic()
    done = cluster.wait(job_id, lambda j: j.state in jobs.TERMINAL_STATES, 120)
    assert done.state == common_pb2.JOB_STATE_CANCELLED, done
    assert time.monotonic() - at < 60  # the worker polls every 0.5 s; an iteration takes well under 1 s
    assert done.progress[0].done < 100_000
    assert cluster.fact(f"train.{job_id}.result") is None and cluster.fact(f"train.{job_id}.error") is None
    assert cluster.store.exists(ref_from_proto(done.training.dataset))
    assert [(ev, d) for ev, d, *_ in cluster.settled_trail(job_id, 2)] == [("taken", 1), ("acked", 1)]


def test_a_dead_lettered_training_item_shows_failed(cluster: Cluster) -> None:
    """A training whose dataset is gone from S3 fails on every delivery (2 here): dead-lettered, the job
    FAILED with the stage's message, never RUNNING."""
    job_id = "feedfacecafe"
    spec = {"job_id": job_id, "created": time.time(), "preset": "tiny", "iters": 3, "cancel": False}
    missing = {"key": "datasets/" + "0" * 64 + ".tar", "digest": "0" * 64, "size": 10}
    spec["dataset"] = {"bucket": cluster.store.bucket, **missing}

    async def submit(q, api):  # type: ignore[no-untyped-def]
        await jobs.put(q, f"train.{job_id}", spec)
        await q.submit("train", {"job": job_id}, msg_id=f"train.{job_id}")

    cluster.call(submit)
    done = cluster.wait(job_id, lambda j: j.state in jobs.TERMINAL_STATES, 120)
    assert done.state == common_pb2.JOB_STATE_FAILED, done
    assert done.error.stage == "train" and done.error.message, done
    assert [(ev, d) for ev, d, *_ in cluster.settled_trail(job_id, 2)] == [("taken", 1), ("taken", 2)]


def test_a_sigkilled_training_worker_s_item_is_redelivered_and_finished_once(cluster: Cluster) -> None:
    job_id = cluster.start(ITERS)
    cluster.wait(job_id, lambda j: j.state == common_pb2.JOB_STATE_RUNNING)
    ((_, _, holder, _),) = cluster.trail(job_id)
    killed = next(p for p in cluster.procs if p.pid == holder)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(30)
    done = cluster.wait(job_id, lambda j: j.state in jobs.TERMINAL_STATES, 900)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done
    survivor = next(p.pid for p in cluster.procs if p.pid != holder)
    trail = [(ev, delivery, pid) for ev, delivery, pid, _ in cluster.settled_trail(job_id, 3)]
    # taken by the killed worker (1st delivery), redelivered after the ack wait to the other (2nd), which
    # trains from the start (the killed run's files were local to it) and acks once
    assert trail == [("taken", 1, holder), ("taken", 2, survivor), ("acked", 2, survivor)], trail
    assert killed.returncode == -signal.SIGKILL
    assert cluster.store.exists(ArtifactRef(**cluster.fact(f"train.{job_id}.result")["checkpoint"]))
