"""Helpers for tests that run the stage workers and services in-process on a real nats-server."""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from avaforge import pipeline
from avaforge.queue import RetryPolicy, WorkQueue
from services.common import runtime
from services.common.runtime import Registration
from services.common.worker import Context, Handler
from tests.credentials import security

# every stage's queue handler, from the service that runs it (as avaforge.pipeline assigns them)
HANDLERS: dict[str, Handler] = {
    stage: handler
    for service in pipeline.services()
    for stage, handler in importlib.import_module(f"services.{service}.handlers").HANDLERS.items()
}

T = TypeVar("T")


async def start_stage_workers(
    url: str,
    ctx: Context,
    stages: Iterable[str],
    stop: asyncio.Event,
    policy: RetryPolicy,
    fetch_timeout_s: float = 0.2,
    on_dead: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> list[tuple[WorkQueue, asyncio.Task[int]]]:
    """One connection and one ``work`` task per entry of ``stages`` (name a stage twice for two workers),
    each running that stage's handler until ``stop`` is set, as ``python -m services.<service> work`` does."""
    workers = []
    for stage in stages:
        queue = await WorkQueue.connect(url)
        task = asyncio.create_task(
            queue.work(stage, lambda p, s=stage: HANDLERS[s](ctx, p), stop, policy, fetch_timeout_s, on_dead)
        )
        workers.append((queue, task))
    return workers


class LoopThread:
    """An asyncio loop running in a daemon thread, for module fixtures whose services must outlive one call:
    ``run`` executes a coroutine on it from the test's thread; whatever the coroutine starts keeps running."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self, timeout_s: float = 60) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)


class BackgroundServer:
    """A service's gRPC API (``services.common.runtime.serve``) on loopback in a background loop, with the
    test TLS and tokens (``tests.credentials.channel(port)`` calls it), for tests that call it with blocking
    stubs."""

    def __init__(self, service: str, registrations: list[Registration], metrics_port: int = 0) -> None:
        self._loop = LoopThread()
        self.running = self._loop.run(
            runtime.serve(service, registrations, 0, metrics_port, "127.0.0.1", security=security())
        )
        self.port = self.running.port

    def stop(self, grace_s: float = 1) -> None:
        self._loop.run(self.running.stop(grace_s))
        self._loop.close()
