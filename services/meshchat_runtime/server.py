"""The gRPC server both services run: health, reflection, metrics, tracing, limits, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor as _otel_interceptor
from opentelemetry.sdk.trace import TracerProvider

from meshchat_runtime.interceptors import BehaviorInterceptor, InterceptorChain
from meshchat_runtime.metrics import MetricsEndpoint, RpcMetrics, RpcMetricsInterceptor
from meshchat_runtime.settings import LISTEN, METRICS_LISTEN, ConfigError, HostPort, ServerSettings

__all__ = ["DependencyProbe", "GrpcServer", "ServiceRegistration"]

log = logging.getLogger(__name__)

# The instrumentation package has no type hints; this is its documented signature.
tracing_interceptor: Callable[..., grpc.aio.ServerInterceptor] = _otel_interceptor

SERVING: int = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING

DependencyProbe = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class ServiceRegistration:
    """One gRPC service to serve: its full name and the generated ``add_*_to_server``."""

    name: str
    register: Callable[[grpc.aio.Server], None]


def _check_bindable(address: HostPort, setting: str) -> None:
    """Fail with a one-line ConfigError when ``address`` is taken, before grpc's C core
    logs its own multi-line complaint."""
    if address.port == 0:
        return
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As grpc's own listener does: connections of the previous run that wait in
            # TIME_WAIT must not stop a restart; a live listener still makes the bind fail.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address.host, address.port))
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot listen on {address}: {exc.strerror}") from None


class GrpcServer:
    """A grpc.aio server with the standard health service, reflection and a metrics endpoint.

    Health starts NOT_SERVING, turns SERVING once :meth:`start` has bound and every
    dependency probe passes, follows the probes while running, and turns NOT_SERVING for
    good when the server begins to stop.
    """

    def __init__(
        self,
        settings: ServerSettings,
        services: Sequence[ServiceRegistration],
        interceptors: Sequence[BehaviorInterceptor] = (),
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self._services = list(services)
        self.registry = MetricsEndpoint.new_registry()
        self._metrics = RpcMetrics(self.registry)
        self._metrics_endpoint = (
            MetricsEndpoint(self.registry, settings.metrics_listen)
            if settings.metrics_listen is not None
            else None
        )
        self.interceptors = self._interceptors(interceptors, tracer_provider)
        """What grpc runs around every call, outermost first."""
        self._server = grpc.aio.server(
            interceptors=self.interceptors, options=settings.grpc_options()
        )
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        for service in self._services:
            service.register(self._server)
        reflection.enable_server_reflection(
            [s.name for s in self._services]
            + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self._server,
        )
        self._probes: list[DependencyProbe] = []
        self._stop_hooks: list[Callable[[], None]] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._serving: bool | None = None
        self.port = 0

    def _interceptors(
        self, behaviors: Sequence[BehaviorInterceptor], tracer_provider: TracerProvider | None
    ) -> tuple[grpc.aio.ServerInterceptor, ...]:
        """The tracing interceptor only when spans are exported, then the metrics and the
        services' interceptors fused into one."""
        fused = InterceptorChain([RpcMetricsInterceptor(self._metrics), *behaviors])
        if tracer_provider is None:
            return (fused,)
        return (tracing_interceptor(tracer_provider=tracer_provider), fused)

    @property
    def metrics_port(self) -> int | None:
        """The bound metrics port, or None when metrics are off."""
        return self._metrics_endpoint.port if self._metrics_endpoint is not None else None

    def add_dependency(self, probe: DependencyProbe) -> None:
        """Health is SERVING only while every probe answers True."""
        self._probes.append(probe)

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` once the server has stopped accepting calls, at the start of the
        grace period (for instance to end long-lived streams so clients go elsewhere)."""
        self._stop_hooks.append(hook)

    async def start(self) -> None:
        """Bind the ports and start serving; ConfigError when an address cannot be bound."""
        await self._set_all(NOT_SERVING)
        address = str(self.settings.listen)
        _check_bindable(self.settings.listen, LISTEN.env)
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError(f"{LISTEN.env}: cannot listen on {address}: {exc}") from None
        if self.port == 0:
            raise ConfigError(f"{LISTEN.env}: cannot listen on {address}")
        if self._metrics_endpoint is not None:
            try:
                self._metrics_endpoint.start()
            except OSError as exc:
                raise ConfigError(
                    f"{METRICS_LISTEN.env}: cannot listen on {self.settings.metrics_listen}: "
                    f"{exc.strerror or exc}"
                ) from None
        await self._server.start()
        await self._check_dependencies()
        self._watchdog = asyncio.create_task(self._watch_dependencies())
        log.info(
            "serving",
            extra={
                "address": f"{self.settings.listen.host}:{self.port}",
                "metrics": self.metrics_port,
            },
        )

    async def _set_all(self, status: int) -> None:
        await self.health.set("", status)
        for service in self._services:
            await self.health.set(service.name, status)

    async def _check_dependencies(self) -> None:
        healthy = True
        for probe in self._probes:
            try:
                healthy = healthy and await probe()
            except Exception:
                log.exception("dependency probe failed")
                healthy = False
        if healthy != self._serving:
            self._serving = healthy
            if not healthy:
                log.warning("a dependency is unavailable: health is NOT_SERVING")
            elif self._probes:
                log.info("dependencies available: health is SERVING")
            await self._set_all(SERVING if healthy else NOT_SERVING)

    async def _watch_dependencies(self) -> None:
        interval = self.settings.dependency_check_interval
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            if not self._stopping.is_set():
                await self._check_dependencies()

    async def stop(self, grace: float | None = None) -> None:
        """Turn health NOT_SERVING, stop accepting calls, let in-flight RPCs finish within
        the grace period, then cancel what is left."""
        if self._stopping.is_set():
            await self._stopped.wait()
            return
        self._stopping.set()
        await self.health.enter_graceful_shutdown()
        if self._watchdog is not None:
            await self._watchdog
        shutdown = asyncio.ensure_future(
            self._server.stop(self.settings.grace_period if grace is None else grace)
        )
        await asyncio.sleep(0)  # grpc stops accepting calls as soon as stop() runs
        for hook in self._stop_hooks:
            hook()
        await shutdown
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.stop()
        self._stopped.set()
        log.info("stopped")

    async def wait_for_termination(self) -> None:
        """Return when the server has stopped."""
        await self._server.wait_for_termination()

    async def run_until_signalled(
        self, on_stop: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully and run ``on_stop``.

        Further signals are ignored while stopping: process managers (and a terminal's
        Ctrl-C, which reaches the whole process group) often send a second one.
        """
        loop = asyncio.get_running_loop()
        received = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, received.set)
        await received.wait()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        log.info("signal received: stopping", extra={"grace_seconds": self.settings.grace_period})
        await self.stop()
        if on_stop is not None:
            await on_stop()
