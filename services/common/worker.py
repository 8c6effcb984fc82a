"""Queue workers: the context a stage handler gets, and the loop that feeds it work items from JetStream.

A handler is ``async def handle(ctx, item)``; it fetches its inputs (artifacts in S3, facts in KV), calls its
step in ``avaforge.steps``, stores its outputs and records them (``jobs.complete``), which queues the stages
that ``avaforge.pipeline`` says come next. Explicit ack after that, so a worker that dies mid-item loses
nothing: the item goes to another worker after the ack wait.

While an item runs the queue reports progress to JetStream every third of the stage's ack wait, so a live
worker keeps its item however long it takes; the ack wait only bounds how long an item of a worker that died
waits for another worker. A cancelled job's items are dropped before they start and stopped while they run
(``job_cancelled``; ffmpeg is killed, detection and tracking stop between frames, training between
iterations); outputs already stored stay (content-addressed, maybe shared with other jobs), nothing further
is queued.

Environment: AVAFORGE_NATS_URL, AVAFORGE_S3_* (``S3Store.from_env``), AVAFORGE_CACHE_DIR,
AVAFORGE_ACK_WAIT_S_<STAGE> (per stage, default ``ACK_WAIT_S``), AVAFORGE_ACK_WAIT_S (every stage at once),
AVAFORGE_MAX_DELIVER (4), AVAFORGE_METRICS_PORT (0 = off here), AVAFORGE_GRPC_PORT (gRPC health for probes;
0 = off). SIGTERM: finish the current item, stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from avaforge.detection import Detector
from avaforge.queue import RetryPolicy, WorkQueue
from avaforge.settings import PipelineSettings
from avaforge.storage import ArtifactStore, S3Store
from avaforge.tracking.embedder import Embedder, make_embedder
from services.common import auth, jobs, runtime
from services.common.artifacts import LocalCache
from services.common.cache import cache_dir
from services.common.deployment import DetectorPool, deployed_embedder


@dataclass
class Context:
    """What every handler may use: the queue (work and job facts), the store, a local cache of artifacts
    by digest, and models loaded once per process."""

    queue: WorkQueue
    store: ArtifactStore
    cache: LocalCache
    detectors: DetectorPool = field(default_factory=DetectorPool)
    _embedders: dict[str, Embedder] = field(default_factory=dict)

    @classmethod
    def create(cls, queue: WorkQueue, store: ArtifactStore, cache_root: Path) -> Context:
        return cls(queue, store, LocalCache(store, cache_root))

    def detector(self, s: PipelineSettings) -> Detector:
        return self.detectors.get(s.detect)

    def embedder(self, s: PipelineSettings) -> Embedder:  # the deployment's, never the job's
        kind = deployed_embedder()
        if kind not in self._embedders:
            self._embedders[kind] = make_embedder(kind)
        return self._embedders[kind]


Handler = Callable[[Context, dict[str, Any]], Awaitable[None]]


# Seconds an item waits, after its worker stopped reporting progress (it died), before another worker gets
# it. Live workers report every third of it, so it need not cover an item's run time, only the longest stall
# of a worker's event loop (a blocking S3 call retried, a GC pause); the heavy stages get more headroom.
ACK_WAIT_S = {
    "ingest": 120.0,
    "detect": 60.0,
    "track": 60.0,
    "proposals": 60.0,
    "via": 60.0,
    "via_import": 60.0,
    "dataset": 120.0,
    "train": 300.0,
}


def job_key(stage: str, job: str) -> str:
    """The KV key of the job an item belongs to: a training job (``train.<id>``) or a pipeline job."""
    return f"train.{job}" if stage == "train" else job


async def record_failure(queue: WorkQueue, dead: dict[str, Any]) -> None:
    """A dead-lettered item fails its job with the stage's error message (a training job too: WatchTraining
    then shows FAILED, never RUNNING)."""
    payload = dead.get("payload", {})
    if payload.get("job"):
        where = payload.get("filename") or payload.get("clip_id") or ""
        await jobs.put(
            queue,
            f"{job_key(dead['stage'], payload['job'])}.error",
            {"stage": dead["stage"], "message": dead["error"], "where": where},
        )


async def job_cancelled(queue: WorkQueue, stage: str, item: dict[str, Any]) -> bool:
    """Whether the item's job was cancelled (CancelJob / CancelTraining set the flag in its spec)."""
    if not item.get("job"):
        return False
    spec = await jobs.get(queue, job_key(stage, item["job"])) or {}
    return bool(spec.get("cancelled") or spec.get("cancel"))


