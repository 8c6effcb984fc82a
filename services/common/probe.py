"""``python -m services.common.probe [PORT]``: exit 0 when the gRPC health service on PORT says SERVING.

For ``HEALTHCHECK`` in docker/podman (Kubernetes uses its native gRPC probes). PORT defaults to
``$AVAFORGE_GRPC_PORT``, then 50051.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.catalog import STAGE_PORT


def check(port: int, service: str = "", timeout_s: float = 3.0) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
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
