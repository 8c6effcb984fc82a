"""End to end over gRPC with real nats-server + S3: submit two vtest videos, get VIA projects, upload the
autolabelled finished projects, build, download the dataset: its AVA files and rawframes are byte-identical
to the embedded runner's on the same input and settings. Bad requests get clear status codes."""

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from avaforge.dataset_layout import DatasetLayout
from avaforge.formats.actions import ActionList
from avaforge.proto_convert import actions_from_proto, actions_to_proto, settings_from_proto
from avaforge.provenance import PROVENANCE_FILE
from avaforge.queue import RetryPolicy, WorkQueue
from avaforge.runner import autolabel_workdir, build, import_finished, prepare
from avaforge.settings import PipelineSettings
from avaforge.stages.via_import import ClipLabels
from avaforge.v1 import common_pb2, gateway_pb2, settings_pb2
from avaforge.workdir import Workdir
from devstack.servers import nats_server
from services.annotate import handlers as annotate_handlers
from services.common.worker import Context, record_failure
from services.gateway.__main__ import start
from tests.credentials import client as tls_client
from tests.credentials import credentials, security
from tests.gateway_stack import GatewayStack
from tests.stage_workers import HANDLERS

pytestmark = pytest.mark.slow
ACTIONS = {"groups": {"body": ["stand", "walk"], "hands": ["wave"]}}
VIDEOS = ("people_29.97fps_10s.mp4", "people_28fps_10s.mp4")
POLICY = RetryPolicy(max_deliver=3, backoff_s=(0.2,), ack_wait_s=120)


