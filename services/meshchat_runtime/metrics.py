"""Prometheus metrics: per-method RPC counts by status code, latency and in-flight, and the
metrics of the services' parts (deliveries, catch-up reads, limit refusals, JWKS age, the
database). Every label takes values from a fixed set: never a user or chat id."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
import grpc.aio
from opentelemetry.trace import SpanKind, Tracer
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from meshchat_runtime.interceptors import (
    BehaviorInterceptor,
    Context,
    StreamBehavior,
    UnaryBehavior,
)
from meshchat_runtime.settings import HostPort

__all__ = [
    "CATCH_UP_REASONS",
    "LIMITS",
    "DatabaseMetrics",
    "DeliveryMetrics",
    "JwksCollector",
    "LimitRefusals",
    "MetricsEndpoint",
    "RpcMetrics",
    "RpcMetricsInterceptor",
]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Why a Connect stream read messages from the database instead of getting them from the hub:
# the replay after (re)connecting, a queue overflow, a gap in the seqs it was handed.
CATCH_UP_REASONS = ("connect", "overflow", "gap")
# The per-user limits whose refusals are counted (the ``limit`` label).
LIMITS = ("failed_logins",)


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


class DeliveryMetrics:
    """How Connect streams deliver: send-to-delivery latency and reads from the database.

    Like the other part metrics below, a collector made before the server (and its registry)
    exists, registered once it does.
    """

    def __init__(self) -> None:
        self._latency = Histogram(
            "meshchat_chat_delivery_latency_seconds",
            "Time from a message's send to its delivery on a Connect stream that was "
            "caught up (replayed history is not counted).",
            buckets=DELIVERY_BUCKETS,
            registry=None,
        )
        self._reads_counter = Counter(
            "meshchat_chat_catchup_reads_total",
            "Catch-ups of Connect streams from the database, by reason.",
            ("reason",),
            registry=None,
        )
        reads = self._reads_counter
        self._reads = {reason: reads.labels(reason) for reason in CATCH_UP_REASONS}

    def delivered(self, seconds: float) -> None:
        """A message reached a caught-up stream ``seconds`` after it was sent (clocks of
        two replicas may disagree a little: negative becomes 0)."""
        self._latency.observe(max(seconds, 0.0))

    def caught_up(self, reason: str) -> None:
        """A stream read from the database; ``reason`` is one of CATCH_UP_REASONS."""
        self._reads[reason].inc()

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        yield from self._latency.collect()
        yield from self._reads_counter.collect()


class LimitRefusals:
    """Calls refused because a per-user limit was reached, by limit (one of LIMITS)."""

    def __init__(self) -> None:
        self._counter = Counter(
            "meshchat_limit_refusals_total",
            "Calls refused because a per-user limit was reached, by limit.",
            ("limit",),
            registry=None,
        )
        self._by_limit = {limit: self._counter.labels(limit) for limit in LIMITS}

    def refused(self, limit: str) -> None:
        """Count one refusal; KeyError for a limit not in LIMITS (labels stay bounded)."""
        self._by_limit[limit].inc()

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        yield from self._counter.collect()


class JwksCollector:
    """The age of the chat service's cached JWKS, read at scrape time."""

    def __init__(self, age: Callable[[], float], max_age: float) -> None:
        self._age = age
        self._max_age = max_age

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        yield GaugeMetricFamily(
            "meshchat_chat_jwks_age_seconds",
            "Seconds since the auth service's keys were last fetched (since start when never).",
            value=self._age(),
        )
        yield GaugeMetricFamily(
            "meshchat_chat_jwks_max_age_seconds",
            "The age beyond which cached keys are no longer used and tokens are refused.",
            value=self._max_age,
        )


PoolStats = Callable[[], Mapping[str, int]]


