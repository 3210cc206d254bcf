"""No exception message or stack trace leaves a service in its spans (issue 7, PHI hygiene): the
SDK and the HTTP instrumentation record every exception with its message, and a third-party
message can carry request data. Exported spans keep the exception's type only."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from services.chassis.http import create_app
from services.chassis.settings import ServiceSettings
from services.chassis.telemetry import make_tracer_provider

PHI = "zzphi Jane Doe <jane@example.org>"


def _text_of(span: ReadableSpan) -> str:
    parts: list[Any] = [span.name, span.status.description, dict(span.attributes or {})]
    parts += [(e.name, dict(e.attributes or {})) for e in span.events]
    return repr(parts)


def test_an_exception_inside_a_span_is_exported_by_type_only() -> None:
    exporter = InMemorySpanExporter()
    tracer = make_tracer_provider("svc", exporter=exporter).get_tracer("test")
    try:
        with tracer.start_as_current_span("handle"):
            raise ValueError(PHI)
    except ValueError:
        pass
    [span] = exporter.get_finished_spans()
    assert "zzphi" not in _text_of(span) and "jane@" not in _text_of(span)
    assert span.status.status_code is StatusCode.ERROR
    [event] = span.events
    assert event.name == "exception" and (event.attributes or {})["exception.type"] == "ValueError"


async def test_an_unhandled_error_in_a_request_leaves_no_message_in_any_span() -> None:
    exporter = InMemorySpanExporter()
    router = APIRouter()

    @router.post("/things")
    async def things() -> None:
        raise RuntimeError(PHI)

    app = create_app(
        ServiceSettings(service_name="svc"),
        routers=[router],
        readiness_checks={},
        tracer_provider=make_tracer_provider("svc", exporter=exporter),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.post("/api/svc/things")
    assert response.status_code == 500 and "zzphi" not in response.text
    spans = exporter.get_finished_spans()
    assert spans
    assert any(e.name == "exception" for span in spans for e in span.events)
    assert all("zzphi" not in _text_of(span) for span in spans)
