"""JSON logs carry trace ids; errors reach clients and logs without echoing request data."""

from __future__ import annotations

import json
import logging
import uuid

import httpx
import pytest
from fastapi import APIRouter
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel

from services.chassis.auth import Role, issue_dev_token
from services.chassis.http import create_app
from services.chassis.logs import configure_logging
from services.chassis.settings import ServiceSettings

MARKED_PHI = "Jane Q. Marker"  # synthetic PHI: must never come back out


def test_log_lines_are_json_with_the_current_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc-under-test")
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("t").info("did work", extra={"event_id": "e-1"})
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["message"] == "did work"
    assert line["service"] == "svc-under-test"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["event_id"] == "e-1"


class Body(BaseModel):
    dose_mg: int


def _app() -> httpx.AsyncClient:
    router = APIRouter()

    @router.post("/echo")
    async def echo(body: Body) -> dict[str, int]:
        return {"dose_mg": body.dose_mg}

    @router.get("/boom")
    async def boom() -> None:
        raise ValueError(MARKED_PHI)

    settings = ServiceSettings(service_name="svc")
    app = create_app(
        settings, routers=[router], readiness_checks={}, tracer_provider=TracerProvider()
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://svc")


async def test_validation_errors_name_the_field_but_do_not_echo_the_value() -> None:
    async with _app() as client:
        response = await client.post("/api/svc/echo", json={"dose_mg": MARKED_PHI})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "dose_mg"]
    assert MARKED_PHI not in response.text


async def test_an_unexpected_error_is_a_bare_500_and_its_message_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _app() as client:
        response = await client.get("/api/svc/boom", headers={"x-request-id": "req-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "request_id": "req-1"}
    assert MARKED_PHI not in caplog.text
    assert any(r.__dict__.get("error_type") == "ValueError" for r in caplog.records)


async def test_health_needs_no_token_and_ready_reports_its_checks() -> None:
    async with _app() as client:
        assert (await client.get("/api/svc/health")).json() == {"status": "ok", "service": "svc"}
        ready = await client.get("/api/svc/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {}


def test_tokens_are_verified_for_signature_audience_and_expiry() -> None:
    from datetime import timedelta

    from fastapi import HTTPException

    from services.chassis.auth import TokenVerifier

    settings = ServiceSettings(service_name="svc")
    verifier = TokenVerifier(settings)
    patient = uuid.uuid4()
    good = issue_dev_token(settings, subject="p", role=Role.PATIENT, patient_id=patient)
    assert verifier.verify(good).patient_id == patient
    expired = issue_dev_token(
        settings, subject="p", role=Role.PATIENT, patient_id=patient, ttl=timedelta(minutes=-1)
    )
    other_audience = issue_dev_token(
        settings.model_copy(update={"jwt_audience": "elsewhere"}),
        subject="p",
        role=Role.PATIENT,
        patient_id=patient,
    )
    forged = issue_dev_token(
        settings.model_copy(update={"jwt_secret": "x" * 40}),
        subject="p",
        role=Role.CLINICIAN,
        panel=[patient],
    )
    for token in (expired, other_audience, forged, good + "x"):
        with pytest.raises(HTTPException) as caught:
            verifier.verify(token)
        assert caught.value.status_code == 401


def test_the_dev_issuer_and_dev_secret_are_refused_in_production() -> None:
    with pytest.raises(ValueError, match="TAPER_JWT_SECRET"):
        ServiceSettings(service_name="svc", environment="production")
    prod = ServiceSettings(
        service_name="svc",
        environment="production",
        jwt_secret="s" * 40,
        jwt_jwks_url="https://idp.example/.well-known/jwks.json",
        database_url="postgresql+asyncpg://svc@db.example/svc",
        kafka_replication_factor=3,
    )
    with pytest.raises(RuntimeError):
        issue_dev_token(prod, subject="x", role=Role.OPS)
