"""Tracing: one trace from the HTTP request through the outbox, Kafka and every consumer.

Each service gets its own ``TracerProvider`` (not the global one) so several services can share a
process in tests, each with its own ``service.name``. W3C trace context travels in outbox rows,
Kafka headers, timer rows and outgoing webhooks. Span attributes carry opaque ids only, never PHI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

TRACE_HEADERS = ("traceparent", "tracestate")


def make_tracer_provider(
    service_name: str,
    *,
    otlp_endpoint: str | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider:
    """A provider for one service: OTLP/HTTP when configured, or the given exporter (tests)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def current_trace_headers() -> dict[str, str]:
    """The current W3C context as headers, to store with an outbox row or timer."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in TRACE_HEADERS}


def context_from_headers(headers: Mapping[str, Any]) -> Context:
    carrier = {
        k: (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in headers.items()
        if k in TRACE_HEADERS
    }
    return propagate.extract(carrier)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
