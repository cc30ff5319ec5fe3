"""Prometheus metrics of a gRPC server: per-method counts by status code, latency, in-flight."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
import grpc.aio
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from meshchat_runtime.interceptors import (
    BehaviorInterceptor,
    Context,
    StreamBehavior,
    UnaryBehavior,
)
from meshchat_runtime.settings import HostPort

__all__ = ["MetricsEndpoint", "RpcMetrics", "RpcMetricsInterceptor"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RpcMetrics:
    """The RPC metrics of one server, in that server's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_service", "grpc_method", "grpc_type")
        self.registry = registry
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*labels, "grpc_code"),
            registry=registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status, streams included.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "grpc_server_in_flight",
            "RPCs in progress; grpc_type tells unary calls from open streams.",
            labels,
            registry=registry,
        )
        self.stream_messages_sent = Counter(
            "grpc_server_msg_sent_total",
            "Messages sent on server streams.",
            labels,
            registry=registry,
        )


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _code_of(context: Context, error: BaseException | None) -> str:
    code: object = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return "UNKNOWN"
    return "OK"


class RpcMetricsInterceptor(BehaviorInterceptor):
    """Counts every RPC by method and status code and times it."""

    def __init__(self, metrics: RpcMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap_unary(self, method: str, kind: str, behavior: UnaryBehavior) -> UnaryBehavior:
        m = self._metrics
        labels = (*_split(method), kind)

        async def observed(request: Any, context: Context) -> Any:
            m.started.labels(*labels).inc()
            start = time.perf_counter()
            error: BaseException | None = None
            with m.in_flight.labels(*labels).track_inprogress():
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    m.latency.labels(*labels).observe(time.perf_counter() - start)
                    m.handled.labels(*labels, _code_of(context, error)).inc()

        return observed

    def wrap_stream(self, method: str, kind: str, behavior: StreamBehavior) -> StreamBehavior:
        m = self._metrics
        labels = (*_split(method), kind)

        async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
            m.started.labels(*labels).inc()
            start = time.perf_counter()
            error: BaseException | None = None
            sent = m.stream_messages_sent.labels(*labels)
            with m.in_flight.labels(*labels).track_inprogress():
                try:
                    async for response in behavior(request, context):
                        sent.inc()
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    m.latency.labels(*labels).observe(time.perf_counter() - start)
                    m.handled.labels(*labels, _code_of(context, error)).inc()

        return observed


class MetricsEndpoint:
    """The ``/metrics`` HTTP endpoint of one registry, served from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, address: HostPort) -> None:
        self._registry = registry
        self._address = address
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def new_registry() -> CollectorRegistry:
        """A registry with the process, platform and GC collectors."""
        registry = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        return registry

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        if self._server is None:
            raise RuntimeError("the metrics endpoint is not started")
        return int(self._server.server_port)

    def start(self) -> None:
        """Bind and serve; OSError when the address is taken."""
        self._server, self._thread = start_http_server(
            self._address.port, addr=self._address.host, registry=self._registry
        )

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
