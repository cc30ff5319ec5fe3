"""Traces go to an OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT is set, and logs name them;
when it is not, nothing of OpenTelemetry runs on the hot path."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from devtools.processes import ServiceProcess
from meshchat.auth.v1 import users_pb2, users_pb2_grpc
from meshchat_runtime.interceptors import ErrorInterceptor, InterceptorChain
from meshchat_runtime.server import GrpcServer
from meshchat_runtime.telemetry import client_interceptors, configure_tracing
from tests.support.passwords import PASSWORD
from tests.support.stack import loopback_settings


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span an exporter sends."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []
        self.arrived = asyncio.Event()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((span.name, span.trace_id.hex()))
        self.arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_spans_are_exported_over_otlp_and_logs_carry_their_trace_id(tmp_path: Path) -> None:
    collector = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    auth = ServiceProcess("meshchat-auth", env, tmp_path)
    try:
        await asyncio.to_thread(auth.start)
        async with grpc.aio.insecure_channel(auth.address) as channel:
            await users_pb2_grpc.UserServiceStub(channel).CreateUser(
                users_pb2.CreateUserRequest(
                    username="alice", password=PASSWORD, password_confirm=PASSWORD
                ),
                timeout=10,
            )
        async with asyncio.timeout(20):
            while not any(name.endswith("CreateUser") for name, _ in collector.spans):
                collector.arrived.clear()
                await collector.arrived.wait()
    finally:
        await asyncio.to_thread(auth.stop)
        await server.stop(0)
    trace_ids = {trace for name, trace in collector.spans if name.endswith("CreateUser")}
    logged = [json.loads(line) for line in auth.logs().splitlines() if '"user created"' in line]
    assert logged
    assert logged[0]["trace_id"] in trace_ids


async def test_with_tracing_off_nothing_of_opentelemetry_is_on_the_hot_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert configure_tracing("meshchat-chat") is None
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)  # no exporter
    server = GrpcServer(loopback_settings(), services=[], interceptors=[ErrorInterceptor()])
    # One interceptor for every call: the metrics and the services' own, fused.
    assert [type(i) for i in server.interceptors] == [InterceptorChain]
    assert client_interceptors(None) == []


async def test_with_tracing_on_the_tracing_interceptor_runs_first() -> None:
    server = GrpcServer(loopback_settings(), services=[], tracer_provider=TracerProvider())
    tracing, fused = server.interceptors
    assert type(tracing).__module__.startswith("opentelemetry.instrumentation.grpc")
    assert isinstance(fused, InterceptorChain)
