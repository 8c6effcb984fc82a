"""Long work done once, on a real nats-server and the real ffmpeg: an item running five times its ack wait is
delivered once; a redelivery of an item running in this process is not started again; an item whose workers
all died is dead-lettered; ffmpeg runs end at their time limit or at a cancel, with the process gone."""

import asyncio
import logging
import threading
import time
from pathlib import Path

import ffmpeg
import pytest

from avaforge import cancel
from avaforge.queue import WORK_STREAM, RetryPolicy, WorkQueue, running_here
from avaforge.video import ffmpeg_run
from devstack.servers import nats_server


@pytest.fixture
def server(tmp_path: Path):
    srv = nats_server(tmp_path).start()
    yield srv
    srv.stop()


def run(coro, timeout_s: float = 60):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def _workers(url: str, stage: str, n: int, handler, policy: RetryPolicy, until) -> dict:  # type: ignore[no-untyped-def]
    """``n`` competing workers of ``stage`` (each its own connection, all in this process) until ``until()``;
    then the stage consumer's counters."""
    stop = asyncio.Event()
    queues = [await WorkQueue.connect(url) for _ in range(n)]
    tasks = [asyncio.create_task(q.work(stage, handler, stop, policy, fetch_timeout_s=0.2)) for q in queues]
    while not await until():
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    info = await queues[0].js.consumer_info(WORK_STREAM, stage)
    for q in queues:
        await q.close()
    return {
        "deliveries": info.delivered.consumer_seq,  # every delivery, redeliveries included
        "redelivered": info.num_redelivered,  # redelivered and not yet acked
        "ack_pending": info.num_ack_pending,
        "pending": info.num_pending,
    }


