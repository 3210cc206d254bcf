"""Issue 14, defect 6: no request data in logs through exceptions, and two former 5xx.

* an unexpected error is answered by the app and never re-raised to the server (uvicorn logged
  the re-raised error with ``exc_info``: its message, i.e. request data);
* a record with ``exc_info`` from any logger (uvicorn's, a library's) is written without the
  exception's message;
* SQLAlchemy errors do not carry the bound parameters (``hide_parameters``);
* ``/ops/audit?since=<no offset>`` is a 422 naming ``since`` (was a 500); a NUL byte in a text
  filter or a free-text field is a 422 naming the field (a 500 on PostgreSQL: see
  tests/integration/chassis/test_bad_input_postgres.py).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel

from services.chassis.auth import Role, issue_dev_token
from services.chassis.db import make_engine
from services.chassis.http import create_app
from services.chassis.logs import configure_logging
from services.chassis.runtime import ServiceRuntime
from services.chassis.settings import ServiceSettings
from services.chassis.text import FreeText
from tests.runtimes import runtime_fixture

MARK = "Jane Q. Marker 1961-02-03"  # synthetic PHI: must never come back out


class Note(BaseModel):
    note: FreeText


def _app() -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise ValueError(MARK)

    @router.post("/note")
    async def note(body: Note) -> dict[str, int]:
        return {"length": len(body.note)}

    app = create_app(
        ServiceSettings(service_name="svc"),
        routers=[router],
        readiness_checks={},
        tracer_provider=TracerProvider(),
    )
    # raise_app_exceptions=True (the default): what escapes the app here is what uvicorn logs.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_an_unexpected_error_is_answered_by_the_app_never_re_raised_to_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _app() as client:
        response = await client.get("/api/svc/boom", headers={"x-request-id": "req-7"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "request_id": "req-7"}
    assert MARK not in caplog.text
    assert [r.__dict__.get("error_type") for r in caplog.records if r.levelno >= logging.ERROR] == [
        "ValueError"
    ]


async def test_a_nul_byte_in_free_text_is_a_422_naming_the_field() -> None:
    async with _app() as client:
        response = await client.post("/api/svc/note", json={"note": f"a\x00{MARK}"})
        fine = await client.post("/api/svc/note", json={"note": "seen today"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "note"]]
    assert MARK not in response.text
    assert fine.status_code == 200


def test_a_logged_exception_keeps_its_type_and_frames_but_not_its_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("svc-under-test")
    try:
        raise ValueError(MARK)
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    out = capsys.readouterr().out
    assert MARK not in out
    line = json.loads(out.strip().splitlines()[-1])
    assert line["message"] == "Exception in ASGI application"
    assert line["error_type"] == "ValueError"
    assert any("test_a_logged_exception" in frame for frame in line["frames"])


async def test_database_errors_do_not_carry_the_bound_parameters(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (v TEXT NOT NULL UNIQUE)"))
            await conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": MARK})
            with pytest.raises(sa.exc.IntegrityError) as caught:
                await conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": MARK})
    finally:
        await engine.dispose()
    assert MARK not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)


runtime = runtime_fixture("group_matching", at=datetime(2026, 3, 2, 15, tzinfo=UTC))


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"since": "2026-01-01T00:00:00"}, ["query", "since"]),
        ({"until": "2026-01-01T00:00:00"}, ["query", "until"]),
        ({"actor": f"ops\x00{MARK}"}, ["query", "actor"]),
    ],
    ids=["since without offset", "until without offset", "NUL in actor"],
)
async def test_audit_filters_that_were_500s_are_422s_naming_the_field(
    runtime: ServiceRuntime,
    params: dict[str, str],
    loc: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = issue_dev_token(runtime.settings, subject="ops-1", role=Role.OPS)
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(
            "/api/group-matching/ops/audit",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )
        with_offset = await client.get(
            "/api/group-matching/ops/audit",
            params={"since": "2026-01-01T00:00:00+00:00"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [loc]
    assert MARK not in response.text and MARK not in caplog.text
    assert with_offset.status_code == 200
