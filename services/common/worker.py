"""Queue workers: the context a stage handler gets, and the loop that feeds it work items from JetStream.

A handler is ``async def handle(ctx, item)``; it fetches its inputs (artifacts in S3, facts in KV), calls its
step in ``avaforge.steps``, stores its outputs and records them (``jobs.complete``), which queues the stages
that ``avaforge.pipeline`` says come next. Explicit ack after that, so a worker that dies mid-item loses
nothing: the item goes to another worker after the ack wait.

Environment: AVAFORGE_NATS_URL, AVAFORGE_S3_* (``S3Store.from_env``), AVAFORGE_CACHE_DIR,
AVAFORGE_ACK_WAIT_S (60), AVAFORGE_MAX_DELIVER (4), AVAFORGE_METRICS_PORT (0 = off here),
AVAFORGE_GRPC_PORT (gRPC health for probes; 0 = off). SIGTERM: finish the current item, stop.
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
from services.common.deployment import DetectorPool


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

    def embedder(self, s: PipelineSettings) -> Embedder:
        if s.track.embedder not in self._embedders:
            self._embedders[s.track.embedder] = make_embedder(s.track.embedder)
        return self._embedders[s.track.embedder]


Handler = Callable[[Context, dict[str, Any]], Awaitable[None]]


async def record_failure(queue: WorkQueue, dead: dict[str, Any]) -> None:
    """A dead-lettered item fails its job with the stage's error message."""
    payload = dead.get("payload", {})
    if payload.get("job"):
        where = payload.get("filename") or payload.get("clip_id") or ""
        await jobs.put(
            queue,
            f"{payload['job']}.error",
            {"stage": dead["stage"], "message": dead["error"], "where": where},
        )


def policy_from_env() -> RetryPolicy:
    return RetryPolicy(
        max_deliver=int(os.environ.get("AVAFORGE_MAX_DELIVER", "4")),
        ack_wait_s=float(os.environ.get("AVAFORGE_ACK_WAIT_S", "60")),
    )


async def work(
    ctx: Context,
    handlers: dict[str, Handler],
    stop: asyncio.Event,
    policy: RetryPolicy,
    metrics: runtime.Metrics | None = None,
    fetch_timeout_s: float = 0.5,
    queue_of: Callable[[str], WorkQueue] | None = None,
) -> list[int]:
    """Run every stage of ``handlers`` until ``stop`` is set; returns the items acked per stage.
    ``queue_of`` gives a stage its own connection (tests run several workers of one stage in a process)."""
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

    return list(
        await asyncio.gather(
            *(
                (queue_of(stage) if queue_of else ctx.queue).work(
                    stage, bind(stage, handler), stop, policy, fetch_timeout_s, on_dead
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
            done = await work(ctx, chosen, stop, policy_from_env(), metrics)
        finally:
            if health is not None:
                await health.stop(5)
    await queue.close()
    log.info(f"{service} worker stopped after {sum(done)} items")
    return 0