def _taken(caplog: pytest.LogCaptureFixture, stage: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{stage} item taken")]


def test_an_item_running_five_times_its_ack_wait_is_delivered_once(server, caplog) -> None:
    """ack_wait 1 s, the item works 5 s in a thread (as handlers do), a second worker waits for work: the
    progress reports keep the item with its worker; it is delivered once, handled once, acked."""
    caplog.set_level(logging.INFO, "avaforge.queue")
    url = f"nats://127.0.0.1:{server.port}"
    policy = RetryPolicy(max_deliver=3, backoff_s=(0.1,), ack_wait_s=1)
    handled: list[int] = []

    async def handler(payload):  # type: ignore[no-untyped-def]
        await asyncio.to_thread(time.sleep, 5)
        handled.append(payload["i"])

    async def main() -> dict:
        q = await WorkQueue.connect(url)
        await q.submit("ingest", {"i": 1}, msg_id="long-1")

        async def done() -> bool:
            return bool(handled) and await q.pending("ingest") == 0

        counters = await _workers(url, "ingest", 2, handler, policy, done)
        await q.close()
        return counters

    counters = run(main())
    assert handled == [1]
    assert counters == {"deliveries": 1, "redelivered": 0, "ack_pending": 0, "pending": 0}
    taken = _taken(caplog, "ingest")
    assert len(taken) == 1 and "msg_id=long-1 delivery=1 " in taken[0], taken


def test_a_redelivery_of_an_item_running_here_is_not_started_again(server, caplog) -> None:
    """Progress reports off and ack_wait 1 s: JetStream redelivers the 3.5 s item to the other worker of this
    process while it runs; the redelivery joins the running execution (not started), which acks the item."""
    caplog.set_level(logging.INFO, "avaforge.queue")
    url = f"nats://127.0.0.1:{server.port}"
    policy = RetryPolicy(max_deliver=10, backoff_s=(0.1,), ack_wait_s=1, heartbeat=False)
    started: list[int] = []
    finished: list[int] = []

    async def handler(payload):  # type: ignore[no-untyped-def]
        started.append(payload["i"])
        await asyncio.to_thread(time.sleep, 3.5)
        finished.append(payload["i"])

    async def main() -> dict:
        q = await WorkQueue.connect(url)
        await q.submit("track", {"i": 7}, msg_id="dup-7")

        async def settled() -> bool:
            return bool(finished) and await q.pending("track") == 0

        counters = await _workers(url, "track", 2, handler, policy, settled)
        await q.close()
        return counters

    counters = run(main())
    assert started == [7] and finished == [7]
    assert counters["deliveries"] >= 2  # it was redelivered meanwhile (every 1 s: about 3 times)...
    assert counters["ack_pending"] == 0 and counters["pending"] == 0  # ...and is acked, not pending again
    dups = [r.getMessage() for r in caplog.records if "duplicate delivery" in r.getMessage()]
    assert dups and all("msg_id=dup-7" in d for d in dups)
    assert len(_taken(caplog, "track")) == 1 and running_here() == 0


def test_cancel_before_and_during_an_item_acks_and_drops_it(server, caplog) -> None:
    """A cancelled job's queued item is acked unhandled; a running one is stopped at its next check."""
    caplog.set_level(logging.INFO, "avaforge.queue")
    url = f"nats://127.0.0.1:{server.port}"
    policy = RetryPolicy(max_deliver=3, backoff_s=(0.1,), ack_wait_s=5)
    cancelled_jobs: set[str] = {"gone"}
    ran: list[str] = []
    checks_after_cancel: list[float] = []

    async def handler(payload):  # type: ignore[no-untyped-def]
        ran.append(payload["job"])

        def work() -> None:  # a stage's frame loop in a worker thread
            for _ in range(200):
                time.sleep(0.05)
                if cancel.requested():
                    checks_after_cancel.append(time.monotonic())
                cancel.check("frame loop")

        await asyncio.to_thread(work)

    async def is_cancelled(payload) -> bool:  # type: ignore[no-untyped-def]
        return payload["job"] in cancelled_jobs

    async def main() -> dict:
        q = await WorkQueue.connect(url)
        await q.submit("via", {"job": "gone"}, msg_id="gone")
        await q.submit("via", {"job": "live"}, msg_id="live")
        stop = asyncio.Event()
        worker = await WorkQueue.connect(url)
        task = asyncio.create_task(
            worker.work("via", handler, stop, policy, 0.2, cancelled=is_cancelled, cancel_poll_s=0.2)
        )
        while "live" not in ran:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        cancelled_jobs.add("live")
        at = time.monotonic()
        while await q.pending("via"):
            await asyncio.sleep(0.05)
        stopped_after = time.monotonic() - at
        stop.set()
        acked = await task
        info = await q.js.consumer_info(WORK_STREAM, "via")
        for c in (q, worker):
            await c.close()
        return {"acked": acked, "stopped_after": stopped_after, "ack_pending": info.num_ack_pending}

    out = run(main())
    assert ran == ["live"]  # "gone" never reached the handler
    assert out["acked"] == 0 and out["ack_pending"] == 0  # both acked as dropped, not as done
    # the 10 s item stopped within the cancel poll (0.2 s) + a frame (0.05 s) + the queue's ack; 2 s is ample
    assert out["stopped_after"] < 2 and len(checks_after_cancel) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("item dropped, its job is cancelled: msg_id=gone" in m for m in messages)
    assert any("item stopped and dropped" in m and "msg_id=live" in m for m in messages)


def _ffmpeg_pids(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (a unique output path)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _endless(out: Path) -> ffmpeg.nodes.OutputStream:
    """An ffmpeg run of about 10 minutes of synthetic 720p video (far longer than any limit below)."""
    src = ffmpeg.input("testsrc2=size=1280x720:rate=30:duration=600", f="lavfi")
    return src.output(str(out), vcodec="libx264", preset="medium")


def test_ffmpeg_past_its_time_limit_is_stopped_with_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AVAFORGE_FFMPEG_TIMEOUT_BASE_S", "1")
    monkeypatch.setenv("AVAFORGE_FFMPEG_TIMEOUT_PER_S", "0.5")
    assert ffmpeg_run.timeout_for(4) == 3  # 1 + 0.5 x 4 media seconds
    out = tmp_path / "slow.mp4"
    at = time.monotonic()
    with pytest.raises(ffmpeg_run.FfmpegTimeout) as exc:
        ffmpeg_run.run(_endless(out), "slow.mov", media_s=0)
    assert 1 <= time.monotonic() - at < 5
    assert str(exc.value).startswith("slow.mov: ffmpeg did not finish within 1 s and was stopped")
    assert _ffmpeg_pids(str(out)) == []


def test_default_limits_scale_with_the_media(monkeypatch) -> None:
    monkeypatch.delenv("AVAFORGE_FFMPEG_TIMEOUT_BASE_S", raising=False)
    monkeypatch.delenv("AVAFORGE_FFMPEG_TIMEOUT_PER_S", raising=False)
    # 60 s base + 20 s per media second: a 10 s clip may take 260 s, a probe (no media) 60 s
    assert ffmpeg_run.timeout_for(10) == 260 and ffmpeg_run.timeout_for(0) == 60


def test_a_cancel_kills_a_running_ffmpeg(tmp_path: Path) -> None:
    out = tmp_path / "cancelled.mp4"
    token = threading.Event()
    errors: list[BaseException] = []

    def ingest() -> None:
        with cancel.scope(token):
            try:
                ffmpeg_run.run(_endless(out), "long.mp4", media_s=600)
            except BaseException as exc:
                errors.append(exc)

    worker = threading.Thread(target=ingest)
    worker.start()
    deadline = time.monotonic() + 30
    while not _ffmpeg_pids(str(out)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ffmpeg_pids(str(out)), "ffmpeg did not start"
    token.set()
    at = time.monotonic()
    worker.join(10)
    assert time.monotonic() - at < 2  # noticed within a poll (0.2 s), then killed
    assert len(errors) == 1 and isinstance(errors[0], cancel.Cancelled), errors
    assert "ffmpeg stopped, its job was cancelled (long.mp4)" in str(errors[0])
    assert _ffmpeg_pids(str(out)) == []


def test_outside_a_queue_item_nothing_is_cancelled(videos: Path) -> None:
    """The embedded runner has no token: the checks are no-ops and a probe runs as before."""
    assert not cancel.requested()
    cancel.check()
    info = ffmpeg_run.probe(str(videos / "people_1080p_vfr_2.6s.mp4"))
    assert info["streams"][0]["width"] == 1920  # tests/media.py upscales this crop to 1080p


def test_an_item_whose_every_worker_died_is_dead_lettered_and_fails_its_training_job(server) -> None:
    """max_deliver 1: a worker takes the item and dies (never answers); after ack_wait JetStream gives up on
    it and says so (max-deliveries advisory) to the stage's live worker, which dead-letters it: the training
    job is FAILED in WatchTraining's terms, never RUNNING forever."""
    from avaforge.v1 import common_pb2
    from services.common import jobs
    from services.common.worker import record_failure
    from services.trainer.servicer import training_job

    url = f"nats://127.0.0.1:{server.port}"
    policy = RetryPolicy(max_deliver=1, backoff_s=(0.1,), ack_wait_s=1)
    handled: list[dict] = []

    async def handler(payload):  # type: ignore[no-untyped-def]
        handled.append(payload)

    async def main():  # type: ignore[no-untyped-def]
        q = await WorkQueue.connect(url)
        dataset = {"bucket": "artifacts", "key": "datasets/x.tar", "digest": "0" * 64, "size": 1}
        spec = {"job_id": "0123456789ab", "iters": 10, "preset": "tiny", "dataset": dataset, "cancel": False}
        await jobs.put(q, "train.0123456789ab", spec)  # a spec as StartTraining writes it
        await jobs.put(q, "train.0123456789ab.progress", {"iter": 3})  # it was running when its worker died
        await q.submit("train", {"job": "0123456789ab"}, msg_id="train.0123456789ab")
        from nats.js import api

        config = api.ConsumerConfig(
            durable_name="train",
            ack_policy=api.AckPolicy.EXPLICIT,
            max_deliver=1,
            ack_wait=1,
            filter_subject="avaforge.work.train",
        )
        doomed = await WorkQueue.connect(url)  # the worker that dies holding the item
        sub = await doomed.js.pull_subscribe(
            "avaforge.work.train", durable="train", stream=WORK_STREAM, config=config
        )
        (held,) = await sub.fetch(1, timeout=5)
        assert held.metadata.num_delivered == 1
        await doomed.nc.close()  # gone, without an answer
        stop = asyncio.Event()
        live = await WorkQueue.connect(url)
        task = asyncio.create_task(
            live.work("train", handler, stop, policy, 0.2, on_dead=lambda d: record_failure(live, d))
        )
        for _ in range(100):
            if await jobs.get(q, "train.0123456789ab.error"):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task
        job = await training_job(q, "0123456789ab")
        dead = await q.dead_letters("train")
        stream = await q.js.stream_info(WORK_STREAM)
        for c in (q, live):
            await c.close()
        return job, dead, stream.state.messages

    job, dead, left = run(main())
    assert handled == []  # never delivered again
    assert job.state == common_pb2.JOB_STATE_FAILED
    assert job.error.stage == "train" and "no worker finished it: 1 deliveries" in job.error.message
    assert len(dead) == 1 and dead[0]["payload"] == {"job": "0123456789ab"} and dead[0]["deliveries"] == 1
    assert left == 0  # the lost item is removed from the work stream once recorded
