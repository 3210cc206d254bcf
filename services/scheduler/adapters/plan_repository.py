"""Loading and saving stored plans: a ``plans`` row (optimistic ``version``) and its steps.

The service layer (``service_layer.plans``, ``service_layer.step_timer``) decides; this module
owns the SQL. Statuses are ``domain.plan_states``' enums and change only through the
``domain.plan.Plan`` aggregate: ``load`` a plan, call its methods, ``save`` it (the changed steps
and the plan row are written back).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from services.chassis.pagination import PageParams, fetch_page
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.codecs import regimen_json
from services.scheduler.adapters.orm import plan_steps, plans
from services.scheduler.adapters.stored_plan import summary_json
from services.scheduler.domain import model
from services.scheduler.domain.plan import Plan, PlanStep
from services.scheduler.domain.plan_states import PlanKind, PlanStatus, PlanStepStatus
from services.scheduler.domain.planning import TaperPlan


@dataclass(frozen=True)
class PlanRecord:
    row: dict[str, Any]
    steps: list[dict[str, Any]]


# The columns a patient's plan list shows.
_LISTED = (
    plans.c.id,
    plans.c.status,
    plans.c.strategy,
    plans.c.summary,
    plans.c.created_by,
    plans.c.created_at,
    plans.c.approved_at,
    plans.c.version,
)


@dataclass
class PlanRepository:
    uow: UnitOfWork

    # --- reading --------------------------------------------------------------------------------
    async def get(self, patient_id: uuid.UUID, plan_id: uuid.UUID) -> PlanRecord | None:
        """A plan as clinicians read it; a manual reduction's one-step plan is not one (None)."""
        return await self._record(
            plan_id, plans.c.patient_id == patient_id, plans.c.kind == PlanKind.PLANNED.value
        )

    async def _record(self, plan_id: uuid.UUID, *also: Any) -> PlanRecord | None:
        """The plan's row (if it also matches ``also``) and its steps in order; None if none."""
        session = self.uow.session
        query = sa.select(plans).where(plans.c.id == plan_id, *also)
        row = (await session.execute(query)).mappings().first()
        if row is None:
            return None
        steps = await session.execute(
            sa.select(plan_steps)
            .where(plan_steps.c.plan_id == plan_id)
            .order_by(plan_steps.c.number)
        )
        return PlanRecord(dict(row), [dict(s) for s in steps.mappings()])

    async def load(self, plan_id: uuid.UUID) -> Plan | None:
        """The plan (either kind) as an aggregate, with its steps; ``save`` writes it back."""
        record = await self._record(plan_id)
        if record is None:
            return None
        row = record.row
        return Plan(
            plan_id=row["id"],
            patient_id=row["patient_id"],
            kind=PlanKind(row["kind"]),
            status=PlanStatus(row["status"]),
            approved_by_decision_id=row["approved_by_decision_id"],
            summary=row["summary"],
            input=row["input"],
            version=row["version"],
            approved_at=row["approved_at"],
            steps=[
                PlanStep(
                    number=s["number"],
                    effective_on=s["effective_on"],
                    kind=s["kind"],
                    administrations=s["administrations"],
                    status=PlanStepStatus(s["status"]),
                    dose_step_id=s["dose_step_id"],
                    planned_from=s["planned_from"],
                )
                for s in record.steps
            ],
        )

    async def save(self, plan: Plan, *, read_version: int | None = None) -> bool:
        """Write what changed: the plan row (status, approval) and the changed steps; the
        aggregate then starts afresh. With ``read_version`` the plan row is written only if the
        plan is still at that version (False: it changed concurrently, nothing written); without,
        a changed status bumps the version whatever it is (as closing a plan always did)."""
        session = self.uow.session
        values: dict[str, Any] = {}
        if plan.status_changed:
            values["status"] = plan.status.value
        if plan.approval_changed:
            values["approved_by_decision_id"] = plan.approved_by_decision_id
            values["approved_at"] = plan.approved_at
        if read_version is not None:
            if not await self.update(plan.plan_id, read_version, **values):
                return False
            plan.version = read_version + 1
        elif values:
            await session.execute(
                sa.update(plans)
                .where(plans.c.id == plan.plan_id)
                .values(**values, version=plans.c.version + 1)
            )
            plan.version += 1
        for number in sorted(plan.changed_steps):
            s = plan.step(number)
            assert s is not None
            await session.execute(
                sa.update(plan_steps)
                .where(plan_steps.c.plan_id == plan.plan_id, plan_steps.c.number == number)
                .values(
                    status=s.status.value, effective_on=s.effective_on, dose_step_id=s.dose_step_id
                )
            )
        plan.changed_steps.clear()
        plan.status_changed = plan.approval_changed = False
        return True

    async def status_of(self, plan_id: uuid.UUID) -> str | None:
        status: str | None = await self.uow.session.scalar(
            sa.select(plans.c.status).where(plans.c.id == plan_id)
        )
        return status

    async def is_active(self, plan_id: uuid.UUID) -> bool:
        return await self.status_of(plan_id) == PlanStatus.ACTIVE

    async def active_manual(self, patient_id: uuid.UUID) -> uuid.UUID | None:
        """The patient's active manual plan (a reduction scheduled by hand), if any."""
        plan_id: uuid.UUID | None = await self.uow.session.scalar(
            sa.select(plans.c.id).where(
                plans.c.patient_id == patient_id,
                plans.c.kind == PlanKind.MANUAL.value,
                plans.c.status == PlanStatus.ACTIVE.value,
            )
        )
        return plan_id

    async def locked_version(self, patient_id: uuid.UUID, plan_id: uuid.UUID) -> int | None:
        """The plan's version, its row locked until commit (PostgreSQL); None for a manual
        reduction's one-step plan, which no clinician reads or writes as a plan."""
        version: int | None = await self.uow.session.scalar(
            sa.select(plans.c.version)
            .where(
                plans.c.id == plan_id,
                plans.c.patient_id == patient_id,
                plans.c.kind == PlanKind.PLANNED.value,
            )
            .with_for_update()
        )
        return version

    async def steps(self, plan_id: uuid.UUID) -> list[dict[str, Any]]:
        found = await self.uow.session.execute(
            sa.select(plan_steps).where(plan_steps.c.plan_id == plan_id)
        )
        return [dict(r) for r in found.mappings()]

    async def page(
        self, patient_id: uuid.UUID, page: PageParams, status: str | None = None
    ) -> tuple[list[dict[str, Any]], dict[uuid.UUID, list[dict[str, Any]]], str | None]:
        """One page of the patient's plans, newest first, with each plan's steps (manual
        reductions' one-step plans are not listed)."""
        query = sa.select(*_LISTED).where(
            plans.c.patient_id == patient_id, plans.c.kind == PlanKind.PLANNED.value
        )
        if status is not None:
            query = query.where(plans.c.status == status)
        session = self.uow.session
        rows, cursor = await fetch_page(session, query, [plans.c.created_at, plans.c.id], page)
        steps: dict[uuid.UUID, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
        if steps:
            found = await session.execute(
                sa.select(plan_steps).where(plan_steps.c.plan_id.in_(list(steps)))
            )
            for s in found.mappings():
                steps[s["plan_id"]].append(dict(s))
        return rows, steps, cursor

    # --- writing --------------------------------------------------------------------------------
    async def add_draft(
        self,
        patient_id: uuid.UUID,
        clinician: str,
        stored_input: dict[str, Any],
        result: TaperPlan,
    ) -> uuid.UUID:
        """Store the planner's result as a DRAFT with all its steps."""
        plan_id = uuid.uuid4()
        await self.uow.session.execute(
            sa.insert(plans).values(
                id=plan_id,
                patient_id=patient_id,
                status=PlanStatus.DRAFT.value,
                input=stored_input,
                strategy=result.strategy.value,
                reference_versions=dict(result.reference_versions),
                summary=summary_json(result),
                created_by=clinician,
                created_at=self.uow.clock.now(),
                approved_by_decision_id=None,
                approved_at=None,
                version=1,
            )
        )
        await self.add_steps(plan_id, result, first_number=1)
        return plan_id

    async def add_manual(
        self,
        taper: model.PatientTaper,
        step: model.DoseStep,
        decision: model.ClinicianDecision,
        reference_versions: dict[str, str],
    ) -> uuid.UUID:
        """Store a reduction scheduled by hand as an ACTIVE one-step plan of kind manual, approved
        by the clinician's ``decision``; its step carries the taper's scheduled ``step``."""
        plan_id = uuid.uuid4()
        session, now = self.uow.session, self.uow.clock.now()
        eq = taper.diazepam_eq(step.regimen_after)
        await session.execute(
            sa.insert(plans).values(
                id=plan_id,
                patient_id=taper.patient_id,
                status=PlanStatus.ACTIVE.value,
                kind=PlanKind.MANUAL.value,
                input={},
                strategy=PlanKind.MANUAL.value,
                reference_versions=reference_versions,
                summary={"drug": step.drug},
                created_by=decision.clinician,
                created_at=now,
                approved_by_decision_id=decision.decision_id,
                approved_at=now,
                version=1,
            )
        )
        await session.execute(
            sa.insert(plan_steps).values(
                plan_id=plan_id,
                number=1,
                effective_on=step.effective_on,
                daily_dose_mg=sum((a.dose_mg for a in step.regimen_after), Decimal(0)),
                diazepam_eq_mg=Decimal(eq.numerator) / Decimal(eq.denominator),
                administrations=regimen_json(step.regimen_after),
                kind=step.kind.value,
                hold_weeks=0,
                status=PlanStepStatus.PLANNED.value,
                dose_step_id=step.step_id,
                planned_from=regimen_json(step.regimen_before),
            )
        )
        return plan_id

    async def add_steps(
        self,
        plan_id: uuid.UUID,
        result: TaperPlan,
        first_number: int,
        status: PlanStepStatus = PlanStepStatus.PLANNED,
    ) -> None:
        previous = result.baseline
        for offset, s in enumerate(result.steps):
            await self.uow.session.execute(
                sa.insert(plan_steps).values(
                    plan_id=plan_id,
                    number=first_number + offset,
                    effective_on=s.effective_on,
                    daily_dose_mg=s.daily_dose_mg,
                    diazepam_eq_mg=s.diazepam_eq_mg,
                    administrations=regimen_json(s.administrations),
                    kind=s.kind.value,
                    hold_weeks=s.hold_weeks,
                    status=status.value,
                    dose_step_id=None,
                    planned_from=regimen_json(previous),
                )
            )
            previous = s.administrations

    async def update(self, plan_id: uuid.UUID, read_version: int, **values: Any) -> bool:
        """Write ``values`` and bump the version if the plan is still at ``read_version``."""
        result = await self.uow.session.execute(
            sa.update(plans)
            .where(plans.c.id == plan_id, plans.c.version == read_version)
            .values(**values, version=read_version + 1)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
