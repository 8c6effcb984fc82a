"""The entry point every service folder's ``__main__`` calls:

python -m services.<service>                 its gRPC API (health, reflection, metrics)
python -m services.<service> work [STAGE..]  a queue worker for its stages of ``avaforge.pipeline``
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from avaforge.queue import WorkQueue
from avaforge.storage import S3Store
from services.common import auth, runtime, threads, worker
from services.common.cache import cache_dir
from services.common.catalog import by_name


@dataclass
class Deps:
    """What an API servicer may be built from; the queue connects only when asked for."""

    store: S3Store
    cache_root: Path
    _queue: WorkQueue | None = None

    async def queue(self) -> WorkQueue:
        if self._queue is None:
            self._queue = await WorkQueue.connect(auth.nats_url())  # this service's NATS user
        return self._queue


MakeApi = Callable[[Deps], Awaitable[list[runtime.Registration]]]


async def serve_api(service: str, make: MakeApi) -> int:
    runtime.configure_logging()
    store = S3Store.from_env()
    if os.environ.get("AVAFORGE_S3_CREATE_BUCKET") == "1":  # a fresh in-cluster MinIO has no bucket yet
        await asyncio.to_thread(store.wait_ready, float(os.environ.get("AVAFORGE_S3_WAIT_S", "120")))
    with cache_dir(service) as cache:
        deps = Deps(store, cache)
        running = await runtime.serve(
            service, await make(deps), runtime.port_from_env(by_name(service).grpc_port)
        )
        await runtime.until_signal()
        await running.stop()
        if deps._queue is not None:
            await deps._queue.close()
    return 0


def main(service: str, make: MakeApi | None, handlers: dict[str, worker.Handler]) -> None:
    args = sys.argv[1:]
    try:  # before any model loads: its thread pools are sized once, from the CPU limit
        budget = threads.budget()
    except ValueError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        sys.exit(2)
    threads.apply(budget)
    runtime.configure_logging()
    logging.getLogger("avaforge.threads").info(f"{budget.threads} compute threads ({budget.source})")
    if args[:1] == ["work"]:
        sys.exit(asyncio.run(worker.run(service, handlers, args[1:])))
    if args or make is None:
        usage = (
            f"python -m services.{service}" + (" | " if make else " ") + f"work [{'|'.join(handlers)} ...]"
        )
        print(f"usage: {usage}", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(serve_api(service, make)))
