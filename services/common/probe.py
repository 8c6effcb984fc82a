"""``python -m services.common.probe [PORT]``: exit 0 when the gRPC health service on PORT says SERVING.

The liveness/readiness/startup probe of every pod (exec probes: Kubernetes' native gRPC probes speak no TLS)
and the images' ``HEALTHCHECK``. PORT defaults to ``$AVAFORGE_GRPC_PORT``, then 50051. It calls as the service
principal, over TLS when ``AVAFORGE_TLS_CA`` names the CA (checking the certificate for
``$AVAFORGE_TLS_SERVER_NAME``, default ``localhost``: it dials 127.0.0.1), with the token of
``AVAFORGE_TOKEN_FILE`` (or ``AVAFORGE_TOKEN``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avaforge.channel import open_channel
from services.common.catalog import STAGE_PORT


def service_token(env: Mapping[str, str] = os.environ) -> str | None:
    """This process's own token (the service principal), for calls it makes to other avaforge servers."""
    if env.get("AVAFORGE_TOKEN_FILE"):
        return Path(env["AVAFORGE_TOKEN_FILE"]).read_text().strip()
    return env.get("AVAFORGE_TOKEN") or None


def check(port: int, service: str = "", timeout_s: float = 3.0, env: Mapping[str, str] = os.environ) -> str:
    ca = env.get("AVAFORGE_TLS_CA") or None
    name = env.get("AVAFORGE_TLS_SERVER_NAME", "localhost")
    with open_channel(f"127.0.0.1:{port}", ca, service_token(env), server_name=name) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str]) -> int:
    port = int(argv[0]) if argv else int(os.environ.get("AVAFORGE_GRPC_PORT") or STAGE_PORT)
    try:
        status = check(port)
    except grpc.RpcError as exc:
        print(f"port {port}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(f"port {port}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
