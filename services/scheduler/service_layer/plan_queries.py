"""What a clinician or the patient reads about plans: a plan, a patient's plans, the taper's next
step, the decision history (and a plan's version, locked for a conditional write)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.chassis.pagination import PageParams
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.codecs import regimen_from
from services.scheduler.adapters.plan_repository import PlanRepository
from services.scheduler.adapters.repository import DecisionLog
from services.scheduler.domain import model, plan_view
from services.scheduler.domain.plan_states import PlanStatus


async def locked_version(uow: UnitOfWork, patient_id: uuid.UUID, plan_id: uuid.UUID) -> int | None:
    """The plan's version, its row locked until commit (PostgreSQL): the If-Match check and the
    write that follows see the same version. None: no such plan (the write answers 404)."""
    return await PlanRepository(uow).locked_version(patient_id, plan_id)


async def decision_history(
    uow: UnitOfWork,
    patient_id: uuid.UUID,
    page: PageParams,
    *,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, one page of decisions (of ``kind`` if given) taken in [since, until)."""
    return await DecisionLog(uow).page(patient_id, page, kind=kind, since=since, until=until)


# --- views: a patient's plans, a plan's schedule in force, the taper's next step ----------------
@dataclass(frozen=True)
class PlanDigest:
    """One row of a patient's plan list: the plan and its schedule in force (numbered 1..n)."""

    row: dict[str, Any]
    schedule: list[tuple[int, dict[str, Any]]]


async def list_plans(
    uow: UnitOfWork, patient_id: uuid.UUID, page: PageParams, status: str | None = None
) -> tuple[list[PlanDigest], str | None]:
    """The patient's plans, newest first, one page (chassis keyset pagination)."""
    rows, steps, cursor = await PlanRepository(uow).page(patient_id, page, status)
    return [
        PlanDigest(r, [(n, dict(s)) for n, s in plan_view.schedule(steps[r["id"]])[0]])
        for r in rows
    ], cursor


async def next_step_of(uow: UnitOfWork, taper: model.PatientTaper) -> plan_view.NextStep:
    """The taper's next step and what stands in its way (``domain.plan_view.next_step``)."""
    plans = PlanRepository(uow)
    plan_status = await plans.status_of(taper.plan_id)
    in_force: list[tuple[int, Any, model.Regimen]] = []
    if plan_status == PlanStatus.ACTIVE:
        kept, _ = plan_view.schedule(await plans.steps(taper.plan_id))
        in_force = [(n, s, regimen_from(s["administrations"])) for n, s in kept]
    return plan_view.next_step(taper, plan_status, in_force)
