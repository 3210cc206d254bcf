"""The chassis' entrypoint kit (issue 19 part 4): ``patient_access`` authorizes and audits the
access to one patient (denied ones too), claims the Idempotency-Key, and commits the unit of work
before the answer is sent; a domain refusal raised as ``FieldRefusal`` is the documented 422.

A small app over monitoring's tables on SQLite: a clinician writes a dose row for a patient.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Annotated

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, status
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.chassis.auth import Role, issue_dev_token
from services.chassis.entrypoint import CLINICIAN, PatientAccess, patient_access
from services.chassis.errors import FieldRefusal
from services.chassis.http import create_app
from services.chassis.idempotency import Idempotent
from services.chassis.settings import ServiceSettings
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.monitoring.adapters.orm import dose_history
from tests.unit.chassis.conftest import count_doses

PATIENT = uuid.uuid4()
SETTINGS = ServiceSettings(service_name="svc")

DoseWrite = Annotated[
    PatientAccess,
    Depends(patient_access("update", "dose", roles=CLINICIAN, commit=True, idempotent=True)),
]
DoseRead = Annotated[PatientAccess, Depends(patient_access("read", "dose"))]


class DoseIn(BaseModel):
    daily_dose_mg: Decimal


class Refused(Exception):
    """A domain's own refusal: it names the field and the problem (no chassis import)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def _refused(exc: Refused) -> FieldRefusal:
    return FieldRefusal.naming(exc.field, exc.problem, "dose_rule", known=DoseIn.model_fields)


async def _write_dose(uow: UnitOfWork, patient_id: uuid.UUID, mg: Decimal) -> None:
    await uow.session.execute(
        sa.insert(dose_history).values(
            event_id=uuid.uuid4(),
            patient_id=patient_id,
            drug="diazepam",
            new_daily_dose_mg=mg,
            effective_on=date(2026, 12, 14),
            half_life_class="long",
        )
    )


def _router() -> APIRouter:
    router = APIRouter()

    @router.post("/patients/{patient_id}/doses", status_code=status.HTTP_201_CREATED)
    async def write(
        patient_id: uuid.UUID, body: DoseIn, access: DoseWrite, idem: Idempotent
    ) -> dict[str, str]:
        async with access.refusing(Refused, _refused) as uow:
            if body.daily_dose_mg > 100:
                raise Refused("daily_dose_mg", "above the taper-rate bound")
            await _write_dose(uow, patient_id, body.daily_dose_mg)
            out = {"written": str(body.daily_dose_mg)}
            await idem.record(uow, out, status.HTTP_201_CREATED)
        return out

    @router.get("/patients/{patient_id}/doses")
    async def read(patient_id: uuid.UUID, access: DoseRead) -> dict[str, int]:
        async with access as uow:
            count = await uow.session.scalar(sa.select(sa.func.count()).select_from(dose_history))
        return {"count": int(count or 0)}

    @router.post("/patients/{patient_id}/doses-by-yield", status_code=status.HTTP_201_CREATED)
    async def write_by_yield(patient_id: uuid.UUID, uow: CommittedAfterYield) -> dict[str, str]:
        await _write_dose(uow, patient_id, Decimal(18))
        return {"written": "18"}

    return router


def _uow(request: Request) -> UnitOfWork:
    factory: UnitOfWorkFactory = request.app.state.runtime.uow
    return factory()


async def _committed_after_yield(
    uow: Annotated[UnitOfWork, Depends(_uow)],
) -> AsyncIterator[UnitOfWork]:
    # The pattern the kit avoids: a yield dependency committing after the endpoint returned.
    async with uow as session:
        yield session
        await session.commit()


CommittedAfterYield = Annotated[UnitOfWork, Depends(_committed_after_yield)]


class SeenAtAnswer:
    """ASGI wrapper: counts the committed dose rows (in a session of its own) when the answer
    starts, i.e. what a client reading after the answer is guaranteed to see."""

    def __init__(self, app: ASGIApp, uows: UnitOfWorkFactory) -> None:
        self.app = app
        self.uows = uows
        self.counts: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counts.append(await count_doses(self.uows))
            await send(message)

        await self.app(scope, receive, counting)


Kit = tuple[httpx.AsyncClient, SeenAtAnswer]


@pytest.fixture
async def kit(
    uow_factory: UnitOfWorkFactory,
) -> AsyncIterator[Kit]:
    app = create_app(
        SETTINGS, routers=[_router()], readiness_checks={}, tracer_provider=TracerProvider()
    )
    app.state.runtime = SimpleNamespace(uow=uow_factory)  # what ServiceRuntime.app sets
    seen = SeenAtAnswer(app, uow_factory)
    transport = httpx.ASGITransport(app=seen)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        yield client, seen


def _bearer(role: Role, subject: str, **claims: object) -> dict[str, str]:
    token = issue_dev_token(SETTINGS, subject=subject, role=role, **claims)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


