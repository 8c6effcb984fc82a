"""The stage services as queue workers on real nats-server + S3: one video through ingest, detection fanned
out over two detector workers, tracking, proposals and VIA export gives the embedded runner's bytes."""

import asyncio
from pathlib import Path

import pytest

from avaforge.archive import pack_dir
from avaforge.devstack.servers import nats_server
from avaforge.formats.actions import ActionList
from avaforge.queue import RetryPolicy, WorkQueue
from avaforge.runner import prepare
from avaforge.settings import PipelineSettings
from avaforge.storage import ArtifactRef
from services.common import jobs
from services.pipeline_workers import Context
from tests.stage_workers import start_stage_workers

pytestmark = pytest.mark.slow
ACTIONS = {"groups": {"body": ["stand", "walk"], "hands": ["wave"]}}
POLICY = RetryPolicy(max_deliver=3, backoff_s=(0.2,), ack_wait_s=120)


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
        for _ in range(600):
            if await jobs.get(queue, f"job1.via.{cid}") and await jobs.get(queue, f"job1.prop.{cid}"):
                break
            await asyncio.sleep(0.2)
        stop.set()
        counts = [await task for _, task in workers]
        records = {k: await jobs.get(queue, k) for k in await jobs.keys(queue, "job1.")}
        for q, _ in workers:
            await q.close()
        await queue.close()
        return {"counts": counts, "records": records}

    try:
        result = asyncio.run(asyncio.wait_for(main(), 300))
    finally:
        nats.stop()
    records = result["records"]
    assert len([k for k in records if k.startswith(f"job1.det.{cid}.")]) == 4  # 100 frames in batches of 32
    assert result["counts"][1] > 0 and result["counts"][2] > 0  # both detector workers took batches

    work = tmp_path / "embedded"
    prepare([video], ActionList.from_obj(ACTIONS), work, settings)
    clip = work / "clips" / cid

    def fetched(d: dict) -> bytes:
        return store.get(ArtifactRef(**d))

    assert fetched(records[f"job1.clip.{cid}"]["rawframes"]) == pack_dir(clip / "rawframes")
    assert fetched(records[f"job1.track.{cid}"]["detections"]) == (clip / "detections.npz").read_bytes()
    assert fetched(records[f"job1.track.{cid}"]["tracks"]) == (clip / "tracks.json").read_bytes()
    assert fetched(records[f"job1.prop.{cid}"]) == (clip / "proposals.pkl").read_bytes()
    assert (
        fetched(records[f"job1.via.{cid}"]["project"])
        == (work / "via" / cid / f"{cid}.via3.json").read_bytes()
    )
    assert fetched(records[f"job1.via.{cid}"]["archive"]) == (work / "via" / f"{cid}.zip").read_bytes()


def test_sigkill_of_a_detector_worker_mid_job_loses_nothing(s3, videos: Path, tmp_path: Path) -> None:
    """Two detector worker processes; one is SIGKILLed while the clip's batches are being detected. Its
    unacknowledged item goes to the other after ack_wait; the job completes with every batch once."""
    import os
    import signal
    import subprocess
    import sys

    server, store = s3
    nats = nats_server(tmp_path / "nats").start()
    env = {
        **os.environ,
        "AVAFORGE_NATS_URL": f"nats://127.0.0.1:{nats.port}",
        "AVAFORGE_S3_ENDPOINT": f"127.0.0.1:{server.port}",
        "AVAFORGE_S3_ACCESS_KEY": store_creds()[0],
        "AVAFORGE_S3_SECRET_KEY": store_creds()[1],
        "AVAFORGE_S3_BUCKET": store.bucket,
        "AVAFORGE_ACK_WAIT_S": "4",
        "AVAFORGE_METRICS_PORT": "0",
    }
    from avaforge.devstack.servers import free_port

    health_port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.worker", "detect"],
            # the cache in tmp_path: the SIGKILLed worker cannot remove a private one
            env={
                **env,
                "AVAFORGE_GRPC_PORT": str(port),
                "AVAFORGE_CACHE_DIR": str(tmp_path / f"worker-{port}"),
            },
            cwd=REPO,
            start_new_session=True,
        )
        for port in (0, health_port)
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
        for _ in range(1500):
            if not killed and await jobs.keys(queue, f"job2.det.{cid}."):
                os.killpg(procs[0].pid, signal.SIGKILL)  # mid-job: the other batches are still being detected
                killed = True
            if await jobs.get(queue, f"job2.prop.{cid}") and await jobs.get(queue, f"job2.via.{cid}"):
                break
            await asyncio.sleep(0.2)
        stop.set()
        for q, task in tasks:
            await task
            await q.close()
        records = {k: await jobs.get(queue, k) for k in await jobs.keys(queue, "job2.")}
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:  # the surviving worker's probe
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        records["health"] = {"status": status.status}
        await queue.close()
        return records

    try:
        records = asyncio.run(asyncio.wait_for(main(), 300))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(30)
        nats.stop()
    assert procs[0].returncode == -signal.SIGKILL
    assert records["health"] == {"status": 1}  # SERVING
    assert sorted(k for k in records if k.startswith(f"job2.det.{cid}.")) == [
        f"job2.det.{cid}.{i:05d}" for i in range(4)
    ]
    work = tmp_path / "embedded"
    prepare([video], ActionList.from_obj(ACTIONS), work, PipelineSettings())
    got = store.get(ArtifactRef(**records[f"job2.prop.{cid}"]))
    assert got == (work / "clips" / cid / "proposals.pkl").read_bytes()  # no keyframe lost, none twice


def store_creds() -> tuple[str, str]:
    from tests.conftest import CREDS

    return CREDS.access_key, CREDS.secret_key


REPO = Path(__file__).resolve().parents[1]
