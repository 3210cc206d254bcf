"""Loading and saving a patient's taper (``tapers`` + ``dose_steps``) and the decision log.

``TaperRepository.get`` loads the taper with every dose step of the patient (the rate bound looks
back across plans) and hands it to the unit of work, which writes the events the taper records to
the outbox on commit. ``save`` writes the taper's state if nobody changed it since it was read
(else ``StaleTaper``) and the steps that are new or changed, each announced step with the event
that announced it.
"""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from contracts import DoseReduced, DoseRestored
from services.chassis.errors import Conflict
from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.codecs import (
    equivalence_from,
    equivalence_json,
    regimen_from,
    regimen_json,
)
from services.scheduler.adapters.orm import clinician_decisions, dose_steps, tapers
from services.scheduler.domain import model


class StaleTaper(Conflict):
    """Another transaction changed the taper first (409 to a caller; consumers and timers retry)."""

    def __init__(self) -> None:
        super().__init__("the taper changed concurrently")


@dataclass(eq=False)
class TaperRepository:
    """Made by ``TaperRepository.of(uow)``: every one made in the same unit of work shares what
    was read (so a taper loaded in one function can be saved in another)."""

    uow: UnitOfWork
    # Per patient: each stored step's status as read or last written (what ``save`` compares).
    _stored: dict[uuid.UUID, dict[uuid.UUID, model.StepStatus]] = field(default_factory=dict)

    @classmethod
    def of(cls, uow: UnitOfWork) -> TaperRepository:
        """The unit of work's taper repository (made on first use)."""
        return cls(uow, _STORED.setdefault(uow.session, {}))

    async def get(self, patient_id: uuid.UUID) -> model.PatientTaper | None:
        session = self.uow.session
        row = (
            (await session.execute(sa.select(tapers).where(tapers.c.patient_id == patient_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        step_rows = await session.execute(
            sa.select(dose_steps)
            .where(dose_steps.c.patient_id == patient_id)
            .order_by(dose_steps.c.step_number)
        )
        taper = model.PatientTaper(
            patient_id=row["patient_id"],
            plan_id=row["plan_id"],
            drug=row["drug"],
            half_life_class=row["half_life_class"],
            start_daily_dose_mg=Decimal(row["start_daily_dose_mg"]),
            current_daily_dose_mg=Decimal(row["current_daily_dose_mg"]),
            held=row["held"],
            held_reason=row["held_reason"],
            stage=model.Stage(row["stage"]),
            version=row["version"],
            steps=[_step(s, row["drug"]) for s in step_rows.mappings()],
            regimen=regimen_from(row["regimen"]),
            equivalence=equivalence_from(row["equivalence"]),
            timezone=row["timezone"],
            first_dose_time=row["first_dose_time"],
        )
        self._stored[patient_id] = {s.step_id: s.status for s in taper.steps}
        self.uow.track(taper)
        return taper

    async def add(self, taper: model.PatientTaper) -> None:
        """Store a just-started taper (version 1)."""
        now = self.uow.clock.now()
        await self.uow.session.execute(
            sa.insert(tapers).values(
                patient_id=taper.patient_id,
                created_at=now,
                start_daily_dose_mg=taper.start_daily_dose_mg,
                **_state(taper, version=1, now=now),
            )
        )
        taper.version = 1
        self._stored[taper.patient_id] = {}
        self.uow.track(taper)
        await self._save_steps(taper)

    async def save(self, taper: model.PatientTaper) -> None:
        """Write the taper's state if nobody changed it since it was read, else ``StaleTaper``."""
        result = await self.uow.session.execute(
            sa.update(tapers)
            .where(tapers.c.patient_id == taper.patient_id, tapers.c.version == taper.version)
            .values(**_state(taper, version=taper.version + 1, now=self.uow.clock.now()))
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise StaleTaper()
        taper.version += 1
        await self._save_steps(taper)

    async def patient_of_step(self, step_id: uuid.UUID) -> uuid.UUID | None:
        patient_id: uuid.UUID | None = await self.uow.session.scalar(
            sa.select(dose_steps.c.patient_id).where(dose_steps.c.id == step_id)
        )
        return patient_id

    async def save_steps(self, taper: model.PatientTaper) -> None:
        """Write the taper's new or changed steps only (a blocked step changes no taper state)."""
        await self._save_steps(taper)

    async def _save_steps(self, taper: model.PatientTaper) -> None:
        stored = self._stored.setdefault(taper.patient_id, {})
        announced = {
            e.step_number: e for e in taper.events if isinstance(e, DoseReduced | DoseRestored)
        }
        for step in taper.steps:
            if stored.get(step.step_id) is step.status:
                continue
            values: dict[str, Any] = {"status": step.status.value}
            event = announced.get(step.step_number)
            if event is not None and step.status is model.StepStatus.EMITTED:
                values |= {"emitted_at": event.occurred_at, "event_id": event.event_id}
            if step.step_id in stored:
                # (a blocked step scheduled again on resume moves to its new day)
                await self.uow.session.execute(
                    sa.update(dose_steps)
                    .where(dose_steps.c.id == step.step_id)
                    .values(**values, effective_on=step.effective_on)
                )
            else:
                await self.uow.session.execute(
                    sa.insert(dose_steps).values(
                        **_step_row(taper, step), created_at=self.uow.clock.now(), **values
                    )
                )
            stored[step.step_id] = step.status


# What each session read or wrote (a unit of work's session lives for one transaction).
_STORED: weakref.WeakKeyDictionary[object, dict[uuid.UUID, dict[uuid.UUID, model.StepStatus]]] = (
    weakref.WeakKeyDictionary()
)


def _state(taper: model.PatientTaper, *, version: int, now: datetime) -> dict[str, Any]:
    return {
        "plan_id": taper.plan_id,
        "drug": taper.drug,
        "half_life_class": taper.half_life_class,
        "current_daily_dose_mg": taper.current_daily_dose_mg,
        "regimen": regimen_json(taper.regimen) if taper.regimen else None,
        "equivalence": equivalence_json(taper.equivalence),
        "timezone": taper.timezone,
        "first_dose_time": taper.first_dose_time,
        "held": taper.held,
        "held_reason": taper.held_reason,
        "stage": taper.stage.value,
        "version": version,
        "updated_at": now,
    }


def _step(s: sa.RowMapping, taper_drug: str) -> model.DoseStep:
    return model.DoseStep(
        step_id=s["id"],
        step_number=s["step_number"],
        previous_daily_dose_mg=Decimal(s["previous_daily_dose_mg"]),
        new_daily_dose_mg=Decimal(s["new_daily_dose_mg"]),
        effective_on=s["effective_on"],
        decision_id=s["decision_id"],
        overridden=s["overridden"],
        status=model.StepStatus(s["status"]),
        drug=s["drug"] or taper_drug,
        kind=model.ChangeKind(s["kind"] or model.ChangeKind.REDUCTION.value),
        before=regimen_from(s["regimen_before"]),
        after=regimen_from(s["regimen_after"]),
    )


def _step_row(taper: model.PatientTaper, step: model.DoseStep) -> dict[str, Any]:
    return {
        "id": step.step_id,
        "patient_id": taper.patient_id,
        "plan_id": taper.plan_id,
        "step_number": step.step_number,
        "previous_daily_dose_mg": step.previous_daily_dose_mg,
        "new_daily_dose_mg": step.new_daily_dose_mg,
        "effective_on": step.effective_on,
        "decision_id": step.decision_id,
        "overridden": step.overridden,
        "drug": step.drug,
        "kind": step.kind.value,
        "regimen_before": regimen_json(step.regimen_before),
        "regimen_after": regimen_json(step.regimen_after),
    }


@dataclass
class DecisionLog:
    """Every clinician (or patient) decision, with what was decided: who, what, why, when."""

    uow: UnitOfWork

    async def record(
        self,
        patient_id: uuid.UUID,
        decision: model.ClinicianDecision,
        payload: dict[str, Any],
        *,
        role: str = "clinician",
    ) -> None:
        await self.uow.session.execute(
            sa.insert(clinician_decisions).values(
                id=decision.decision_id,
                patient_id=patient_id,
                clinician=decision.clinician,
                decided_by_role=role,
                kind=decision.kind.value,
                reason_code=decision.reason_code,
                payload=payload,
                decided_at=self.uow.clock.now(),
            )
        )

    async def get(self, decision_id: uuid.UUID) -> model.ClinicianDecision:
        row = (
            (
                await self.uow.session.execute(
                    sa.select(clinician_decisions).where(clinician_decisions.c.id == decision_id)
                )
            )
            .mappings()
            .one()
        )
        return model.ClinicianDecision(
            decision_id=row["id"],
            clinician=row["clinician"],
            kind=model.DecisionKind(row["kind"]),
            reason_code=row["reason_code"],
        )

    async def page(
        self,
        patient_id: uuid.UUID,
        page: PageParams,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, one page of decisions (of ``kind`` if given) taken in [since, until)."""
        d = clinician_decisions.c
        query = sa.select(clinician_decisions).where(d.patient_id == patient_id)
        if kind is not None:
            query = query.where(d.kind == kind)
        query = within(query, d.decided_at, since, until)
        return await fetch_page(self.uow.session, query, (d.decided_at, d.id), page)
