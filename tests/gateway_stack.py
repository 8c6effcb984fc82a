"""The one way tests start an in-process gateway: a real nats-server, the gateway on loopback in a background
loop (``services.gateway.__main__.start``), optionally every stage's queue worker, all stopped by ``close``
even when a step of the start or of the stop fails (no nats-server outlives its test)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import grpc

from avaforge.client import GatewayClient
from avaforge.queue import RetryPolicy, WorkQueue
from avaforge.storage import ArtifactStore
from devstack.servers import nats_server
from services.common.worker import Context, record_failure
from services.gateway.__main__ import start
from tests import credentials
from tests.stage_workers import HANDLERS, LoopThread, start_stage_workers

T = TypeVar("T")


class GatewayStack:
    """``secure``: TLS and the test tokens (``tests.credentials``); otherwise plaintext on loopback, where the
    gateway takes every caller as the admin "local". ``workers``: run every stage's worker with this retry
    policy (failures recorded on the job, as ``python -m services.<service> work`` does); None: no workers, so
    the queue shows what was submitted. ``stop_gateway``/``start_gateway`` restart the gateway on its port."""

    def __init__(
        self,
        store: ArtifactStore,
        root: Path,
        secure: bool = True,
        workers: RetryPolicy | None = None,
        max_upload_mb: float = 2048,
    ) -> None:
        self.store, self.root, self.secure, self.max_upload_mb = store, root, secure, max_upload_mb
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self._stop = asyncio.Event()
        self._workers: list[tuple[WorkQueue, asyncio.Task[int]]] = []
        self._cleanup = ExitStack()
        try:
            self.nats = nats_server(root / "nats").start()
            self._cleanup.callback(self.nats.stop)
            self.loop = LoopThread()
            self._cleanup.callback(self.loop.close)
            self.url = f"nats://127.0.0.1:{self.nats.port}"
            self.queue = self.run(WorkQueue.connect(self.url))
            self._cleanup.callback(lambda: self.run(self.queue.close()))
            if workers is not None:
                self._cleanup.callback(lambda: self.run(self._stop_workers(), 120))
                self.run(self._start_workers(workers))
            self.start_gateway()
            self._cleanup.callback(self.stop_gateway)
        except BaseException:
            self._cleanup.close()
            raise

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        """Run a coroutine on the stack's loop (where its queue connection lives)."""
        return self.loop.run(coro, timeout_s)

    async def _start_workers(self, policy: RetryPolicy) -> None:
        ctx = Context.create(self.queue, self.store, self.root / "cache")
        self._workers = await start_stage_workers(
            self.url, ctx, HANDLERS, self._stop, policy, on_dead=lambda d: record_failure(self.queue, d)
        )

    async def _stop_workers(self) -> None:
        self._stop.set()
        try:
            await asyncio.gather(*(task for _, task in self._workers))
        finally:
            for connection, _ in self._workers:  # their subscriptions would outlive the loop
                await connection.close()

    def start_gateway(self) -> None:
        security = credentials.security() if self.secure else None
        self.server, self.port = self.run(
            start(self.queue, self.store, self.port, self.max_upload_mb, security=security)
        )

    def stop_gateway(self, grace_s: float = 1) -> None:
        if self.server is not None:
            self.run(self.server.stop(grace_s))
            self.server = None

    def client(self, principal: str = "alice", timeout_s: float = 60) -> GatewayClient:
        if self.secure:
            return credentials.client(self.port, principal, timeout_s)  # type: ignore[no-any-return]
        return GatewayClient(f"127.0.0.1:{self.port}", timeout_s=timeout_s)

    def close(self) -> None:
        """Stop the gateway, the workers, the connection, the loop and nats-server, each even if one before
        it failed (the first error is raised after)."""
        self._cleanup.close()
