"""``python -m services.gateway``: the gateway (grpc.aio) with health and reflection.

Environment: AVAFORGE_NATS_URL, AVAFORGE_S3_*, AVAFORGE_GRPC_PORT (50050), AVAFORGE_MAX_UPLOAD_MB (2048).
"""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from avaforge.queue import WorkQueue
from avaforge.storage import ArtifactStore, S3Store
from avaforge.v1 import gateway_pb2, gateway_pb2_grpc
from services.common.server import configure_logging
from services.gateway.servicer import Gateway

NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


async def start(queue: WorkQueue, store: ArtifactStore, port: int, max_upload_mb: float = 2048):  # type: ignore[no-untyped-def]
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(Gateway(queue, store, max_upload_mb), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set(NAME, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"0.0.0.0:{port}")
    await server.start()
    return server, bound


async def main() -> None:
    configure_logging()
    queue = await WorkQueue.connect(os.environ.get("AVAFORGE_NATS_URL", "nats://127.0.0.1:4222"))
    server, _ = await start(
        queue,
        S3Store.from_env(),
        int(os.environ.get("AVAFORGE_GRPC_PORT", "50050")),
        float(os.environ.get("AVAFORGE_MAX_UPLOAD_MB", "2048")),
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(float(os.environ.get("AVAFORGE_GRACE_S", "30")))
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