@pytest.fixture(scope="module")
def stack(s3, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    _, store = s3
    tmp = tmp_path_factory.mktemp("gateway")
    gateway = GatewayStack(store, tmp, workers=POLICY, max_upload_mb=3)
    try:
        client = gateway.client(timeout_s=300)
        yield client, tmp, {"nats": gateway.nats, "gateway": gateway}
        client.close()
    finally:
        gateway.close()


def test_submit_label_build_download_matches_embedded(stack, videos: Path, capsys) -> None:
    """The whole round trip as a user makes it, with the autolabelled projects uploaded by `avaforge remote
    upload` (it sends each project's autolabel suggestions from beside it) and a reviewer's pass over one
    clip: the dataset's files equal the embedded runner's byte for byte, and so does provenance.json
    (machine-made labels say machine; the reviewed clip's agreement)."""
    from avaforge.cli import main

    client, tmp, parts = stack
    creds = credentials()
    remote = ["remote", "--server", client.target, "--ca", str(creds.ca), "--token", creds.tokens["alice"]]
    inputs = [videos / v for v in VIDEOS]
    job = client.submit(inputs, ACTIONS)
    job = client.wait(job.job_id, common_pb2.JOB_STATE_AWAITING_LABELS)
    assert job.state == common_pb2.JOB_STATE_AWAITING_LABELS, job
    assert settings_from_proto(job.settings) == PipelineSettings()
    assert actions_from_proto(job.actions) == ActionList.from_obj(ACTIONS)
    assert sorted(c.clip_id for c in job.clips) == sorted(Path(v).stem for v in VIDEOS)
    zip_path = client.download_via(job.job_id, job.clips[0].clip_id, tmp / "via.zip")
    assert zip_path.stat().st_size > 10_000

    work = tmp / "embedded"  # the same input through the embedded runner
    prepare(inputs, ActionList.from_obj(ACTIONS), work, PipelineSettings())
    projects = autolabel_workdir(work)  # each with its <clip>.suggestions.json beside it
    assert main([*remote, "upload", job.job_id, *map(str, projects)]) == 0
    import_finished(work, projects)
    # a second annotator's review pass over one clip (a box's actions changed, one box left out), as the
    # workbench publishes it: beside the labels embedded, as the job's review_labels fact through the services
    reviewed = job.clips[0].clip_id
    labels = ClipLabels.load(Workdir(work).labels(reviewed))
    first, *rest = labels.boxes
    review = replace(
        labels, boxes=[replace(first, actions=(1,) if first.actions != (1,) else (2,)), *rest[:-1]]
    )
    review.save(Workdir(work).review_labels(reviewed))
    gateway = parts["gateway"]
    outputs = annotate_handlers.labels_outputs(gateway.store, review)
    gateway.run(annotate_handlers.record_review(gateway.queue, job.job_id, reviewed, outputs))
    embedded = build(work, tmp / "embedded_dataset").out
    deadline = 0
    while len([p for p in client.get(job.job_id).progress if p.stage == "import" and p.done == 2]) == 0:
        deadline += 1
        assert deadline < 600
        __import__("time").sleep(0.2)
    assert main([*remote, "build", job.job_id]) == 0
    assert client.get(job.job_id).state == common_pb2.JOB_STATE_SUCCEEDED
    assert main([*remote, "dataset", job.job_id, "--out", str(tmp / "served_dataset")]) == 0
    served = tmp / "served_dataset"
    capsys.readouterr()
    compared = DatasetLayout(embedded).content_files()
    for rel in compared:
        assert (served / rel).read_bytes() == (embedded / rel).read_bytes(), rel
    assert len(compared) > 600  # 9 annotation files + 600 rawframes
    provenance = DatasetLayout(served).annotations / PROVENANCE_FILE
    expected = json.loads((DatasetLayout(embedded).annotations / PROVENANCE_FILE).read_text())
    assert json.loads(provenance.read_text()) == expected
    assert expected["sources"].get("machine", 0) > 0, expected  # autolabel's ticks, left unchanged
    assert list(expected["agreement"]) == [reviewed]  # the review pass's agreement, the same in both
    assert expected["agreement"][reviewed]["unmatched_a"] == 1, expected["agreement"]  # the box left out


def test_bad_requests_get_clear_codes_and_the_gateway_keeps_serving(
    stack, videos: Path, tmp_path: Path
) -> None:
    client, _, _ = stack
    with pytest.raises(grpc.RpcError) as exc:
        client.upload_video(videos / VIDEOS[0], name="../../etc/passwd.mp4")
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (4 << 20))
    with pytest.raises(grpc.RpcError) as exc:
        client.upload_video(big)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as exc:
        client.get("0123456789ab")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as exc:
        client.stub.SubmitJob(
            gateway_pb2.SubmitJobRequest(
                videos=[
                    common_pb2.ArtifactRef(bucket="artifacts", key="videos/none.mp4", digest="0" * 64, size=1)
                ],
                filenames=["a.mp4"],
                actions=actions_to_proto(ActionList.from_flat(["x"], "b")),
            )
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as exc:
        client.stub.SubmitJob(
            gateway_pb2.SubmitJobRequest(
                videos=[common_pb2.ArtifactRef()], filenames=["a.mp4"], actions=settings_pb2.ActionList()
            )
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "groups" in exc.value.details()
    mine = client.submit([videos / "people_1080p_vfr_2.6s.mp4"], ACTIONS)
    jobs = client.stub.ListJobs(gateway_pb2.ListJobsRequest()).jobs
    assert mine.job_id in {j.job_id for j in jobs}  # still serving
    other = tmp_path / "other.json"
    other.write_text(
        '{"project": {"pname": "not_a_clip_of_this_job"}, "config": {}, "attribute": {}, '
        '"file": {}, "view": {}, "metadata": {}}'
    )
    with pytest.raises(grpc.RpcError) as exc:
        client.upload_finished(mine.job_id, other)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND and "not part of job" in exc.value.details()


def test_poison_input_fails_its_job_while_another_job_finishes(stack, videos: Path, tmp_path: Path) -> None:
    client, _, _ = stack
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    bad = client.submit([fake], ACTIONS)
    good = client.submit([videos / "people_1080p_vfr_2.6s.mp4"], ACTIONS)
    failed = client.wait(bad.job_id, common_pb2.JOB_STATE_FAILED)
    assert failed.state == common_pb2.JOB_STATE_FAILED
    assert failed.error.stage == "ingest" and "not a readable video" in failed.error.message
    assert failed.error.where == "notes.mp4"
    assert (
        client.wait(good.job_id, common_pb2.JOB_STATE_AWAITING_LABELS).state
        == common_pb2.JOB_STATE_AWAITING_LABELS
    )


def test_nats_restart_mid_job_resumes(stack, videos: Path) -> None:
    client, _, state = stack
    job = client.submit([videos / "people_1080p_vfr_2.6s.mp4"], {"groups": {"body": ["sit", "run"]}})
    for _ in range(300):  # wait until the job is under way
        if any(p.done for p in client.get(job.job_id).progress):
            break
        __import__("time").sleep(0.1)
    state["nats"].stop()  # JetStream keeps work items and job facts on disk
    state["nats"].start()
    assert (
        client.wait(job.job_id, common_pb2.JOB_STATE_AWAITING_LABELS).state
        == common_pb2.JOB_STATE_AWAITING_LABELS
    )


def test_s3_down_retries_then_fails_the_job_in_bounded_time(videos: Path, tmp_path: Path) -> None:
    """Workers start after S3 went away: the ingest item is retried, dead-lettered, and the job fails with a
    message naming the S3 server, within a bounded time."""
    import time

    from avaforge.storage import S3Store
    from devstack.servers import s3_server
    from tests.conftest import CREDS

    s3 = s3_server(tmp_path / "s3", CREDS).start()
    store = S3Store(
        f"127.0.0.1:{s3.port}", CREDS.access_key, CREDS.secret_key, "artifacts", retries=1, timeout_s=1
    )
    store.wait_ready()
    nats = nats_server(tmp_path / "nats").start()

    async def main() -> tuple[common_pb2.Job, float]:
        queue = await WorkQueue.connect(f"nats://127.0.0.1:{nats.port}")
        server, port = await start(queue, store, 0, security=security())
        client = tls_client(port)
        job = await asyncio.to_thread(client.submit, [videos / "people_1080p_vfr_2.6s.mp4"], ACTIONS)
        s3.stop()
        began = time.monotonic()
        ctx = Context.create(queue, store, tmp_path / "cache")
        stop = asyncio.Event()
        worker = asyncio.create_task(
            queue.work(
                "ingest",
                lambda p: HANDLERS["ingest"](ctx, p),
                stop,
                POLICY,
                0.2,
                on_dead=lambda d: record_failure(queue, d),
            )
        )
        final = await asyncio.to_thread(client.wait, job.job_id, common_pb2.JOB_STATE_AWAITING_LABELS)
        elapsed = time.monotonic() - began
        stop.set()
        await worker
        client.close()
        await server.stop(1)
        await queue.close()
        return final, elapsed

    try:
        job, elapsed = asyncio.run(asyncio.wait_for(main(), 120))
    finally:
        s3.stop()
        nats.stop()
    assert job.state == common_pb2.JOB_STATE_FAILED
    assert job.error.stage == "ingest" and f"S3 server 127.0.0.1:{s3.port} unreachable" in job.error.message
    assert elapsed < 60


def test_cli_remote_mode(stack, videos: Path, tmp_path: Path, capsys) -> None:
    from avaforge.cli import main

    client, _, _ = stack
    creds = credentials()  # the CLI connects over TLS with the CA and alice's token, as flags
    remote = ["remote", "--server", client.target, "--ca", str(creds.ca), "--token", creds.tokens["alice"]]
    actions = tmp_path / "actions.yaml"
    actions.write_text("groups:\n  body: [stand, walk]\n")
    video = str(videos / "people_1080p_vfr_2.6s.mp4")
    assert main([*remote, "submit", video, "--actions", str(actions), "--watch"]) == 0
    out = capsys.readouterr().out.splitlines()
    job_id = out[0]
    assert "awaiting_labels" in out[-1] and "ingest 1/1" in out[-1]
    assert main([*remote, "via", job_id, "--out", str(tmp_path / "via")]) == 0
    assert (tmp_path / "via" / "people_1080p_vfr_2.6s.zip").exists()
    assert main([*remote, "jobs"]) == 0
    assert job_id in capsys.readouterr().out


def test_gateway_metrics_and_restart_keep_jobs(s3, videos: Path, tmp_path: Path) -> None:
    """Gateway RPCs are counted for Prometheus, and a new gateway process answers for jobs of the old one."""
    import urllib.request

    from devstack.servers import free_port

    _, store = s3
    nats = nats_server(tmp_path / "nats").start()
    mport = free_port()

    async def main() -> tuple[str, str]:
        queue = await WorkQueue.connect(f"nats://127.0.0.1:{nats.port}")
        server, port = await start(queue, store, 0, metrics_port=mport, security=security())
        client = tls_client(port)
        job = await asyncio.to_thread(client.submit, [videos / "people_1080p_vfr_2.6s.mp4"], ACTIONS)
        await server.stop(1)  # the gateway goes away; its jobs live in JetStream KV
        server, port = await start(queue, store, 0, metrics_port=0, security=security())
        again = await asyncio.to_thread(tls_client(port).get, job.job_id)
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics").read()
        )
        await server.stop(1)
        await queue.close()
        return again.job_id == job.job_id, metrics.decode()

    try:
        same, metrics = asyncio.run(asyncio.wait_for(main(), 120))
    finally:
        nats.stop()
    assert same
    assert 'avaforge_requests_total{rpc="SubmitJob",service="gateway"} 1.0' in metrics
    assert 'avaforge_request_seconds_count{rpc="UploadVideo",service="gateway"}' in metrics
