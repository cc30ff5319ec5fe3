"""Traces go to an OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT is set, and logs name them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from devtools.processes import ServiceProcess
from meshchat.auth.v1 import users_pb2, users_pb2_grpc
from tests.support.passwords import PASSWORD


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