CLINICIAN_ON_PANEL = _bearer(Role.CLINICIAN, "dr-ada", panel=[PATIENT])
URL = f"/api/svc/patients/{PATIENT}/doses"


async def _audit_rows(uows: UnitOfWorkFactory) -> list[tuple[str, str, str, str]]:
    async with uows() as uow:
        log = uow.table("audit_log")
        rows = await uow.session.execute(
            sa.select(log.c.actor, log.c.action, log.c.resource, log.c.outcome).order_by(log.c.id)
        )
        return [tuple(r) for r in rows]


async def test_a_denied_access_is_audited_and_refused_403(
    kit: Kit, uow_factory: UnitOfWorkFactory
) -> None:
    client, _ = kit
    off_panel = _bearer(Role.CLINICIAN, "dr-zed", panel=[uuid.uuid4()])
    patient = _bearer(Role.PATIENT, "p-1", patient_id=PATIENT)  # their own, but writes are not
    assert (
        await client.post(URL, json={"daily_dose_mg": "18"}, headers=off_panel)
    ).status_code == 403
    assert (
        await client.post(URL, json={"daily_dose_mg": "18"}, headers=patient)
    ).status_code == 403
    assert (await client.get(URL, headers=off_panel)).status_code == 403
    assert await _audit_rows(uow_factory) == [
        ("dr-zed", "update", "dose", "denied"),
        ("p-1", "update", "dose", "denied"),
        ("dr-zed", "read", "dose", "denied"),
    ]
    assert await count_doses(uow_factory) == 0


async def test_an_allowed_access_is_audited_once_and_committed_before_the_answer(
    kit: Kit, uow_factory: UnitOfWorkFactory
) -> None:
    client, seen = kit
    written = await client.post(URL, json={"daily_dose_mg": "18"}, headers=CLINICIAN_ON_PANEL)
    assert written.status_code == 201, written.text
    assert seen.counts == [1]  # the row was committed when the answer started
    patient = _bearer(Role.PATIENT, "p-1", patient_id=PATIENT)
    assert (await client.get(URL, headers=patient)).json() == {"count": 1}
    assert await _audit_rows(uow_factory) == [
        ("dr-ada", "update", "dose", "allowed"),
        ("p-1", "read", "dose", "allowed"),
    ]


async def test_the_idempotency_key_is_claimed_in_the_kits_transaction(
    kit: Kit, uow_factory: UnitOfWorkFactory
) -> None:
    client, _ = kit
    headers = {**CLINICIAN_ON_PANEL, "Idempotency-Key": "k-1"}
    first = await client.post(URL, json={"daily_dose_mg": "18"}, headers=headers)
    again = await client.post(URL, json={"daily_dose_mg": "18"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotency-Replayed"] == "true"
    assert await count_doses(uow_factory) == 1  # done once; each try audited
    assert [r[3] for r in await _audit_rows(uow_factory)] == ["allowed", "allowed"]


async def test_a_domain_refusal_is_the_documented_422_naming_the_field(
    kit: Kit, uow_factory: UnitOfWorkFactory
) -> None:
    client, _ = kit
    refused = await client.post(URL, json={"daily_dose_mg": "150"}, headers=CLINICIAN_ON_PANEL)
    assert refused.status_code == 422
    assert refused.json() == {
        "detail": [
            {
                "loc": ["body", "daily_dose_mg"],
                "msg": "above the taper-rate bound",
                "type": "dose_rule",
            }
        ]
    }
    assert await count_doses(uow_factory) == 0  # rolled back; the access stays audited
    assert await _audit_rows(uow_factory) == [("dr-ada", "update", "dose", "allowed")]


async def test_a_yield_dependency_would_commit_only_after_the_answer_started(
    kit: Kit, uow_factory: UnitOfWorkFactory
) -> None:
    """Why the kit commits in ``async with``: with FastAPI 0.165, a dependency's code after
    ``yield`` runs once the answer is on its way (``scope="request"``, the default)."""
    client, seen = kit
    written = await client.post(f"{URL}-by-yield", headers=CLINICIAN_ON_PANEL)
    assert written.status_code == 201, written.text
    assert seen.counts == [0]  # not committed yet when the answer started
    assert await count_doses(uow_factory) == 1  # committed later


def test_a_refusal_names_the_body_alone_when_the_field_is_none_the_client_sent() -> None:
    stored = FieldRefusal.naming("start_on", "in the past", "plan", known={"reason_code"})
    assert stored.detail() == [{"loc": ["body"], "msg": "in the past", "type": "plan"}]
    several = FieldRefusal.of_all([(["body", "a"], "x", "t"), (["body", "b"], "y", "t")])
    assert [d["loc"] for d in several.detail()] == [["body", "a"], ["body", "b"]]
