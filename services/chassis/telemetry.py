"""Tracing: one trace from the HTTP request through the outbox, Kafka and every consumer.

Each service gets its own ``TracerProvider`` (not the global one) so several services can share a
process in tests, each with its own ``service.name``. W3C trace context travels in outbox rows,
Kafka headers, timer rows and outgoing webhooks. Span attributes carry opaque ids only, never PHI.

Metrics likewise: one ``MeterProvider`` per service (instruments in ``chassis/metrics.py``),
read by Prometheus at ``/metrics`` (its own ``CollectorRegistry`` per service).

Export: OTLP/HTTP and/or Zipkin JSON v2 (``make run`` starts Zipkin and points the services at
it). An exporter whose backend is away logs one line per failed batch, never a traceback.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from services.chassis.settings import ServiceSettings

log = logging.getLogger(__name__)

TRACE_HEADERS = ("traceparent", "tracestate")
# The gateway's rule for X-Request-ID (deploy/gateway/nginx.conf.template): a well-formed id is
# kept, anything else replaced. A direct caller could send anything, so the services check again.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")  # 100: audit_log.request_id
# A custom attribute, not the semantic conventions' ``http.request.header.x-request-id``: that one
# means "the raw header as received", this one an id that matched REQUEST_ID (else it is absent).
REQUEST_ID_ATTRIBUTE = "taper.request_id"


def make_tracer_provider(
    service_name: str,
    *,
    otlp_endpoint: str | None = None,
    zipkin_endpoint: str | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider:
    """A provider for one service: OTLP/HTTP and/or Zipkin when configured, or the given
    exporter (tests)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(exporter)))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/") + "/v1/traces"
        otlp = RedactingSpanExporter(QuietExporter(OTLPSpanExporter(endpoint=endpoint), "otlp"))
        provider.add_span_processor(BatchSpanProcessor(otlp))
    if zipkin_endpoint:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        zipkin = ZipkinExporter(endpoint=zipkin_endpoint, timeout=5)
        provider.add_span_processor(
            BatchSpanProcessor(RedactingSpanExporter(QuietExporter(zipkin, "zipkin")))
        )
    return provider


def tracer_provider_from_settings(settings: ServiceSettings) -> TracerProvider:
    return make_tracer_provider(
        settings.service_name,
        otlp_endpoint=settings.otlp_endpoint,
        zipkin_endpoint=settings.zipkin_endpoint,
    )


class QuietExporter(SpanExporter):
    """A failed export is one warning line (at most one a minute), not a traceback.

    The batch processor logs an exporter's exception with its whole stack trace, on every batch:
    a trace backend that is away (Zipkin not started) would bury the service's own log lines.
    Spans of a failed batch are dropped, as the processor would drop them anyway.
    """

    _EVERY_S = 60.0

    def __init__(self, inner: SpanExporter, name: str) -> None:
        self._inner = inner
        self._name = name
        self._warned_at: float | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return self._inner.export(spans)
        except Exception as exc:
            now = time.monotonic()
            if self._warned_at is None or now - self._warned_at >= self._EVERY_S:
                self._warned_at = now
                log.warning(
                    "span export failed; spans dropped",
                    extra={"exporter": self._name, "error_type": type(exc).__name__},
                )
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class RedactingSpanExporter(SpanExporter):
    """Exports spans without exception messages and stack traces.

    The SDK and the HTTP instrumentation record every exception raised through a span with its
    message, its stack trace and ``"<Type>: <message>"`` as the span status — and a third-party
    message can carry request data (pydantic's ``input_value``, SQL parameters: PHI). Only the
    exception's type leaves the process; the logs keep frames (chassis/logs.py), not messages.
    """

    _DROPPED = frozenset({"exception.message", "exception.stacktrace"})
    # The HTTP instrumentation's concrete request path and URL carry patient ids (and a query
    # string could carry anything): the route template stands in for them.
    _CONCRETE = frozenset({"http.target", "http.url", "url.full", "url.path", "url.query"})

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._redacted(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    @classmethod
    def _attributes(cls, span: ReadableSpan) -> Mapping[str, Any] | None:
        attributes = span.attributes or {}
        if not cls._CONCRETE.intersection(attributes):
            return span.attributes
        kept = {k: v for k, v in attributes.items() if k not in cls._CONCRETE}
        if "http.target" in attributes and "http.route" in attributes:
            kept["http.target"] = attributes["http.route"]
        return kept

    @classmethod
    def _redacted(cls, span: ReadableSpan) -> ReadableSpan:
        exceptions = [e for e in span.events if e.name == "exception"]
        attributes = cls._attributes(span)
        if not exceptions and span.status.description is None and attributes is span.attributes:
            return span
        events = [
            Event(
                e.name,
                {k: v for k, v in (e.attributes or {}).items() if k not in cls._DROPPED},
                e.timestamp,
            )
            if e.name == "exception"
            else e
            for e in span.events
        ]
        description = span.status.description
        status = Status(
            span.status.status_code,
            description.split(":", 1)[0] if description else None,  # "<Type>: <message>"
        )
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=events,
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


def make_meter_provider(
    service_name: str,
    *,
    otlp_endpoint: str | None = None,
    reader: MetricReader | None = None,
    prometheus: CollectorRegistry | None = None,
) -> MeterProvider:
    """Metrics for one service: OTLP/HTTP when configured, Prometheus exposition into the given
    registry, and/or the given reader (tests)."""
    readers: list[MetricReader] = [reader] if reader is not None else []
    if prometheus is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        # No target_info (its random instance id) and no otel_scope_* labels: Prometheus adds
        # job and instance, and the names stay exactly those of docs/metrics.md.
        readers.append(
            PrometheusMetricReader(
                disable_target_info=True, scope_info_enabled=False, registry=prometheus
            )
        )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        endpoint = otlp_endpoint.rstrip("/") + "/v1/metrics"
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint)))
    return MeterProvider(
        resource=Resource.create({"service.name": service_name}), metric_readers=readers
    )


def valid_request_id(value: str | None) -> str | None:
    """``value`` if it is a well-formed request id (the gateway's rule), else None."""
    return value if value is not None and REQUEST_ID.fullmatch(value) else None


def record_request_id(span: trace.Span, scope: Mapping[str, Any]) -> None:
    """``server_request_hook`` of the HTTP instrumentation: the request id onto the server span.

    Only a well-formed id: a malformed one (free text, an e-mail address …) is left out entirely.
    The request's events need no copy of it: they carry the trace context, and the trace links them
    to this span.
    """
    if not span.is_recording():
        return
    raw = [v for k, v in scope.get("headers", ()) if k.lower() == b"x-request-id"]
    if len(raw) != 1:
        return
    request_id = valid_request_id(raw[0].decode("latin-1"))
    if request_id is not None:
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


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
