"""The gateway's request id reaches the HTTP server span, but only when it is well formed."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.chassis.http import create_app
from services.chassis.settings import ServiceSettings
from services.chassis.telemetry import (
    REQUEST_ID_ATTRIBUTE,
    make_tracer_provider,
    valid_request_id,
)


async def _server_span(exporter: InMemorySpanExporter, headers: dict[str, str]) -> ReadableSpan:
    router = APIRouter()

    @router.get("/patients/{patient_id}/things")
    async def things(patient_id: str) -> dict[str, str]:
        return {}

    app = create_app(
        ServiceSettings(service_name="svc"),
        routers=[router],
        readiness_checks={},
        tracer_provider=make_tracer_provider("svc", exporter=exporter),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.get("/api/svc/patients/p-1/things", headers=headers)
    assert response.status_code == 200
    [span] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    return span


@pytest.mark.parametrize(
    "request_id",
    ["0f3c9a7e2b1d4c5e8a6b7c8d9e0f1a2b", "req-1.retry_2:edge", "a" * 100],
)
async def test_a_well_formed_request_id_is_on_the_server_span(
    span_exporter: InMemorySpanExporter, request_id: str
) -> None:
    span = await _server_span(span_exporter, {"X-Request-ID": request_id})
    assert span.attributes is not None
    assert span.attributes[REQUEST_ID_ATTRIBUTE] == request_id
    assert span.attributes["http.route"] == "/api/svc/patients/{patient_id}/things"


@pytest.mark.parametrize(
    "request_id",
    [
        "zzphi.jane.doe@example.org",  # an e-mail address
        "Jane Doe called",  # spaces: free text
        "a" * 101,  # longer than the gateway allows (and the audit column holds)
        "",
        "id\twith-tab",
    ],
)
async def test_a_malformed_request_id_is_left_out(
    span_exporter: InMemorySpanExporter, request_id: str
) -> None:
    span = await _server_span(span_exporter, {"X-Request-ID": request_id})
    assert span.attributes is not None
    assert REQUEST_ID_ATTRIBUTE not in span.attributes
    assert all(request_id not in str(v) for v in span.attributes.values() if request_id)


async def test_no_request_id_no_attribute(span_exporter: InMemorySpanExporter) -> None:
    span = await _server_span(span_exporter, {})
    assert span.attributes is not None
    assert REQUEST_ID_ATTRIBUTE not in span.attributes


def test_the_rule_is_the_gateways() -> None:
    assert valid_request_id("abc-DEF_1.2:3") == "abc-DEF_1.2:3"
    assert valid_request_id("abc\n") is None  # no trailing newline slipping through "$"
    assert valid_request_id("a/b") is None
    assert valid_request_id(None) is None
