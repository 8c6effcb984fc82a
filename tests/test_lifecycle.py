"""Job lifecycle: DeleteJob removes a job's facts, the artifacts no other job shares and its workbench files;
job facts and dead letters have retention limits; `remote jobs` shows owner, age and state; `remote watch`
survives a gateway restart; a rebuilt dataset replaces the old one in one atomic exchange."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import pytest

from avaforge.queue import DEAD_STREAM, JOBS_BUCKET, WorkQueue, dead_subject
from avaforge.stages.dataset import _exchange, swap_in
from avaforge.v1 import gateway_pb2
from avaforge.workbench.revisions import S3Revisions, job_prefix
from devstack.servers import nats_server
from services.common import jobs
from services.common.convert import ref_from_proto
from tests.gateway_stack import GatewayStack

ACTIONS = {"groups": {"body": ["stand", "walk"]}}
VIDEO = "people_1080p_vfr_2.6s.mp4"  # tests/media.py: the shortest test video


@pytest.fixture
def nats(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = nats_server(tmp_path / "nats").start()
    yield server
    server.stop()


def test_delete_job_keeps_shared_artifacts_and_cli_lists_owner_age_state(
    s3, tmp_path: Path, videos: Path, capsys
) -> None:
    from avaforge.cli import main

    _, store = s3
    gw = GatewayStack(store, tmp_path, secure=False)
    client = gw.client()
    server = f"127.0.0.1:{gw.port}"
    try:
        a = client.submit([videos / VIDEO], ACTIONS)  # no workers: both stay queued
        b = client.submit([videos / VIDEO], ACTIONS)  # the same bytes: the same content-addressed video
        video = ref_from_proto(client.upload_video(videos / VIDEO))
        # a gateway without TLS and tokens (loopback only) takes every caller as the admin "local"
        assert a.created > time.time() - 60 and a.owner == "local"
        assert main(["remote", "--server", server, "jobs"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["JOB", "OWNER", "AGE", "STATE", "PROGRESS"]
        row = next(line.split() for line in lines if line.startswith(a.job_id))
        assert row[1] == "local" and row[2].endswith("s") and row[3] == "queued"
        with pytest.raises(grpc.RpcError) as exc:  # running work would write its facts back
            client.delete(a.job_id)
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "cancel" in exc.value.details()
        client.stub.CancelJob(gateway_pb2.GetJobRequest(job_id=a.job_id))
        assert main(["remote", "--server", server, "delete", a.job_id]) == 0
        # the spec is A's only fact; its one artifact (the video) is B's too, so it stays
        printed = capsys.readouterr().out
        assert "1 facts, 0 artifacts (1 kept: shared with other jobs), 0 workbench files" in printed
        with pytest.raises(grpc.RpcError) as exc:
            client.get(a.job_id)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert store.exists(video)
        client.stub.CancelJob(gateway_pb2.GetJobRequest(job_id=b.job_id))
        # B's workbench files, as the annotate service writes them (revisions of a clip and of a review pass);
        # another job's stay
        mine, other = S3Revisions(store, job_prefix(b.job_id)), S3Revisions(store, job_prefix("0123456789ab"))
        for stream in ("clip-1", "clip-1.review"):
            mine.save(stream, 0, b"{}", "alice", "set_labels")
        other.save("clip-1", 0, b"{}", "alice", "set_labels")
        prefix = job_prefix(b.job_id) + "/"
        saved = list(store.client.list_objects(store.bucket, prefix=prefix, recursive=True))
        assert len(saved) == 4  # per stream its revision and its history entry
        done = client.delete(b.job_id)
        assert (done.facts_deleted, done.artifacts_deleted, done.artifacts_shared) == (1, 1, 0)
        assert done.workbench_files_deleted == 4
        assert not store.exists(video)
        assert mine.head("clip-1") == mine.head("clip-1.review") == 0 and mine.history("clip-1") == []
        assert other.head("clip-1") == 1
        listed = store.client.list_objects(store.bucket, prefix=prefix, recursive=True)
        assert [o.object_name for o in listed] == []
        assert b.job_id not in {j.job_id for j in client.jobs()}
    finally:
        client.close()
        gw.close()


def test_remote_watch_survives_a_gateway_restart(s3, tmp_path: Path, videos: Path, capsys) -> None:
    from avaforge.cli import main

    _, store = s3
    gw = GatewayStack(store, tmp_path, secure=False)
    client = gw.client()
    try:
        job = client.submit([videos / VIDEO], ACTIONS)  # no workers: queued until cancelled
        result: list[int] = []
        watcher = threading.Thread(
            target=lambda: result.append(
                main(["remote", "--server", f"127.0.0.1:{gw.port}", "watch", job.job_id])
            )
        )
        watcher.start()
        time.sleep(1.5)
        gw.stop_gateway(0)  # the watch stream breaks: UNAVAILABLE
        time.sleep(3)  # several reconnect attempts fail meanwhile
        assert watcher.is_alive()
        gw.start_gateway()  # a new gateway on the same address: the watch resumes
        time.sleep(2)
        # this client's channel may still be in its reconnect backoff from the outage: wait for it
        client.stub.CancelJob(gateway_pb2.GetJobRequest(job_id=job.job_id), wait_for_ready=True, timeout=30)
        watcher.join(60)
        assert not watcher.is_alive() and result == [1]  # cancelled: the watch ends, exit code 1
        out = capsys.readouterr().out.splitlines()
        assert "queued" in out[0] and "cancelled" in out[-1]
    finally:
        client.close()
        gw.close()


def test_retention_limits_drop_old_job_facts_and_extra_dead_letters(
    nats, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"nats://127.0.0.1:{nats.port}"

    async def main() -> tuple[int, object, float, int]:
        queue = await WorkQueue.connect(url)  # created with the defaults
        await jobs.put(queue, "0123456789ab", {"job_id": "0123456789ab"})
        monkeypatch.setenv("AVAFORGE_JOBS_MAX_AGE_S", "1")
        monkeypatch.setenv("AVAFORGE_DEAD_MAX_MSGS", "3")
        again = await WorkQueue.connect(url)  # the next process start applies the new limits
        for i in range(5):
            await again.js.publish(dead_subject("ingest"), f'{{"n": {i}}}'.encode())
        kept = (await again.js.stream_info(DEAD_STREAM)).state.messages
        await asyncio.sleep(2.5)
        gone = await jobs.get(again, "0123456789ab")
        monkeypatch.delenv("AVAFORGE_JOBS_MAX_AGE_S")
        monkeypatch.delenv("AVAFORGE_DEAD_MAX_MSGS")
        third = await WorkQueue.connect(url)  # back to the defaults
        age = (await third.js.stream_info(f"KV_{JOBS_BUCKET}")).config.max_age
        msgs = (await third.js.stream_info(DEAD_STREAM)).config.max_msgs
        for q in (queue, again, third):
            await q.close()
        return kept, gone, age, msgs

    kept, gone, age, msgs = asyncio.run(main())
    assert kept == 3  # 5 dead letters, the 2 oldest dropped
    assert gone is None  # written 2.5 s before, max age 1 s
    assert age == 30 * 86400 and msgs == 100_000  # the defaults of avaforge/retention.py


def test_rebuilt_dataset_replaces_the_old_one_in_one_step(tmp_path: Path) -> None:
    out, new = tmp_path / "dataset", tmp_path / ".dataset.partial"
    for folder, tag in ((out, "old"), (new, "new")):
        (folder / "rawframes").mkdir(parents=True)
        for i in range(3000):  # removing these takes long enough for a reader to see a gap, if there is one
            (folder / "rawframes" / f"img_{i:05d}.jpg").write_text(tag)
        (folder / "annotations").mkdir()
        (folder / "annotations" / "train.csv").write_text(tag)
    assert _exchange(tmp_path / "x-missing", tmp_path / "y-missing") is False
    gaps: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if not (out / "annotations" / "train.csv").exists():
                gaps.append(1)

    watcher = threading.Thread(target=reader)
    watcher.start()
    time.sleep(0.05)
    swap_in(new, out)
    time.sleep(0.05)
    stop.set()
    watcher.join()
    assert gaps == []
    assert (out / "annotations" / "train.csv").read_text() == "new"
    assert not new.exists() and not (tmp_path / ".dataset.old").exists()
    assert len(list((out / "rawframes").iterdir())) == 3000


def test_a_watch_outlasts_nats_timeouts_then_gives_up_after_its_patience() -> None:
    """A busy NATS answers a KV read with a timeout (faked: a real server cannot be made that slow on
    demand): the watch asks again on its next poll; only timeouts for longer than its patience end it."""
    import nats.errors

    from avaforge.v1 import common_pb2

    answers = iter([None, None, common_pb2.JOB_STATE_RUNNING, None, common_pb2.JOB_STATE_SUCCEEDED])

    async def flaky_nats_read() -> common_pb2.Job:
        state = next(answers)
        if state is None:
            raise nats.errors.TimeoutError
        return common_pb2.Job(job_id="0123456789ab", state=state)

    async def states(current, patience_s: float) -> list[int]:  # type: ignore[no-untyped-def]
        return [job.state async for job in jobs.watch(current, poll_s=0.01, patience_s=patience_s)]

    assert asyncio.run(states(flaky_nats_read, 5)) == [
        common_pb2.JOB_STATE_RUNNING,
        common_pb2.JOB_STATE_SUCCEEDED,
    ]

    async def always_times_out() -> common_pb2.Job:
        raise nats.errors.TimeoutError

    began = time.monotonic()
    with pytest.raises(nats.errors.TimeoutError):
        asyncio.run(states(always_times_out, 0.2))
    assert time.monotonic() - began < 5
