"""``python -m services.worker STAGE [STAGE ...]``: a queue worker process for stage services.

Environment: AVAFORGE_NATS_URL, AVAFORGE_S3_* (see avaforge.storage.S3Store.from_env), AVAFORGE_CACHE_DIR,
AVAFORGE_ACK_WAIT_S (default 60: an item held by a worker that died goes to another after this),
AVAFORGE_MAX_DELIVER (default 4), AVAFORGE_METRICS_PORT (0 = off), AVAFORGE_GRPC_PORT (gRPC health and
reflection for probes; 0 = off). SIGTERM: finish the current item, stop.
Horizontal scaling = more processes of the same stage (e.g. ``detect``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from prometheus_client import start_http_server

from avaforge.queue import RetryPolicy, WorkQueue
from avaforge.storage import S3Store
from services.common.cache import cache_dir
from services.common.server import Metrics, configure_logging, serve
from services.pipeline_workers import HANDLERS as PIPELINE
from services.pipeline_workers import Context, record_failure
from services.trainer.service import train_item

HANDLERS = {**PIPELINE, "train": train_item}


async def run(stages: list[str]) -> int:
    unknown = sorted(set(stages) - set(HANDLERS))
    if not stages or unknown:
        print(
            f"usage: python -m services.worker {'|'.join(HANDLERS)} ... (unknown: {unknown})", file=sys.stderr
        )
        return 2
    configure_logging()
    with cache_dir("worker") as cache:
        return await _work(stages, cache)


async def _work(stages: list[str], cache: Path) -> int:
    log = logging.getLogger("avaforge.worker")
    metrics = Metrics.create("worker")
    port = int(os.environ.get("AVAFORGE_METRICS_PORT", "0"))
    if port:
        start_http_server(port, registry=metrics.registry)
    health = None
    grpc_port = int(os.environ.get("AVAFORGE_GRPC_PORT", "0"))
    if grpc_port:  # gRPC health + reflection for liveness/readiness probes
        health = serve("worker", lambda _server: None, [], port=grpc_port, metrics_port=0)
    store = S3Store.from_env()
    queue = await WorkQueue.connect(os.environ.get("AVAFORGE_NATS_URL", "nats://127.0.0.1:4222"))
    ctx = Context.create(queue, store, cache)
    policy = RetryPolicy(
        max_deliver=int(os.environ.get("AVAFORGE_MAX_DELIVER", "4")),
        ack_wait_s=float(os.environ.get("AVAFORGE_ACK_WAIT_S", "60")),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def handler(stage: str):  # type: ignore[no-untyped-def]
        async def handle(payload: dict) -> None:
            try:
                await HANDLERS[stage](ctx, payload)
            except Exception:
                metrics.items.labels(stage, "failed").inc()
                raise
            metrics.items.labels(stage, "done").inc()
            log.info(
                f"{stage} item done",
                extra={"job_id": payload.get("job", ""), "clip_id": payload.get("clip_id", "")},
            )

        return handle

    log.info(f"worker for {stages} started")
    try:
        done = await asyncio.gather(
            *(
                queue.work(stage, handler(stage), stop, policy, on_dead=lambda d: record_failure(queue, d))
                for stage in stages
            )
        )
    finally:
        if health is not None:
            health.stop(5)
    await queue.close()
    log.info(f"worker stopped after {sum(done)} items")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run(sys.argv[1:])))
