"""``python -m services.common.probe [--https] [PORT]``: exit 0 when the gRPC health service on PORT says
SERVING (``--https`` or AVAFORGE_PROBE=https: when the HTTPS server on PORT answers ``GET /healthz`` with 200,
the annotate service).

The liveness/readiness/startup probe of every pod (exec probes: Kubernetes' native gRPC probes speak no TLS)
and the images' ``HEALTHCHECK``. PORT defaults to ``$AVAFORGE_GRPC_PORT``, then 50051. It calls as the service
principal, over TLS when ``AVAFORGE_TLS_CA`` names the CA (checking the certificate for
``$AVAFORGE_TLS_SERVER_NAME``, default ``localhost``: it dials 127.0.0.1), with the token of
``AVAFORGE_TOKEN_FILE`` (or ``AVAFORGE_TOKEN``).
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
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


def check_https(port: int, timeout_s: float = 3.0, env: Mapping[str, str] = os.environ) -> int:
    """The status of ``GET /healthz`` on 127.0.0.1:``port``: TLS checked against ``AVAFORGE_TLS_CA`` for
    ``AVAFORGE_TLS_SERVER_NAME`` (plain HTTP without a CA), with the service token."""
    ca = env.get("AVAFORGE_TLS_CA") or None
    name = env.get("AVAFORGE_TLS_SERVER_NAME", "localhost")

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.create_connection(("127.0.0.1", port), timeout_s)
            self.sock = (
                ssl.create_default_context(cafile=ca).wrap_socket(sock, server_hostname=name) if ca else sock
            )

    conn = Connection("127.0.0.1", port, timeout=timeout_s)
    try:
        token = service_token(env)
        conn.request("GET", "/healthz", headers={"Authorization": f"Bearer {token}"} if token else {})
        return conn.getresponse().status
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    flag = argv[:1] == ["--https"]
    argv = argv[1:] if flag else argv
    https = flag or os.environ.get("AVAFORGE_PROBE") == "https"
    port = int(argv[0]) if argv else int(os.environ.get("AVAFORGE_GRPC_PORT") or STAGE_PORT)
    if https:
        try:
            code = check_https(port)
        except (OSError, http.client.HTTPException) as exc:
            print(f"port {port}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"port {port}: HTTP {code}")
        return 0 if code == 200 else 1
    try:
        status = check(port)
    except grpc.RpcError as exc:
        print(f"port {port}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(f"port {port}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
