"""The stage services as queue workers on real nats-server + S3: one video through ingest, detection fanned
out over two detector workers, tracking, proposals and VIA export gives the embedded runner's bytes."""

import asyncio
from pathlib import Path

import pytest

from avaforge import pipeline
from avaforge.archive import pack_dir
from avaforge.formats.actions import ActionList
from avaforge.queue import RetryPolicy, WorkQueue
from avaforge.runner import prepare
from avaforge.settings import PipelineSettings
from avaforge.storage import ArtifactRef
from devstack.servers import nats_server
from services.common import jobs
from services.common.worker import Context
from tests.credentials import channel as tls_channel
from tests.credentials import server_env
from tests.stage_workers import start_stage_workers

pytestmark = pytest.mark.slow
ACTIONS = {"groups": {"body": ["stand", "walk"], "hands": ["wave"]}}
POLICY = RetryPolicy(max_deliver=3, backoff_s=(0.2,), ack_wait_s=120)


async def recorded(queue: WorkQueue, job: str, cid: str) -> dict:
    """The clip's stage facts and first detector parts, read by key: a KV key listing (nats-py's watch)
    can come back short on a loaded machine."""
    keys = [jobs.fact(job, s.name, cid) for s in pipeline.STAGES]
    keys += [jobs.fact(job, "detect", cid, i) for i in range(8)]
    return {k: v for k in keys if (v := await jobs.get(queue, k)) is not None}


def test_queue_workers_produce_the_embedded_runners_bytes(s3, videos: Path, tmp_path: Path) -> None:
    _, store = s3
    nats = nats_server(tmp_path / "nats").start()
    video = videos / "people_29.97fps_10s.mp4"
    cid = "people_29.97fps_10s"
    settings = PipelineSettings()

    async def main() -> dict:
        url = f"nats://127.0.0.1:{nats.port}"
        queue = await WorkQueue.connect(url)
        ctx = Context.create(queue, store, tmp_path / "cache")
        stop = asyncio.Event()
        stages = ("ingest", "detect", "detect", "track", "proposals", "via")  # two detector workers
        workers = await start_stage_workers(url, ctx, stages, stop, POLICY)
        ref = store.put("videos", video.read_bytes(), ".mp4")
        await jobs.submit_video(queue, "job1", 0, ref.to_dict(), video.name, settings.to_dict(), ACTIONS)
        for _ in range(3000):  # up to 10 min: CI machines are slow under load
            if await jobs.get(queue, jobs.fact("job1", "via", cid)) and await jobs.get(
                queue, jobs.fact("job1", "proposals", cid)
            ):
                break
            await asyncio.sleep(0.2)
        stop.set()
        counts = [await task for _, task in workers]
        records = await recorded(queue, "job1", cid)
        for q, _ in workers:
            await q.close()
        await queue.close()
        return {"counts": counts, "records": records}

    try:
        result = asyncio.run(asyncio.wait_for(main(), 900))
    finally:
        nats.stop()
    records = result["records"]
    detect_parts = [k for k in records if k.startswith(jobs.fact("job1", "detect", cid, 0)[:-5])]
    assert len(detect_parts) == 4  # 100 frames in batches of 32
    assert result["counts"][1] > 0 and result["counts"][2] > 0  # both detector workers took batches

    work = tmp_path / "embedded"
    prepare([video], ActionList.from_obj(ACTIONS), work, settings)
    clip = work / "clips" / cid

    def fetched(d: dict) -> bytes:
        return store.get(ArtifactRef(**d))

    def output(stage: str, name: str) -> bytes:
        return fetched(records[jobs.fact("job1", stage, cid)][name])

    assert output("ingest", "rawframes") == pack_dir(clip / "rawframes")
    assert output("detect", "detections") == (clip / "detections.npz").read_bytes()
    assert output("track", "tracks") == (clip / "tracks.json").read_bytes()
    assert output("proposals", "proposals") == (clip / "proposals.pkl").read_bytes()
    assert output("via", "project") == (work / "via" / cid / f"{cid}.via3.json").read_bytes()
    assert output("via", "archive") == (work / "via" / f"{cid}.zip").read_bytes()