def policy_from_env(stage: str = "") -> RetryPolicy:
    """The retry policy of ``stage``: its ack wait from ``ACK_WAIT_S`` unless the environment overrides it."""
    ack_wait = os.environ.get(f"AVAFORGE_ACK_WAIT_S_{stage.upper()}") or os.environ.get("AVAFORGE_ACK_WAIT_S")
    return RetryPolicy(
        max_deliver=int(os.environ.get("AVAFORGE_MAX_DELIVER", "4")),
        ack_wait_s=float(ack_wait or ACK_WAIT_S.get(stage, 60.0)),
    )


async def work(
    ctx: Context,
    handlers: dict[str, Handler],
    stop: asyncio.Event,
    policy: RetryPolicy | Callable[[str], RetryPolicy],
    metrics: runtime.Metrics | None = None,
    fetch_timeout_s: float = 0.5,
    queue_of: Callable[[str], WorkQueue] | None = None,
    cancel_poll_s: float = 1.0,
) -> list[int]:
    """Run every stage of ``handlers`` until ``stop`` is set; returns the items acked per stage.
    ``policy`` is one for all stages or a function of the stage; ``queue_of`` gives a stage its own connection
    (tests run several workers of one stage in a process)."""
    log = logging.getLogger("avaforge.worker")

    def bind(stage: str, handler: Handler):  # type: ignore[no-untyped-def]
        async def handle(item: dict[str, Any]) -> None:
            try:
                await handler(ctx, item)
            except Exception:
                if metrics:
                    metrics.items.labels(stage, "failed").inc()
                raise
            if metrics:
                metrics.items.labels(stage, "done").inc()
            log.info(
                f"{stage} item done",
                extra={"job_id": item.get("job", ""), "clip_id": item.get("clip_id", "")},
            )

        return handle

    def on_dead(dead: dict[str, Any]) -> Awaitable[None]:
        return record_failure(ctx.queue, dead)

    def cancelled_in(stage: str) -> Callable[[dict[str, Any]], Awaitable[bool]]:
        async def cancelled(item: dict[str, Any]) -> bool:
            if not await job_cancelled(ctx.queue, stage, item):
                return False
            if stage == "train":  # the training job ends CANCELLED even if it never started
                await jobs.put(ctx.queue, f"train.{item['job']}.cancelled", {"at": None})
            return True

        return cancelled

    return list(
        await asyncio.gather(
            *(
                (queue_of(stage) if queue_of else ctx.queue).work(
                    stage,
                    bind(stage, handler),
                    stop,
                    policy(stage) if callable(policy) else policy,
                    fetch_timeout_s,
                    on_dead,
                    cancelled_in(stage),
                    cancel_poll_s,
                )
                for stage, handler in handlers.items()
            )
        )
    )


async def run(service: str, handlers: dict[str, Handler], stages: list[str]) -> int:
    """A worker process of ``service`` for ``stages`` (default: all of its stages)."""
    unknown = sorted(set(stages) - set(handlers))
    if unknown:
        print(f"{service} runs stages {sorted(handlers)}; unknown: {unknown}")
        return 2
    chosen = {s: handlers[s] for s in stages or handlers}
    runtime.configure_logging()
    log = logging.getLogger("avaforge.worker")
    metrics = runtime.Metrics.create()
    if port := int(os.environ.get("AVAFORGE_METRICS_PORT", "0")):
        start_http_server(port, registry=metrics.registry)
    health = None
    if grpc_port := int(os.environ.get("AVAFORGE_GRPC_PORT", "0")):  # health + reflection for probes
        health = await runtime.serve(f"{service}-worker", [], grpc_port, metrics_port=0, metrics=metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (runtime.signal.SIGTERM, runtime.signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    queue = await WorkQueue.connect(auth.nats_url())  # this service's NATS user, when set
    with cache_dir(service) as cache:
        ctx = Context.create(queue, S3Store.from_env(), cache)
        log.info(f"{service} worker for {sorted(chosen)} started")
        try:
            done = await work(ctx, chosen, stop, policy_from_env, metrics)
        finally:
            if health is not None:
                await health.stop(5)
    await queue.close()
    log.info(f"{service} worker stopped after {sum(done)} items")
    return 0
