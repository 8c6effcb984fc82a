"""A grpc.aio server (for services that talk to NATS from asyncio) with health checking, reflection and
Prometheus metrics."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.common.server import Metrics


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Requests, failures and latency per RPC (unary and streaming) of a grpc.aio service."""

    def __init__(self, service: str, metrics: Metrics) -> None:
        self.service = service
        self.metrics = metrics

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        rpc = handler_call_details.method.rsplit("/", 1)[-1]
        m, service = self.metrics, self.service

        def failed(context) -> None:  # type: ignore[no-untyped-def]
            code = context.code()
            m.failures.labels(service, rpc, code.name if code else "UNKNOWN").inc()

        def wrap_unary(fn):  # type: ignore[no-untyped-def]
            async def call(request, context):  # type: ignore[no-untyped-def]
                m.requests.labels(service, rpc).inc()
                with m.latency.labels(service, rpc).time():
                    try:
                        return await fn(request, context)
                    except BaseException:
                        failed(context)
                        raise

            return call

        def wrap_stream(fn):  # type: ignore[no-untyped-def]
            async def call(request, context):  # type: ignore[no-untyped-def]
                m.requests.labels(service, rpc).inc()
                with m.latency.labels(service, rpc).time():
                    try:
                        async for item in fn(request, context):
                            yield item
                    except BaseException:
                        failed(context)
                        raise

            return call

        if handler.unary_unary:
            return handler._replace(unary_unary=wrap_unary(handler.unary_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=wrap_stream(handler.unary_stream))
        if handler.stream_unary:
            return handler._replace(stream_unary=wrap_unary(handler.stream_unary))
        return handler


async def start_aio(
    servicers: list[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]],
    port: int,
    max_message_mb: int = 64,
    service: str = "aio",
    metrics_port: int | None = None,
) -> tuple[grpc.aio.Server, int]:
    """``servicers``: (add_XServicer_to_server, servicer, full service name); returns server and port.
    Metrics are served on ``metrics_port`` (default $AVAFORGE_METRICS_PORT, 0 = off)."""
    metrics = Metrics.create(service)
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", max_message_mb << 20)],
        interceptors=[MetricsInterceptor(service, metrics)],
    )
    mport = metrics_port if metrics_port is not None else int(os.environ.get("AVAFORGE_METRICS_PORT", "0"))
    if mport:
        start_http_server(mport, registry=metrics.registry)
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
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace_s)
