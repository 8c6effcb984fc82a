"""Cancel through the gateway, on real nats-server + S3 + ffmpeg: a job cancelled while its ingest runs is
CANCELLED at once; the running ffmpeg is killed and the ingest item acked and dropped; the clips already
stored stay in S3 (content-addressed: other jobs may share them) and the items they queued (detect) are
dropped unhandled, so nothing further runs and no error is recorded."""

import asyncio
import logging
import time
from pathlib import Path

import grpc
import pytest

from avaforge.client import GatewayClient
from avaforge.queue import RetryPolicy, WorkQueue
from avaforge.settings import PipelineSettings
from avaforge.storage import ArtifactRef
from avaforge.v1 import common_pb2, gateway_pb2
from devstack.servers import nats_server
from services.common import jobs
from services.common.worker import Context, work
from services.gateway.__main__ import start
from tests.media import ffmpeg
from tests.stage_workers import HANDLERS, LoopThread

pytestmark = pytest.mark.slow
ACTIONS = {"groups": {"body": ["stand", "walk"]}}
POLICY = RetryPolicy(max_deliver=3, backoff_s=(0.2,), ack_wait_s=60)


def _stopped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("ingest item stopped and dropped")
    ]


def test_cancel_during_ingest_stops_ffmpeg_and_queues_nothing_more(
    s3, videos: Path, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, "avaforge.queue")
    _, store = s3
    # 60 s of video (the 10 s people clip 6 times, stream copy) in 10 s windows: 6 clips, cut one after
    # the other by one ingest item, so a cancel lands while ffmpeg cuts one of them
    long_video = tmp_path / "people_x6.mp4"
    ffmpeg(
        "-stream_loop",
        "5",
        "-i",
        str(videos / "people_29.97fps_10s.mp4"),
        "-c",
        "copy",
        str(long_video),
    )
    settings = PipelineSettings.from_dict({"cut": {"plan": {"mode": "windows", "window_s": 10.0}}})
    nats = nats_server(tmp_path / "nats").start()
    background = LoopThread()
    stop = asyncio.Event()

    async def up():  # type: ignore[no-untyped-def]
        queue = await WorkQueue.connect(f"nats://127.0.0.1:{nats.port}")
        ctx = Context.create(queue, store, tmp_path / "cache")
        ingest = asyncio.create_task(work(ctx, {"ingest": HANDLERS["ingest"]}, stop, POLICY, None, 0.2))
        server, port = await start(queue, store, 0)
        return queue, ctx, ingest, server, port

    async def detector_comes_up(ctx: Context) -> asyncio.Task:
        return asyncio.create_task(work(ctx, {"detect": HANDLERS["detect"]}, stop, POLICY, None, 0.2))

    async def down(tasks: list[asyncio.Task]) -> None:
        stop.set()
        await asyncio.gather(*tasks)
        await server.stop(1)
        await queue.close()

    queue, ctx, ingest, server, port = background.run(up())
    workers = [ingest]
    client = GatewayClient(f"127.0.0.1:{port}", timeout_s=60)

    def facts(prefix: str) -> dict:
        async def read() -> dict:
            return {k: await jobs.get(queue, k) for k in await jobs.keys(queue, prefix)}

        return background.run(read())

    try:
        job = client.submit([long_video], ACTIONS, settings)
        deadline = time.monotonic() + 300
        while not client.get(job.job_id).clips and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get(job.job_id).clips, "no clip was cut in 300 s"
        cancelled = client.stub.CancelJob(gateway_pb2.GetJobRequest(job_id=job.job_id))
        at = time.monotonic()
        assert cancelled.state == common_pb2.JOB_STATE_CANCELLED
        while not _stopped(caplog) and time.monotonic() < at + 60:
            time.sleep(0.1)
        stopped_after = time.monotonic() - at
        # a detector worker comes up after the cancel: the items the stored clips queued are still there
        workers.append(background.run(detector_comes_up(ctx)))
        while background.run(queue.pending("detect")) and time.monotonic() < at + 120:
            time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as exc:
            client.stub.CancelJob(gateway_pb2.GetJobRequest(job_id="0123456789ab"))
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        final = client.get(job.job_id)
        recorded = facts(f"{job.job_id}.")
        pending = {s: background.run(queue.pending(s)) for s in ("ingest", "detect")}
        dead = background.run(queue.dead_letters("ingest")) + background.run(queue.dead_letters("detect"))
    finally:
        client.close()
        background.run(down(workers), 120)
        background.close()
        nats.stop()

    # the worker polls the flag every second, then ffmpeg dies within a 0.2 s poll (or the item stops at its
    # check before the next clip): 10 s is ample
    assert stopped_after < 10, stopped_after
    (how,) = _stopped(caplog)
    assert "ffmpeg stopped, its job was cancelled" in how or "job cancelled: before clip" in how, how
    assert final.state == common_pb2.JOB_STATE_CANCELLED and not final.HasField("error")
    clips = {k: v for k, v in recorded.items() if k.startswith(jobs.fact(job.job_id, "ingest") + ".")}
    assert 1 <= len(clips) < 6, sorted(recorded)  # cut before the cancel; the rest never cut
    for outputs in clips.values():  # what was stored stays
        assert store.exists(ArtifactRef(**outputs["rawframes"])) and store.exists(
            ArtifactRef(**outputs["video"])
        )
    assert not any(".parts.detect." in k or ".detect." in k for k in recorded), sorted(recorded)
    assert pending == {"ingest": 0, "detect": 0} and dead == []  # acked (dropped), not failed
    messages = [r.getMessage() for r in caplog.records]
    dropped = [m for m in messages if m.startswith("detect item dropped, its job is cancelled")]
    # each clip's detect items: 100 of its 300 frames (every 3rd; tracking_fps 10), in batches of 32 = 4
    assert len(dropped) == 4 * len(clips), messages
    assert not any(m.startswith("detect item taken") for m in messages)
