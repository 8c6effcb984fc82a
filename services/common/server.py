"""A gRPC server for one service: health checking, reflection, Prometheus metrics, JSON logs, settings from
the environment, and graceful shutdown (SIGTERM stops taking requests and lets in-flight ones finish).

Environment: ``AVAFORGE_GRPC_PORT`` (default 50051), ``AVAFORGE_METRICS_PORT`` (default 9100, 0 = off),
``AVAFORGE_GRACE_S`` (default 30), ``AVAFORGE_MAX_MESSAGE_MB`` (default 64), ``AVAFORGE_LOG_LEVEL``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from avaforge.formats.errors import FormatError
from avaforge.storage import StorageError, StorageUnavailable
from services.catalog import METRICS_PORT, STAGE_PORT


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "clip_id", "rpc", "code"):
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
    def create(cls, service: str) -> Metrics:
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
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def rpc(service: str, metrics: Metrics, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a servicer method: metrics, a log line, and clear status codes for known errors."""
    log = logging.getLogger(f"avaforge.{service}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            metrics.requests.labels(service, name).inc()
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return fn(self, request, context)
            except RpcError as exc:
                code, message = exc.code, str(exc)
            except FormatError as exc:
                code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
            except StorageUnavailable as exc:
                code, message = grpc.StatusCode.UNAVAILABLE, str(exc)
            except StorageError as exc:
                code = (
                    grpc.StatusCode.NOT_FOUND
                    if "no such artifact" in str(exc)
                    else grpc.StatusCode.FAILED_PRECONDITION
                )
                message = str(exc)
            finally:
                metrics.latency.labels(service, name).observe(time.perf_counter() - start)
            metrics.failures.labels(service, name, code.name).inc()
            log.warning(message, extra={"rpc": name, "code": code.name})
            context.abort(code, message)

        wrapper.__name__ = fn.__name__
        return wrapper

    return decorate


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    metrics_port: int | None

    def stop(self, grace_s: float) -> None:
        self.health.enter_graceful_shutdown()  # probes see NOT_SERVING while in-flight calls finish
        self.server.stop(grace_s).wait()


def serve(
    service_name: str,
    register: Callable[[grpc.Server], None],
    service_full_names: list[str],
    port: int | None = None,
    metrics: Metrics | None = None,
    metrics_port: int | None = None,
) -> RunningServer:
    max_bytes = int(float(os.environ.get("AVAFORGE_MAX_MESSAGE_MB", "64")) * 1024 * 1024)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=int(os.environ.get("AVAFORGE_GRPC_THREADS", "4"))),
        options=[("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes)],
    )
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in [*service_full_names, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*service_full_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = port if port is not None else int(os.environ.get("AVAFORGE_GRPC_PORT", STAGE_PORT))
    bound = server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    mport = (
        metrics_port
        if metrics_port is not None
        else int(os.environ.get("AVAFORGE_METRICS_PORT", METRICS_PORT))
    )
    if metrics is not None and mport:
        start_http_server(mport, registry=metrics.registry)
    logging.getLogger(f"avaforge.{service_name}").info(f"{service_name} serving on port {bound}")
    return RunningServer(server, bound, health_servicer, mport or None)


@contextmanager
def stop_on_signals(running: RunningServer) -> Iterator[threading.Event]:
    """Block the main thread until SIGTERM/SIGINT, then stop gracefully within ``AVAFORGE_GRACE_S``."""
    stopped = threading.Event()

    def handle(_sig: int, _frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    try:
        yield stopped
        stopped.wait()
    finally:
        running.stop(float(os.environ.get("AVAFORGE_GRACE_S", "30")))
