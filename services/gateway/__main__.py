"""``python -m services.gateway``: the gateway (grpc.aio) with health and reflection.

Environment: AVAFORGE_NATS_URL, AVAFORGE_S3_*, AVAFORGE_GRPC_PORT (50050), AVAFORGE_MAX_UPLOAD_MB (2048),
AVAFORGE_GRACE_S (30), AVAFORGE_S3_CREATE_BUCKET (1: create the bucket at start, waiting up to
AVAFORGE_S3_WAIT_S for the S3 server).
"""

from __future__ import annotations

import asyncio
import os

from avaforge.queue import WorkQueue
from avaforge.storage import ArtifactStore, S3Store
from avaforge.v1 import gateway_pb2, gateway_pb2_grpc
from services.catalog import GATEWAY_PORT
from services.common.aio_server import run_until_signal, start_aio
from services.common.server import configure_logging
from services.gateway.servicer import Gateway

NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


async def start(  # type: ignore[no-untyped-def]
    queue: WorkQueue,
    store: ArtifactStore,
    port: int,
    max_upload_mb: float = 2048,
    metrics_port: int | None = None,
):
    servicer = Gateway(queue, store, max_upload_mb)
    return await start_aio(
        [(gateway_pb2_grpc.add_GatewayServiceServicer_to_server, servicer, NAME)],
        port,
        service="gateway",
        metrics_port=metrics_port,
    )


async def main() -> None:
    configure_logging()
    store = S3Store.from_env()
    if os.environ.get("AVAFORGE_S3_CREATE_BUCKET") == "1":  # a fresh in-cluster MinIO has no bucket yet
        await asyncio.to_thread(store.wait_ready, float(os.environ.get("AVAFORGE_S3_WAIT_S", "120")))
    queue = await WorkQueue.connect(os.environ.get("AVAFORGE_NATS_URL", "nats://127.0.0.1:4222"))
    server, _ = await start(
        queue,
        store,
        int(os.environ.get("AVAFORGE_GRPC_PORT", GATEWAY_PORT)),
        float(os.environ.get("AVAFORGE_MAX_UPLOAD_MB", "2048")),
    )
    await run_until_signal(server, float(os.environ.get("AVAFORGE_GRACE_S", "30")))
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