class DatabaseMetrics:
    """Time store operations hold a database connection (pool waits included), and the
    PostgreSQL pool's usage; with a tracer (tracing on), each operation is also a client span
    named after the database system."""

    def __init__(self, system: str, tracer: Tracer | None = None) -> None:
        self._system = system
        self._tracer = tracer
        self._latency = Histogram(
            "meshchat_db_operation_seconds",
            "Time a store operation held a database connection, waiting for it included.",
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self._pool: PoolStats | None = None

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """Time the block (and trace it when tracing is on)."""
        start = time.perf_counter()
        try:
            if self._tracer is None:
                yield
            else:
                with self._tracer.start_as_current_span(
                    self._system, kind=SpanKind.CLIENT, attributes={"db.system": self._system}
                ):
                    yield
        finally:
            self._latency.observe(time.perf_counter() - start)

    def track_pool(self, stats: PoolStats) -> None:
        """Report this pool's statistics (psycopg_pool's ``get_stats``)."""
        self._pool = stats

    def collect(self) -> Iterator[Metric]:
        """The latency histogram and, with a pool, its current usage."""
        yield from self._latency.collect()
        if self._pool is None:
            return
        stats = self._pool()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        connections = GaugeMetricFamily(
            "meshchat_db_pool_connections",
            "Connections of the database pool, in use or idle.",
            labels=("state",),
        )
        connections.add_metric(("in_use",), size - idle)
        connections.add_metric(("idle",), idle)
        yield connections
        yield GaugeMetricFamily(
            "meshchat_db_pool_max_connections",
            "The most connections the pool opens.",
            value=stats.get("pool_max", 0),
        )
        yield GaugeMetricFamily(
            "meshchat_db_pool_waiting_requests",
            "Store operations waiting for a connection right now.",
            value=stats.get("requests_waiting", 0),
        )
        yield CounterMetricFamily(
            "meshchat_db_pool_wait_seconds",
            "Time store operations waited for a connection.",
            value=stats.get("requests_wait_ms", 0) / 1000,
        )
        yield CounterMetricFamily(
            "meshchat_db_pool_errors",
            "Requests for a connection that failed (timeout or a lost database).",
            value=stats.get("requests_errors", 0),
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


class _MethodMetrics:
    """One method's children of the RPC metrics, bound once when its handler is wrapped:
    looking a child up by its labels on every call cost more than the count itself."""

    def __init__(self, metrics: RpcMetrics, method: str, kind: str) -> None:
        self._labels = (*_split(method), kind)
        self._handled_family = metrics.handled
        self.started = metrics.started.labels(*self._labels)
        self.latency = metrics.latency.labels(*self._labels)
        self.in_flight = metrics.in_flight.labels(*self._labels)
        self.sent = metrics.stream_messages_sent.labels(*self._labels)
        self._handled: dict[str, Counter] = {}

    def handled(self, code: str) -> Counter:
        """The child counting the calls that ended with ``code``."""
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._handled_family.labels(*self._labels, code)
        return child


class RpcMetricsInterceptor(BehaviorInterceptor):
    """Counts every RPC by method and status code and times it."""

    def __init__(self, metrics: RpcMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap_unary(self, method: str, kind: str, behavior: UnaryBehavior) -> UnaryBehavior:
        m = _MethodMetrics(self._metrics, method, kind)

        async def observed(request: Any, context: Context) -> Any:
            m.started.inc()
            start = time.perf_counter()
            error: BaseException | None = None
            m.in_flight.inc()
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                m.in_flight.dec()
                m.latency.observe(time.perf_counter() - start)
                m.handled(_code_of(context, error)).inc()

        return observed

    def wrap_stream(self, method: str, kind: str, behavior: StreamBehavior) -> StreamBehavior:
        m = _MethodMetrics(self._metrics, method, kind)

        async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
            m.started.inc()
            start = time.perf_counter()
            error: BaseException | None = None
            m.in_flight.inc()
            try:
                async for response in behavior(request, context):
                    m.sent.inc()
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                m.in_flight.dec()
                m.latency.observe(time.perf_counter() - start)
                m.handled(_code_of(context, error)).inc()

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
