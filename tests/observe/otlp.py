"""A test OTLP receiver: a gRPC server implementing OpenTelemetry's TraceService that keeps
every span it is sent, with the service that sent it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

__all__ = ["OtlpReceiver", "Span"]


@dataclass(frozen=True)
class Span:
    """One received span, its ids in hex."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    events: tuple[str, ...]


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Callable[[list[Span]], None]) -> None:
        self._received = received

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        spans = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            service = attributes.get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            service,
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            tuple(e.name for e in span.events),
                        )
                    )
        self._received(spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """The receiver on a free loopback port; :meth:`stop` when done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self._add), self._server
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def _add(self, spans: list[Span]) -> None:
        with self._lock:
            self._spans.extend(spans)

    @property
    def spans(self) -> list[Span]:
        """Every span received so far."""
        with self._lock:
            return list(self._spans)

    def trace(self, trace_id: str) -> list[Span]:
        """The spans of one trace received so far."""
        return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, condition: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
        """Return once ``condition()`` holds (the exporters batch for a few seconds); fail
        after ``deadline`` seconds."""
        end = time.monotonic() + deadline
        while not condition():
            if time.monotonic() > end:
                services = sorted({(s.service, s.name) for s in self.spans})
                raise AssertionError(f"not within {deadline} s: {what}; received {services}")
            time.sleep(0.2)  # the polling interval of a condition with a deadline

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop(grace=0)
