"""Bad input through the gateway (issue 7): an oversized body, malformed JSON, a body that is not
JSON and an unknown field get a clear 4xx — from the gateway or the service — naming the problem
(for the service, the field), never a 5xx or a stack trace. And the audit log records the real
client and the request id the gateway gave the request, whatever the client claims."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from tests.all_services import SERVICES, api_operations
from tests.support.served import Served

PATIENT = uuid.uuid4()


def _writes(runtime: ServiceRuntime) -> list[Any]:
    """Every operation that takes a JSON object body."""
    operations = api_operations(runtime.app.openapi())
    return [
        op
        for op in operations
        if "application/json" in (op.definition.raw.get("requestBody") or {}).get("content", {})
    ]


def _valid_body(operation: Any) -> dict[str, Any]:
    drawn: list[dict[str, Any]] = []

    @settings(max_examples=1, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy(schemathesis.GenerationMode.POSITIVE))
    def draw(case: Any) -> None:
        drawn.append(case.body)

    draw()
    assert isinstance(drawn[0], dict), f"{operation.label}: body is not an object"
    return drawn[0]


def _clinician(runtime: ServiceRuntime) -> dict[str, str]:
    token = issue_dev_token(runtime.settings, subject="c-1", role=Role.CLINICIAN, panel=[PATIENT])
    return {"Authorization": f"Bearer {token}"}


def _url(path: str) -> str:
    return path.replace("{patient_id}", str(PATIENT)).replace("{", "x").replace("}", "")


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    return detail


@pytest.mark.parametrize("service", list(SERVICES))
def test_malformed_and_unknown_input_gets_a_422_naming_the_problem(
    served: Served, service: str
) -> None:
    runtime = served.apps.runtimes[service]
    writes = _writes(runtime)
    assert writes, f"{service} has write operations"
    auth = _clinician(runtime)
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for op in writes:
            url = _url(op.path)
            malformed = client.request(
                op.method, url, content=b'{"dose_mg": ', headers={**auth,
                "content-type": "application/json"},
            )  # fmt: skip
            assert any(e["type"] == "json_invalid" for e in _errors(malformed)), op.label

            not_json = client.request(
                op.method, url, content=b"dose=5", headers={**auth,
                "content-type": "text/plain"},
            )  # fmt: skip
            assert _errors(not_json), op.label

            body = {**_valid_body(op), "zz_unknown_field": 1}
            unknown = client.request(op.method, url, json=body, headers=auth)
            assert any(
                e["type"] == "extra_forbidden" and e["loc"][-1] == "zz_unknown_field"
                for e in _errors(unknown)
            ), f"{op.label} accepted an unknown field: {unknown.text}"


@pytest.mark.parametrize("service", list(SERVICES))
def test_an_oversized_body_is_refused_by_the_gateway_with_json(
    served: Served, service: str
) -> None:
    runtime = served.apps.runtimes[service]
    op = _writes(runtime)[0]
    with httpx.Client(base_url=served.url, timeout=30) as client:
        r = client.request(
            op.method, _url(op.path), content=b"x" * (1024 * 1024 + 1),
            headers={**_clinician(runtime), "content-type": "application/json"},
        )  # fmt: skip
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/json")
    assert "too large" in r.json()["detail"]


def test_the_audit_log_records_the_real_client_and_the_gateways_request_id(
    served: Served,
) -> None:
    runtime = served.apps.runtimes["monitoring"]
    other = issue_dev_token(runtime.settings, subject="c-2", role=Role.CLINICIAN, panel=[])
    with httpx.Client(base_url=served.url, timeout=30) as client:
        r = client.get(
            f"/api/monitoring/patients/{PATIENT}/symptom-reports",
            headers={"Authorization": f"Bearer {other}", "X-Forwarded-For": "10.6.6.6"},
        )
    assert r.status_code == 403
    request_id = r.headers["x-request-id"]

    async def audit_rows() -> list[Any]:
        async with runtime.engine.connect() as conn:
            query = sa.text("SELECT actor, client_addr, request_id, outcome FROM audit_log")
            return list((await conn.execute(query)).all())

    rows = served.apps.call(audit_rows())
    mine = [row for row in rows if row.request_id == request_id]
    assert len(mine) == 1
    assert mine[0].actor == "c-2" and mine[0].outcome == "denied"
    assert mine[0].client_addr == "127.0.0.1"  # the gateway's peer, not the forged 10.6.6.6


def test_an_overlong_uri_or_header_is_refused_by_the_gateway_with_json(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        long_uri = client.get("/api/monitoring/episodes", params={"x": "a" * 10_000})
        long_header = client.get("/api/monitoring/episodes", headers={"X-Pad": "a" * 10_000})
    for response, status in ((long_uri, 414), (long_header, 431)):
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/json")
        assert "too" in response.json()["detail"]


def test_a_request_that_is_not_http_gets_a_json_400_from_the_gateway(served: Served) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"application/json" in head
    assert json.loads(body)["detail"] == "malformed request"
