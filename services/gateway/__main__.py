"""``python -m services.gateway``: the gateway, the only service reachable from outside the cluster.

Environment: AVAFORGE_NATS_URL, AVAFORGE_S3_*, AVAFORGE_GRPC_PORT (50050),
AVAFORGE_MAX_UPLOAD_MB (2048, with the other video limits in ``services/common/limits.py``),
AVAFORGE_S3_CREATE_BUCKET (1: create the bucket at start, waiting up to AVAFORGE_S3_WAIT_S for the S3 server),
and the runtime's (``services/common/runtime.py``).
"""

from __future__ import annotations

import grpc

from avaforge.queue import WorkQueue
from avaforge.storage import ArtifactStore
from avaforge.v1 import gateway_pb2, gateway_pb2_grpc
from services.common.auth import ServerSecurity
from services.common.limits import VideoLimits
from services.common.process import Deps, main
from services.common.runtime import Registration, serve
from services.gateway.servicer import Gateway

NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


def registrations(queue: WorkQueue, store: ArtifactStore, max_upload_mb: float) -> list[Registration]:
    gateway = Gateway(queue, store, max_upload_mb)
    return [(gateway_pb2_grpc.add_GatewayServiceServicer_to_server, gateway, NAME)]


async def api(deps: Deps) -> list[Registration]:
    return registrations(await deps.queue(), deps.store, VideoLimits.from_env().max_upload_mb)


async def start(
    queue: WorkQueue,
    store: ArtifactStore,
    port: int,
    max_upload_mb: float = 2048,
    metrics_port: int = 0,
    security: ServerSecurity | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A gateway in this process, on loopback (tests and embedding); returns the server and its port.
    ``security``: TLS and tokens (default: from the environment)."""
    running = await serve(
        "gateway",
        registrations(queue, store, max_upload_mb),
        port,
        metrics_port,
        "127.0.0.1",
        security=security,
    )
    return running.server, running.port


if __name__ == "__main__":
    main("gateway", api, {})
