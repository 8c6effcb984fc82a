"""A grpc.aio server (for services that talk to NATS from asyncio) with health checking and reflection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


async def start_aio(
    servicers: list[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]],
    port: int,
    max_message_mb: int = 64,
) -> tuple[grpc.aio.Server, int]:
    """``servicers``: (add_XServicer_to_server, servicer, full service name); returns server and port."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_mb << 20)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for add, servicer, name in servicers:
        add(servicer, server)
        names.append(name)
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"0.0.0.0:{port}")
    await server.start()
    return server, bound


async def run_until_signal(server: grpc.aio.Server, grace_s: float) -> None:
    """Serve until SIGTERM/SIGINT, then stop taking calls and let in-flight ones finish."""
    import asyncio
    import signal

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace_s)
