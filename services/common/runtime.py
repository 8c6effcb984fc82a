"""The one gRPC runtime of every avaforge process (grpc.aio): health checking, reflection, Prometheus
metrics, clear status codes for known errors, JSON logs, and graceful stop.

Servicers are ``async``; a servicer method that computes (ffmpeg, a model) runs that work in a thread
(``asyncio.to_thread``) so the event loop keeps answering health checks while it runs.

Environment: ``AVAFORGE_GRPC_PORT`` (default: the process's port in ``services/common/catalog.py``),
``AVAFORGE_METRICS_PORT`` (default 9100, 0 = off), ``AVAFORGE_GRACE_S`` (30), ``AVAFORGE_MAX_MESSAGE_MB``
(64), ``AVAFORGE_BIND`` (the listen address, default 0.0.0.0), ``AVAFORGE_LOG_LEVEL``, and TLS and tokens
(``AVAFORGE_TLS_CERT``, ``AVAFORGE_TLS_KEY``, ``AVAFORGE_TOKENS``: ``services/common/auth.py``). Every RPC
needs a bearer token when tokens are set; a non-loopback address is refused without TLS and tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from avaforge.formats.errors import FormatError
from avaforge.storage import StorageError, StorageUnavailable
from services.common.auth import AuthInterceptor, ServerSecurity, check_bind
from services.common.catalog import METRICS_PORT


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "clip_id", "rpc", "code", "stage", "msg_id", "delivery", "pid"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry)


def configure_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("AVAFORGE_LOG_LEVEL", "INFO"))


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    failures: Counter
    latency: Histogram
    items: Counter

    @classmethod
    def create(cls) -> Metrics:
        reg = CollectorRegistry()
        labels = ["service", "rpc"]
        return cls(
            reg,
            Counter("avaforge_requests_total", "gRPC requests", labels, registry=reg),
            Counter("avaforge_failures_total", "gRPC requests that failed", [*labels, "code"], registry=reg),
            Histogram("avaforge_request_seconds", "gRPC request latency", labels, registry=reg),
            Counter(
                "avaforge_queue_items_total",
                "work-queue items processed",
                ["service", "outcome"],
                registry=reg,
            ),
        )


class RpcError(Exception):
    """Raised by a servicer to answer with ``code``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status a known error answers with (None: an unexpected error, INTERNAL)."""
    if isinstance(exc, RpcError):
        return exc.code, str(exc)
    if isinstance(exc, FormatError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, StorageUnavailable):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, StorageError):
        missing = "no such artifact" in str(exc)
        return (grpc.StatusCode.NOT_FOUND if missing else grpc.StatusCode.FAILED_PRECONDITION), str(exc)
    return None


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Per RPC (unary and streaming): request count, latency, failures by code, a log line for each
    failure, and known errors (``status_of``) turned into their status codes."""

    def __init__(self, service: str, metrics: Metrics) -> None:
        self.service = service
        self.metrics = metrics
        self.log = logging.getLogger(f"avaforge.{service}")

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        rpc = handler_call_details.method.rsplit("/", 1)[-1]
        m, service, log = self.metrics, self.service, self.log

        async def failed(exc: BaseException, context: grpc.aio.ServicerContext) -> None:
            known = status_of(exc)
            if known is not None:
                code, message = known
                m.failures.labels(service, rpc, code.name).inc()
                log.warning(message, extra={"rpc": rpc, "code": code.name})
                await context.abort(code, message)  # raises: the client gets the code and the message
            code = (
                context.code() or grpc.StatusCode.UNKNOWN
            )  # an abort() of the servicer's own keeps its code
            m.failures.labels(
                service, rpc, code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            ).inc()

        def wrap_unary(fn):  # type: ignore[no-untyped-def]
            async def call(request, context):  # type: ignore[no-untyped-def]
                m.requests.labels(service, rpc).inc()
                with m.latency.labels(service, rpc).time():
                    try:
                        return await fn(request, context)
                    except Exception as exc:
                        await failed(exc, context)
                        raise

            return call

        def wrap_stream(fn):  # type: ignore[no-untyped-def]
            async def call(request, context):  # type: ignore[no-untyped-def]
                m.requests.labels(service, rpc).inc()
                with m.latency.labels(service, rpc).time():
                    try:
                        async for item in fn(request, context):
                            yield item
                    except Exception as exc:
                        await failed(exc, context)
                        raise

            return call

        if handler.unary_unary:
            return handler._replace(unary_unary=wrap_unary(handler.unary_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=wrap_stream(handler.unary_stream))
        if handler.stream_unary:
            return handler._replace(stream_unary=wrap_unary(handler.stream_unary))
        return handler


# (add_XServicer_to_server, servicer instance, full service name)
Registration = tuple[Callable[[Any, grpc.aio.Server], None], Any, str]


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    metrics: Metrics

    async def stop(self, grace_s: float | None = None) -> None:
        """Probes see NOT_SERVING at once; calls in flight get ``grace_s`` to finish."""
        await self.health.enter_graceful_shutdown()
        grace = float(os.environ.get("AVAFORGE_GRACE_S", "30")) if grace_s is None else grace_s
        await self.server.stop(grace)


async def serve(
    service: str,
    registrations: list[Registration],
    port: int,
    metrics_port: int | None = None,
    bind: str | None = None,
    metrics: Metrics | None = None,
    security: ServerSecurity | None = None,
) -> Running:
    """Start a grpc.aio server with ``registrations`` plus health and reflection; ``port`` 0 picks one.
    Metrics are served on ``metrics_port`` (default $AVAFORGE_METRICS_PORT, then 9100; 0 = off).
    ``security`` (default: from the environment) gives the port TLS and the tokens every call must carry."""
    metrics = metrics or Metrics.create()
    security = security or ServerSecurity.from_env()
    address = bind or os.environ.get("AVAFORGE_BIND", "0.0.0.0")
    check_bind(address, security)
    max_bytes = int(float(os.environ.get("AVAFORGE_MAX_MESSAGE_MB", "64")) * 1024 * 1024)
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes)],
        # metrics first, so that refused calls are counted (code UNAUTHENTICATED)
        interceptors=[ServiceInterceptor(service, metrics), AuthInterceptor(security.tokens)],
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for add, servicer, name in registrations:
        add(servicer, server)
        names.append(name)
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    if security.tls:
        bound = server.add_secure_port(f"{address}:{port}", security.credentials())
    else:
        bound = server.add_insecure_port(f"{address}:{port}")
    await server.start()
    mport = (
        metrics_port
        if metrics_port is not None
        else int(os.environ.get("AVAFORGE_METRICS_PORT", METRICS_PORT))
    )
    if mport:
        start_http_server(mport, registry=metrics.registry)
    mode = ("TLS" if security.tls else "plaintext") + (", tokens" if security.tokens else ", no tokens")
    logging.getLogger(f"avaforge.{service}").info(f"{service} serving on {address}:{bound} ({mode})")
    return Running(server, bound, health_servicer, metrics)


def port_from_env(default: int) -> int:
    return int(os.environ.get("AVAFORGE_GRPC_PORT") or default)


async def until_signal() -> None:
    """Wait for SIGTERM or SIGINT."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
