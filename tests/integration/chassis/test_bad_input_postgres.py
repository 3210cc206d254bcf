"""On PostgreSQL, input that used to be a 500 is a 422 naming the field, and no log line written
while refusing it holds the input (issue 14, defect 6).

PostgreSQL refuses U+0000 in text (asyncpg ``CharacterNotInRepertoireError``, whose message and
SQLAlchemy's statement parameters held the value); SQLite stores it, so only this test shows it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from contracts import ThresholdExceeded, event_class
from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from services.monitoring.domain import instruments
from tests.runtimes import client_fixture, runtime_fixture

pytestmark = [pytest.mark.postgres]

MARK = "Jane Q. Marker 1961-02-03"  # synthetic PHI: must never come back out
PATIENT = uuid.uuid4()
BASE = f"/api/monitoring/patients/{PATIENT}"


runtime = runtime_fixture("monitoring", at=datetime(2026, 3, 2, 9, tzinfo=UTC), on="postgres")
# raise_app_exceptions=True (ASGITransport's default): an error escaping the app fails the test.
client = client_fixture()


def auth(runtime: ServiceRuntime, role: Role, **claims: Any) -> dict[str, str]:
    token = issue_dev_token(runtime.settings, subject=f"{role}-1", role=role, **claims)
    return {"Authorization": f"Bearer {token}"}


async def open_episode(runtime: ServiceRuntime, client: httpx.AsyncClient) -> uuid.UUID:
    definition = instruments.definition("ciwa-b", "1")
    codes = [i.code for i in definition.items if i.code not in definition.observed_items]
    answers = dict.fromkeys(codes, 0)
    for k in range(45):  # RED withdrawal
        answers[codes[k % len(codes)]] += 1
    r = await client.post(
        f"{BASE}/symptom-reports",
        json={"instrument": "ciwa-b", "oriented": True, "answers": answers},
        headers=auth(runtime, Role.PATIENT, patient_id=PATIENT),
    )
    assert r.status_code == 201, r.text
    async with runtime.uow() as uow:
        outbox = uow.table("outbox")
        rows = (await uow.session.execute(sa.select(outbox))).mappings()
        events = [event_class(r["event_type"]).model_validate_json(r["payload"]) for r in rows]
    [exceeded] = [e for e in events if isinstance(e, ThresholdExceeded)]
    return exceeded.episode_id


async def test_a_nul_byte_in_the_resolution_note_is_a_422_and_no_log_holds_it(
    runtime: ServiceRuntime, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    episode = await open_episode(runtime, client)
    clinician = auth(runtime, Role.CLINICIAN, panel=[PATIENT])
    url = f"{BASE}/episodes/{episode}/resolve"
    caplog.set_level("DEBUG")
    refused = await client.post(
        url, json={"resolution": "keep_held", "note": f"a\x00b {MARK}"}, headers=clinician
    )
    assert refused.status_code == 422, refused.text
    assert [e["loc"] for e in refused.json()["detail"]] == [["body", "note"]]
    assert MARK not in refused.text
    assert MARK not in caplog.text
    accepted = await client.post(
        url, json={"resolution": "keep_held", "note": "seen today"}, headers=clinician
    )
    assert accepted.status_code == 200, accepted.text  # the episode was untouched by the 422


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"since": "2026-01-01T00:00:00"}, ["query", "since"]),
        ({"actor": f"ops\x00{MARK}"}, ["query", "actor"]),
    ],
    ids=["since without offset", "NUL in actor"],
)
async def test_audit_filters_that_were_500s_are_422s_naming_the_field(
    runtime: ServiceRuntime,
    client: httpx.AsyncClient,
    params: dict[str, str],
    loc: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    r = await client.get(
        "/api/monitoring/ops/audit", params=params, headers=auth(runtime, Role.OPS)
    )
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [loc]
    assert MARK not in r.text and MARK not in caplog.text