def test_sigkill_of_a_detector_worker_mid_job_loses_nothing(s3, videos: Path, tmp_path: Path) -> None:
    """Two detector worker processes; one is SIGKILLed while it holds one of the clip's batches. That item
    goes to the other after ack_wait (JetStream's second delivery); the job completes with every batch once.
    The evidence is the queue's trail in each worker's log: "detect item taken|acked: msg_id=... delivery=N
    pid=P" (avaforge.queue.WorkQueue._handle)."""
    import json
    import os
    import re
    import signal
    import subprocess
    import sys
    from collections import Counter

    trail = re.compile(r"^detect item (taken|acked): msg_id=(\S+) delivery=(\d+) pid=(\d+)$")

    def events(log: Path) -> list[tuple[str, str, int, int]]:
        """(event, msg id, delivery, pid) for each trail line of a worker's JSON log."""
        out = []
        for line in log.read_text().splitlines():
            if line.startswith("{") and (m := trail.match(json.loads(line)["message"])):
                out.append((m[1], m[2], int(m[3]), int(m[4])))
        return out

    def held(log: Path) -> set[str]:
        evs = events(log)
        return {e[1] for e in evs if e[0] == "taken"} - {e[1] for e in evs if e[0] == "acked"}

    server, store = s3
    nats = nats_server(tmp_path / "nats").start()
    env = {
        **os.environ,
        "AVAFORGE_NATS_URL": f"nats://127.0.0.1:{nats.port}",
        "AVAFORGE_S3_ENDPOINT": f"http://127.0.0.1:{server.port}",  # plaintext test server
        "AVAFORGE_S3_ACCESS_KEY": store_creds()[0],
        "AVAFORGE_S3_SECRET_KEY": store_creds()[1],
        "AVAFORGE_S3_BUCKET": store.bucket,
        "AVAFORGE_ACK_WAIT_S": "4",
        "AVAFORGE_METRICS_PORT": "0",
        **server_env(),  # the workers' health ports bind 0.0.0.0: TLS and tokens
    }
    from devstack.servers import free_port

    health_port = free_port()
    logs = [tmp_path / "worker-killed.log", tmp_path / "worker-surviving.log"]
    sinks = [log.open("w") for log in logs]  # JSON log lines; Python's stderr is line-buffered
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.detector", "work"],
            # the cache in tmp_path: the SIGKILLed worker cannot remove a private one
            env={
                **env,
                "AVAFORGE_GRPC_PORT": str(port),
                "AVAFORGE_CACHE_DIR": str(tmp_path / f"worker-{port}"),
            },
            cwd=REPO,
            start_new_session=True,
            stderr=sink,
        )
        for port, sink in zip((0, health_port), sinks, strict=True)
    ]
    video = videos / "people_29.97fps_10s.mp4"
    cid = "people_29.97fps_10s"

    async def main() -> dict:
        url = env["AVAFORGE_NATS_URL"]
        queue = await WorkQueue.connect(url)
        ctx = Context.create(queue, store, tmp_path / "cache")
        stop = asyncio.Event()
        tasks = await start_stage_workers(url, ctx, ("ingest", "track", "proposals", "via"), stop, POLICY)
        ref = store.put("videos", video.read_bytes(), ".mp4")
        settings = PipelineSettings().to_dict()
        await jobs.submit_video(queue, "job2", 0, ref.to_dict(), video.name, settings, ACTIONS)
        killed = False
        for _ in range(3000):
            # mid-job (a batch is done, others are being detected) and while the worker holds an item
            done = [await jobs.get(queue, jobs.fact("job2", "detect", cid, i)) for i in range(4)]
            if not killed and any(done) and held(logs[0]):
                os.killpg(procs[0].pid, signal.SIGKILL)
                killed = True
            if await jobs.get(queue, jobs.fact("job2", "proposals", cid)) and await jobs.get(
                queue, jobs.fact("job2", "via", cid)
            ):
                break
            await asyncio.sleep(0.2)
        stop.set()
        for q, task in tasks:
            await task
            await q.close()
        records = await recorded(queue, "job2", cid)
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with tls_channel(health_port) as channel:  # the surviving worker's probe, as the service
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        records["health"] = {"status": status.status}
        await queue.close()
        return records

    try:
        records = asyncio.run(asyncio.wait_for(main(), 900))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(30)
        nats.stop()
        for sink in sinks:
            sink.close()
    assert procs[0].returncode == -signal.SIGKILL
    assert records["health"] == {"status": 1}  # SERVING
    assert sorted(k for k in records if k.startswith(jobs.fact("job2", "detect", cid, 0)[:-5])) == [
        jobs.fact("job2", "detect", cid, i) for i in range(4)
    ]
    killed_pid, surviving_pid = procs[0].pid, procs[1].pid
    lost = held(logs[0])  # taken by the killed worker and never acked: it held exactly one (fetch batch=1)
    assert len(lost) == 1, events(logs[0])
    (item,) = lost
    assert {pid for *_, pid in events(logs[0])} == {killed_pid}
    # redelivered: the surviving worker took that message id again, as JetStream's 2nd (or later) delivery
    retaken = [d for ev, mid, d, pid in events(logs[1]) if (ev, mid, pid) == ("taken", item, surviving_pid)]
    assert retaken and min(retaken) >= 2, events(logs[1])
    # finished once: the held item is acked once, by the surviving worker, and each of the clip's 4 detect
    # items (msg ids = their fact keys) is acked exactly once. 4 = 300 frames at 30 fps, every 3rd detected
    # (tracking_fps 10; the keyframes 30t+1 are among them) = 100 frames, in fan-out batches of 32
    # (pipeline.stage("detect").fanout). The model loads inside the handler's thread, so the queue's progress
    # reports keep a live worker's item from being redelivered even while the first ONNX export runs.
    acked = Counter((mid, pid) for log in logs for ev, mid, _, pid in events(log) if ev == "acked")
    assert {key: n for key, n in acked.items() if key[0] == item} == {(item, surviving_pid): 1}
    assert Counter(mid for mid, _ in acked.elements()) == {
        jobs.fact("job2", "detect", cid, i): 1 for i in range(4)
    }
    work = tmp_path / "embedded"
    prepare([video], ActionList.from_obj(ACTIONS), work, PipelineSettings())
    got = store.get(ArtifactRef(**records[jobs.fact("job2", "proposals", cid)]["proposals"]))
    assert got == (work / "clips" / cid / "proposals.pkl").read_bytes()  # no keyframe lost, none twice


def store_creds() -> tuple[str, str]:
    from tests.conftest import CREDS

    return CREDS.access_key, CREDS.secret_key


REPO = Path(__file__).resolve().parents[1]
