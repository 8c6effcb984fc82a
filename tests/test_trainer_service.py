"""The trainer service over gRPC with its queue worker, on real nats-server + S3: a tiny run to the end with
its artifacts stored, and a cancelled run."""

import asyncio
import json
import math
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest

from avaforge.queue import RetryPolicy, WorkQueue
from avaforge.storage import ArtifactRef
from avaforge.v1 import common_pb2, stages_pb2, stages_pb2_grpc
from devstack.servers import nats_server
from services.common import jobs, runtime
from services.common.convert import ref_to_proto
from services.common.worker import Context
from services.trainer.handlers import train_item
from services.trainer.servicer import NAME, TrainerServicer
from tests.credentials import channel as tls_channel
from tests.credentials import security
from tests.stage_workers import LoopThread

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trainer(s3, tmp_path_factory: pytest.TempPathFactory, training_dataset):  # type: ignore[no-untyped-def]
    _, store = s3
    tmp = tmp_path_factory.mktemp("trainer")
    dataset = training_dataset
    with ExitStack() as cleanup:  # each part stopped even when a test, the start or another stop fails
        nats = nats_server(tmp / "nats").start()
        cleanup.callback(nats.stop)
        background = LoopThread()
        cleanup.callback(background.close)
        queue = background.run(WorkQueue.connect(f"nats://127.0.0.1:{nats.port}"))
        cleanup.callback(lambda: background.run(queue.close()))  # its watch subscriptions outlive the loop
        stop = asyncio.Event()

        async def start_worker() -> asyncio.Task[int]:
            ctx = Context.create(queue, store, tmp / "cache")
            policy = RetryPolicy(max_deliver=1, ack_wait_s=600)
            return asyncio.create_task(queue.work("train", lambda p: train_item(ctx, p), stop, policy, 0.2))

        async def stop_worker() -> None:
            stop.set()
            await worker

        worker = background.run(start_worker())
        cleanup.callback(lambda: background.run(stop_worker(), 120))
        running = background.run(
            runtime.serve(
                "trainer",
                [(stages_pb2_grpc.add_TrainerServiceServicer_to_server, TrainerServicer(queue, store), NAME)],
                0,
                metrics_port=0,
                bind="127.0.0.1",
                security=security(),
            )
        )
        cleanup.callback(lambda: background.run(running.stop(1)))
        channel = tls_channel(running.port, "alice")
        cleanup.callback(channel.close)

        def read(key: str) -> dict:
            return background.run(jobs.get(queue, key), 30)

        yield stages_pb2_grpc.TrainerServiceStub(channel), dataset, store, read


def _until(stub, job_id: str, states: set[int]) -> common_pb2.Job:  # type: ignore[no-untyped-def]
    last = None
    for job in stub.WatchTraining(stages_pb2.WatchTrainingRequest(job_id=job_id), timeout=600):
        last = job
        if job.state in states:
            break
    return last


def test_training_job_runs_and_stores_its_artifacts(trainer, videos: Path, tmp_path: Path) -> None:
    stub, dataset, store, read = trainer
    demo = ref_to_proto(store.put("videos", (videos / "people_1080p_vfr_2.6s.mp4").read_bytes(), ".mp4"))
    job = stub.StartTraining(
        stages_pb2.StartTrainingRequest(dataset=dataset, preset="tiny", iters=3, demo_video=demo)
    )
    assert job.training == common_pb2.TrainingSpec(dataset=dataset, preset="tiny", iters=3, demo_video=demo)
    done = _until(stub, job.job_id, {common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED})
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done
    assert done.progress[0].done == 3 and done.progress[0].total == 3
    result = read(f"train.{done.job_id}.result")
    metrics = json.loads(store.get(ArtifactRef(**result["metrics"])))
    assert math.isfinite(metrics["val"]["mAP@0.5IOU"])
    assert b"num_classes" in store.get(ArtifactRef(**result["config"]))
    assert store.exists(ArtifactRef(**result["checkpoint"])) and store.exists(ArtifactRef(**result["logs"]))
    from avaforge.video.ffmpeg_run import count_frames

    (tmp_path / "demo.mp4").write_bytes(store.get(ArtifactRef(**result["demo"])))
    # people_1080p_vfr_2.6s.mp4 rendered at 30 fps: 2.567 s x 30 = 77 frames
    assert count_frames(str(tmp_path / "demo.mp4"), "demo") == 77


def test_bad_requests_and_cancel(trainer) -> None:
    stub, dataset, _, _ = trainer
    with pytest.raises(grpc.RpcError) as exc:
        stub.StartTraining(stages_pb2.StartTrainingRequest(dataset=dataset, preset="huge", iters=3))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as exc:
        stub.CancelTraining(stages_pb2.CancelTrainingRequest(job_id="0123456789ab"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    job = stub.StartTraining(stages_pb2.StartTrainingRequest(dataset=dataset, preset="tiny", iters=500))
    running = _until(stub, job.job_id, {common_pb2.JOB_STATE_RUNNING})
    assert running.state == common_pb2.JOB_STATE_RUNNING
    assert running.training.iters == 500 and not running.training.HasField("demo_video")
    stub.CancelTraining(stages_pb2.CancelTrainingRequest(job_id=job.job_id))
    assert _until(stub, job.job_id, {common_pb2.JOB_STATE_CANCELLED}).state == common_pb2.JOB_STATE_CANCELLED
