"""``python -m services.annotate``: the annotation workbench over the jobs' artifacts, over HTTPS (uvicorn).

Environment: AVAFORGE_NATS_URL (+ this service's NATS user), AVAFORGE_S3_*, AVAFORGE_GRPC_PORT (the HTTPS
port; default the catalog's), AVAFORGE_BIND, AVAFORGE_CACHE_DIR (rawframes fetched once per digest), and the
TLS and tokens every avaforge server takes (AVAFORGE_TLS_CERT, AVAFORGE_TLS_KEY, AVAFORGE_TOKENS:
``services/common/auth.py``); as for the gRPC ports, an address other than loopback needs TLS and tokens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from avaforge.queue import WorkQueue
from avaforge.storage import ArtifactStore, S3Store
from services.annotate.app import AnnotateService
from services.common import auth, runtime
from services.common.artifacts import LocalCache
from services.common.auth import ServerSecurity, check_bind
from services.common.cache import cache_dir
from services.common.catalog import by_name


@dataclass
class Served:
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


def config(
    app: AnnotateService, port: int, bind: str, env: dict[str, str] | os._Environ[str] = os.environ
) -> uvicorn.Config:
    security = ServerSecurity.from_env(env)
    check_bind(bind, security)
    tls = {}
    if security.tls:
        tls = {"ssl_certfile": env["AVAFORGE_TLS_CERT"], "ssl_keyfile": env["AVAFORGE_TLS_KEY"]}
    return uvicorn.Config(app, host=bind, port=port, log_config=None, access_log=False, lifespan="off", **tls)


async def start(
    queue: WorkQueue,
    store: ArtifactStore,
    cache_root: Path,
    port: int,
    bind: str = "127.0.0.1",
    env: dict[str, str] | os._Environ[str] = os.environ,
) -> Served:
    """Serve on ``bind:port`` (0 picks a port) in the running loop until ``Served.stop``."""
    security = ServerSecurity.from_env(env)
    app = AnnotateService(queue, store, LocalCache(store, cache_root), security.tokens)
    server = uvicorn.Server(config(app, port, bind, env))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  (the caller's signals)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it did not start (address in use, bad certificate)
            raise RuntimeError("the annotate server stopped at start")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    mode = ("HTTPS" if security.tls else "HTTP") + (", tokens" if security.tokens else ", no tokens")
    logging.getLogger("avaforge.annotate").info(f"annotate serving on {bind}:{bound} ({mode})")
    return Served(server, task, bound)


async def main() -> int:
    runtime.configure_logging()
    store = S3Store.from_env()
    queue = await WorkQueue.connect(auth.nats_url())
    with cache_dir("annotate") as cache:
        served = await start(
            queue,
            store,
            cache,
            runtime.port_from_env(by_name("annotate").grpc_port),
            os.environ.get("AVAFORGE_BIND", "0.0.0.0"),
        )
        await runtime.until_signal()
        await served.stop()
    await queue.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1:]:
        print("usage: python -m services.annotate", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main()))
