"""Work queue on a real nats-server with JetStream: exactly-once processing, retries, dead letters,
restart of the server mid-work, job state in KV."""

import asyncio
import random
from pathlib import Path

import pytest

from avaforge.formats.errors import FormatError
from avaforge.queue import RetryPolicy, WorkQueue
from devstack.servers import nats_server

FAST = RetryPolicy(max_deliver=3, backoff_s=(0.1, 0.2), ack_wait_s=5)


@pytest.fixture
def server(tmp_path: Path):
    srv = nats_server(tmp_path).start()
    yield srv
    srv.stop()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _drain_with_workers(url: str, stage: str, n_workers: int, handler, until) -> list[int]:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    queues = [await WorkQueue.connect(url) for _ in range(n_workers)]
    tasks = [asyncio.create_task(q.work(stage, handler, stop, FAST, fetch_timeout_s=0.2)) for q in queues]
    while not await until():
        await asyncio.sleep(0.05)
    stop.set()
    counts = await asyncio.gather(*tasks)
    for q in queues:
        await q.close()
    return counts


def test_items_are_processed_exactly_once_by_competing_workers(server) -> None:
    url = f"nats://127.0.0.1:{server.port}"
    seen: list[int] = []

    async def handler(payload):  # type: ignore[no-untyped-def]
        await asyncio.sleep(random.random() * 0.01)
        seen.append(payload["i"])

    async def main():  # type: ignore[no-untyped-def]
        q = await WorkQueue.connect(url)
        for i in range(30):
            await q.submit("detect", {"i": i}, msg_id=f"job1-{i}")
        await q.submit("detect", {"i": 0}, msg_id="job1-0")  # a re-submission: de-duplicated
        counts = await _drain_with_workers(url, "detect", 3, handler, lambda: _equals(len(seen), 30))
        assert await q.pending("detect") == 0
        await q.close()
        return counts

    counts = run(main())
    assert sorted(seen) == list(range(30)) and sum(counts) == 30


async def _equals(a: int, b: int) -> bool:
    return a == b


def test_failures_are_retried_then_dead_lettered_and_poison_at_once(server) -> None:
    url = f"nats://127.0.0.1:{server.port}"
    attempts: dict[str, int] = {}

    async def handler(payload):  # type: ignore[no-untyped-def]
        attempts[payload["kind"]] = attempts.get(payload["kind"], 0) + 1
        if payload["kind"] == "flaky" and attempts["flaky"] < 2:
            raise ConnectionError("S3 not reachable yet")
        if payload["kind"] == "broken":
            raise RuntimeError("detector crashed")
        if payload["kind"] == "poison":
            raise FormatError("not a readable video", "clip.mp4")

    async def main():  # type: ignore[no-untyped-def]
        q = await WorkQueue.connect(url)
        for kind in ("flaky", "broken", "poison", "fine"):
            await q.submit("frames", {"kind": kind}, msg_id=kind)

        async def settled() -> bool:
            return attempts.get("broken", 0) >= 3 and await q.pending("frames") == 0

        await _drain_with_workers(url, "frames", 1, handler, settled)
        dead = await q.dead_letters("frames")
        await q.close()
        return dead

    dead = {d["payload"]["kind"]: d for d in run(main())}
    # flaky fails once then succeeds; broken is tried FAST.max_deliver = 3 times; poison (FormatError) and
    # fine are handled once
    assert attempts == {"flaky": 2, "broken": 3, "poison": 1, "fine": 1}
    assert set(dead) == {"broken", "poison"}
    assert dead["broken"]["error"] == "RuntimeError: detector crashed" and dead["broken"]["deliveries"] == 3
    assert dead["poison"]["poison"] and "clip.mp4: not a readable video" in dead["poison"]["error"]


def test_work_and_job_state_survive_a_nats_restart(server) -> None:
    url = f"nats://127.0.0.1:{server.port}"
    seen: list[int] = []

    async def handler(payload):  # type: ignore[no-untyped-def]
        seen.append(payload["i"])

    async def main():  # type: ignore[no-untyped-def]
        q = await WorkQueue.connect(url)
        await q.jobs.put("job-7", b'{"stage": "detect"}')  # the job facts bucket (KV) is on disk too
        for i in range(10):
            await q.submit("track", {"i": i}, msg_id=f"t-{i}")
        await q.close()
        server.stop()  # SIGTERM: JetStream data is on disk
        server.start()
        q = await WorkQueue.connect(url)
        assert (await q.jobs.get("job-7")).value == b'{"stage": "detect"}'
        await _drain_with_workers(url, "track", 2, handler, lambda: _equals(len(seen), 10))
        await q.close()

    run(main())
    assert sorted(seen) == list(range(10))


def test_an_item_slower_than_ack_wait_is_not_redelivered_while_its_worker_lives(server) -> None:
    """The worker reports progress every third of ack_wait, so a 2.5 s item under a 1 s ack_wait is handled
    once although a second worker is waiting for work."""
    url = f"nats://127.0.0.1:{server.port}"
    slow = RetryPolicy(max_deliver=3, backoff_s=(0.1,), ack_wait_s=1)
    handled: list[int] = []

    async def handler(payload):  # type: ignore[no-untyped-def]
        await asyncio.sleep(2.5)
        handled.append(payload["i"])

    async def main():  # type: ignore[no-untyped-def]
        q = await WorkQueue.connect(url)
        await q.submit("track", {"i": 1}, msg_id="slow-1")
        stop = asyncio.Event()
        queues = [await WorkQueue.connect(url) for _ in range(2)]
        tasks = [
            asyncio.create_task(w.work("track", handler, stop, slow, fetch_timeout_s=0.2)) for w in queues
        ]
        while not handled:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # past another ack_wait: a redelivery would now be in a handler
        stop.set()
        await asyncio.gather(*tasks)
        for w in (q, *queues):
            await w.close()

    run(main())
    assert handled == [1]
