"""Logs that carry the trace id (JSON lines, or readable lines for a terminal), and OpenTelemetry tracing exported over OTLP when asked.

Tracing follows the standard environment: ``OTEL_EXPORTER_OTLP_ENDPOINT`` turns it on, and the
SDK reads ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG`` (the chart sets a parent-based
ratio, so a request the edge Envoy sampled is traced all the way) and ``OTEL_SERVICE_NAME``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

import grpc.aio
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors as _otel_client
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pythonjsonlogger.json import JsonFormatter

from meshchat_runtime.metrics import DeliveryMetrics
from meshchat_runtime.settings import LogFormat

__all__ = [
    "StreamSpanEvents",
    "TextFormatter",
    "TraceContextFilter",
    "client_interceptors",
    "configure_logging",
    "configure_tracing",
]

# The instrumentation package has no type hints; this is its documented signature.
_client_interceptors: Callable[..., list[grpc.aio.ClientInterceptor]] = _otel_client


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` of the current span to every record (a record
    logged with its own ``trace_id`` keeps it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if not getattr(record, "trace_id", ""):
            record.trace_id = format(context.trace_id, "032x") if context.is_valid else ""
        record.span_id = format(context.span_id, "016x") if context.is_valid else ""
        return True


# The attributes every LogRecord has; the others came as ``extra`` (or from the filter above).
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """One readable line per record: time, level, logger, message, then the ``extra`` fields
    as ``key=value`` (the trace id only inside a trace)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _RECORD_ATTRIBUTES and key != "span_id" and value not in ("", None)
        ]
        if not extras:
            return line
        head, newline, tail = line.partition("\n")  # a traceback stays below the fields
        return f"{head}  {' '.join(extras)}{newline}{tail}"


def _formatter(log_format: LogFormat, service: str) -> logging.Formatter:
    if log_format is LogFormat.TEXT or (log_format is LogFormat.AUTO and sys.stderr.isatty()):
        return TextFormatter()
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"service": service},
    )


def configure_logging(level: str, service: str, log_format: LogFormat = LogFormat.JSON) -> None:
    """Send log lines to stderr for the whole process (called once, from main): JSON, or
    readable text (:class:`TextFormatter`) as ``log_format`` says."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(_formatter(log_format, service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class StreamSpanEvents:
    """Marks a Connect stream's deliveries and catch-ups as events of the stream's one span
    (the RPC's server span, current while the stream runs), passing them on to ``metrics``:
    never a span per delivered message. The SDK's span limits bound the events a long stream
    keeps. Used only when tracing is on."""

    def __init__(self, metrics: DeliveryMetrics) -> None:
        self._metrics = metrics

    def delivered(self, seconds: float) -> None:
        """A live message reached the stream ``seconds`` after it was sent."""
        self._metrics.delivered(seconds)
        trace.get_current_span().add_event("delivered", {"meshchat.delivery.seconds": seconds})

    def caught_up(self, reason: str) -> None:
        """The stream read missed messages from the store."""
        self._metrics.caught_up(reason)
        trace.get_current_span().add_event("catch-up", {"meshchat.catch_up.reason": reason})


def client_interceptors(tracer_provider: TracerProvider | None) -> list[grpc.aio.ClientInterceptor]:
    """The interceptors of a channel to another service: with tracing on, one that makes a
    client span and sends the trace context along (``traceparent``); none when off."""
    if tracer_provider is None:
        return []
    return _client_interceptors(tracer_provider=tracer_provider)


def configure_tracing(service: str) -> TracerProvider | None:
    """The process's tracer provider, exporting over OTLP, when ``OTEL_EXPORTER_OTLP_ENDPOINT``
    is set; None (tracing off) otherwise.

    Off means no tracing interceptor at all: it costs about 190 us of CPU per call, a third
    of a cheap RPC, which is not worth paying for spans that go nowhere.
    """
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
