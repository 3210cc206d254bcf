"""Scheduler's HTTP API, under ``/api/scheduler``.

Writes are clinician-only (and only for patients on their panel); the patient may read their own
taper. Every dose change carries the clinician's reason as a code, never free text.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.config import JsonDict

from services.chassis.auth import CurrentPrincipal, Role
from services.chassis.dates import PlausibleDate
from services.chassis.decimals import DecimalStr
from services.chassis.entrypoint import CLINICIAN, PatientAccess, patient_access
from services.chassis.errors import FieldRefusal
from services.chassis.idempotency import Idempotent
from services.chassis.openapi import name_operations
from services.chassis.runtime import ServiceRuntime
from services.chassis.uow import UnitOfWork
from services.scheduler.domain.model import (
    CODE_PATTERN,
    DRUG_PATTERN,
    DoseStep,
    PatientTaper,
    Regimen,
    daily_mg,
)
from services.scheduler.domain.plan_view import NextStep, Upcoming
from services.scheduler.entrypoints.patient_day_fields import FirstDoseTime, TimeZoneName
from services.scheduler.service_layer import plan_queries, taper_commands
from services.scheduler.service_layer.errors import RuleRefused

ReasonCode = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
DrugCode = Annotated[str, StringConstraints(pattern=DRUG_PATTERN)]
HalfLifeClass = Literal["ultra_short", "short", "intermediate", "long"]


class StartTaperIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "drug": "diazepam",
                    "half_life_class": "long",
                    "current_daily_dose_mg": "20",
                    "reason_code": "taper_initiated",
                    "timezone": "America/Chicago",
                    "first_dose_time": "08:00",
                }
            ]
        },
    )

    drug: DrugCode = Field(
        examples=["diazepam"], description="The drug taken now (a code of the equivalence table)."
    )
    half_life_class: HalfLifeClass = Field(description="The drug's half-life class.")
    current_daily_dose_mg: Decimal = Field(
        gt=0,
        le=1000,
        decimal_places=4,
        description="Today's total daily dose in mg (a decimal string or number).",
    )
    reason_code: ReasonCode = Field(
        "taper_initiated", description="Why the taper starts (a code, never free text)."
    )
    timezone: TimeZoneName | None = Field(
        None, description="The patient's IANA time zone; null: steps start 00:00 UTC."
    )
    first_dose_time: FirstDoseTime | None = Field(
        None, description="Local time a step takes effect (HH:MM); null: the data's default."
    )


class DoseReductionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"new_daily_dose_mg": "18", "effective_on": "2026-12-14", "reason_code": "plan"}
            ]
        },
    )

    # 0 is the final step (stopping): exempt from the bound from at or below the final-step dose
    # (planning defaults, 0.5 mg diazepam-eq, in the taper's drug); above it, an override.
    new_daily_dose_mg: Decimal = Field(
        ge=0, le=1000, decimal_places=4, description="The new total daily dose in mg (0: stop)."
    )
    effective_on: PlausibleDate = Field(description="Today or later (service clock, UTC).")
    reason_code: ReasonCode = Field(description="Why (a code, never free text).")
    override: bool = Field(
        default=False, description="Exceed the taper-rate bound for this patient."
    )
    override_reason_code: ReasonCode | None = Field(
        None, description="Required with override: why the bound is exceeded."
    )


class ClinicianActionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason_code": "withdrawal"}]}
    )

    reason_code: ReasonCode = Field(description="Why (a code, never free text).")


class DrugDoseOut(BaseModel):
    drug: str = Field(description="The drug code.")
    daily_dose_mg: DecimalStr = Field(description="Its total daily mg.")

    @staticmethod
    def of_regimen(regimen: Regimen) -> list[DrugDoseOut]:
        drugs = dict.fromkeys(a.drug for a in regimen)
        return [DrugDoseOut(drug=d, daily_dose_mg=daily_mg(regimen, d)) for d in drugs]


_STEP: JsonDict = {
    "id": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d",
    "step_number": 1,
    "kind": "reduction",
    "drug": "diazepam",
    "previous_daily_dose_mg": "20",
    "new_daily_dose_mg": "18",
    "regimen_after": [{"drug": "diazepam", "daily_dose_mg": "18"}],
    "effective_on": "2026-12-14",
    "decision_id": "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9",
    "overridden": False,
    "status": "scheduled",
}


class DoseStepOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_STEP]})

    id: uuid.UUID = Field(description="The step's id.")
    step_number: int = Field(description="1 for the first step of the taper.")
    kind: str = Field(description="reduction | crossover | final | restore")
    drug: str = Field(description="The drug the step changes (the one being tapered).")
    previous_daily_dose_mg: DecimalStr = Field(description="Daily mg of the drug before the step.")
    new_daily_dose_mg: DecimalStr = Field(description="Daily mg of the drug from the step on.")
    regimen_after: list[DrugDoseOut] = Field(description="Every drug's daily mg after the step.")
    effective_on: date = Field(
        description="The day the step takes effect (the patient's local date)."
    )
    decision_id: uuid.UUID = Field(description="The clinician decision that made it.")
    overridden: bool = Field(
        description="Whether it exceeds the taper-rate bound by the clinician's override."
    )
    status: str = Field(description="scheduled | emitted | blocked_by_hold | cancelled.")

    @classmethod
    def of(cls, step: DoseStep) -> DoseStepOut:
        return cls(
            id=step.step_id,
            step_number=step.step_number,
            kind=step.kind.value,
            drug=step.drug,
            regimen_after=DrugDoseOut.of_regimen(step.regimen_after),
            previous_daily_dose_mg=step.previous_daily_dose_mg,
            new_daily_dose_mg=step.new_daily_dose_mg,
            effective_on=step.effective_on,
            decision_id=step.decision_id,
            overridden=step.overridden,
            status=step.status.value,
        )


class NextStepOut(BaseModel):
    source: str = Field(
        description="plan: a step of the taper's plan; reduction: a single scheduled reduction."
    )
    number: int = Field(
        description="Its number in the plan's schedule (getPlan's steps), or the taper's step "
        "number for a single reduction."
    )
    effective_on: date = Field(description="The day it is planned to take effect.")
    takes_effect_at: datetime = Field(
        description="When: the patient's first dose that day, in their time zone."
    )
    kind: str = Field(description="reduction | crossover | final.")
    status: str = Field(description="planned | scheduled | blocked_by_hold | proposed.")
    daily_dose_mg: DecimalStr = Field(description="The day's total mg from then on.")
    regimen: list[DrugDoseOut] = Field(description="Every drug's daily mg from then on.")


class TaperOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "patient_id": "5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
                    "plan_id": "8c9d0e1f-2a3b-4c4d-9e5f-6a7b8c9d0e1f",
                    "drug": "diazepam",
                    "half_life_class": "long",
                    "start_daily_dose_mg": "20",
                    "current_daily_dose_mg": "20",
                    "regimen": [{"drug": "diazepam", "daily_dose_mg": "20"}],
                    "held": False,
                    "held_reason": None,
                    "stage": "active",
                    "version": 2,
                    "steps": [_STEP],
                    "as_of": "2026-12-07T09:00:00Z",
                    "timezone": "America/Chicago",
                    "first_dose_time": "08:00:00",
                    "next_step": {
                        "source": "plan",
                        "number": 2,
                        "effective_on": "2026-12-28",
                        "takes_effect_at": "2026-12-28T14:00:00Z",
                        "kind": "reduction",
                        "status": "scheduled",
                        "daily_dose_mg": "16.5",
                        "regimen": [{"drug": "diazepam", "daily_dose_mg": "16.5"}],
                    },
                    "next_step_blocked_by": None,
                }
            ]
        }
    )

    patient_id: uuid.UUID = Field(description="The patient.")
    plan_id: uuid.UUID = Field(description="The plan the taper follows.")
    drug: str = Field(description="The drug being tapered.")
    half_life_class: str = Field(description="ultra_short | short | intermediate | long.")
    start_daily_dose_mg: DecimalStr = Field(description="Daily mg when the taper started.")
    current_daily_dose_mg: DecimalStr = Field(description="Daily mg of `drug`, the tapered drug.")
    regimen: list[DrugDoseOut] = Field(description="Every drug taken now (two in a crossover).")
    held: bool = Field(description="Whether no step takes effect until a clinician resumes.")
    held_reason: str | None = Field(description="Why it is held (a code); null when not held.")
    stage: str = Field(
        description="pre_taper | crossover | active | held | maintenance | completed."
    )
    version: int = Field(description="Increases with every change to the taper.")
    steps: list[DoseStepOut] = Field(description="Every dose step, in order.")
    as_of: datetime = Field(description="The service clock's time of this view.")
    timezone: str | None = Field(
        default=None, description="The patient's IANA time zone (null: steps start 00:00 UTC)."
    )
    first_dose_time: time | None = Field(
        default=None, description="Local time a step takes effect (null: the data's default)."
    )
    next_step: NextStepOut | None = Field(
        default=None,
        description="The next dose change not taken yet: the plan's next step (or a scheduled "
        "single reduction); null when none is planned (next_step_blocked_by says why).",
    )
    next_step_blocked_by: str | None = Field(
        default=None,
        description="Why the next dose change cannot take effect as planned; null: next_step "
        "takes effect on its date. held: the taper is held (held_reason says why) until a "
        "clinician resumes; awaiting_approval: re-planned after a return to the prior dose, a "
        "clinician approves the plan's proposed steps first; end_of_plan: the active plan has "
        "no step left (a product missing: see the plan's formulation needs); none_scheduled: "
        "no plan in force and no reduction scheduled; completed / maintenance: the taper has "
        "ended. The pace never blocks a planned step: each was checked against the taper-rate "
        "bound when approved, adjusted or scheduled.",
    )

    @classmethod
    def of(cls, taper: PatientTaper, as_of: datetime, upcoming: NextStep | None = None) -> TaperOut:
        return cls(
            patient_id=taper.patient_id,
            plan_id=taper.plan_id,
            drug=taper.drug,
            half_life_class=taper.half_life_class,
            start_daily_dose_mg=taper.start_daily_dose_mg,
            current_daily_dose_mg=taper.current_daily_dose_mg,
            regimen=DrugDoseOut.of_regimen(taper.current_regimen),
            held=taper.held,
            held_reason=taper.held_reason,
            stage=taper.stage.value,
            version=taper.version,
            steps=[DoseStepOut.of(s) for s in taper.steps],
            as_of=as_of,
            timezone=taper.timezone,
            first_dose_time=taper.first_dose_time,
            next_step=_next_step_out(taper, upcoming.step) if upcoming and upcoming.step else None,
            next_step_blocked_by=upcoming.blocked_by if upcoming else None,
        )


def _next_step_out(taper: PatientTaper, step: Upcoming) -> NextStepOut:
    return NextStepOut(
        source=step.source,
        number=step.number,
        effective_on=step.effective_on,
        takes_effect_at=taper.step_due_at(step.effective_on),
        kind=step.kind,
        status=step.status,
        daily_dose_mg=sum((a.dose_mg for a in step.regimen), Decimal(0)),
        regimen=DrugDoseOut.of_regimen(step.regimen),
    )


async def taper_view(uow: UnitOfWork, taper: PatientTaper, as_of: datetime) -> TaperOut:
    """The taper as a client reads it, with its next step (read in the caller's transaction)."""
    return TaperOut.of(taper, as_of, await plan_queries.next_step_of(uow, taper))


_BODY_FIELDS = {
    "new_daily_dose_mg",
    "effective_on",
    "reason_code",
    "override",
    "override_reason_code",
    "drug",
    "half_life_class",
    "current_daily_dose_mg",
}


def _unprocessable(exc: RuleRefused) -> FieldRefusal:
    return FieldRefusal.naming(exc.field, exc.problem, "taper_rule", known=_BODY_FIELDS)


# A clinician's change to the taper (or one dose step), authorized, keyed, committed (chassis kit).
TaperUpdate = Annotated[
    PatientAccess,
    Depends(patient_access("update", "taper", roles=CLINICIAN, commit=True, idempotent=True)),
]
DoseStepUpdate = Annotated[
    PatientAccess,
    Depends(patient_access("update", "dose_step", roles=CLINICIAN, commit=True, idempotent=True)),
]
HoldRequestAccess = Annotated[
    PatientAccess,
    Depends(patient_access("update", "taper", roles=(Role.PATIENT,), commit=True, idempotent=True)),
]
TaperRead = Annotated[PatientAccess, Depends(patient_access("read", "taper"))]

TaperAction = Callable[[taper_commands.ClinicianAction, UnitOfWork], Awaitable[PatientTaper]]

# POST /patients/{id}/taper/<action>: a clinician's decision on the taper, with a reason code.
_CLINICIAN_ACTIONS: tuple[tuple[str, TaperAction, str], ...] = (
    ("hold", taper_commands.hold_taper, "Hold the taper: no step takes effect until resumed"),
    ("resume", taper_commands.resume_taper, "Lift a hold; an active plan goes on"),
    (
        "return-to-prior-dose",
        taper_commands.return_to_prior_dose,
        "Back to the dose before the last step, from today; held until resumed",
    ),
    (
        "end-at-maintenance",
        taper_commands.end_at_maintenance,
        "End the taper at the current dose; an active plan closes",
    ),
)


def _add_clinician_action(
    router: APIRouter,
    runtime: ServiceRuntime,
    action: str,
    use_case: TaperAction,
    summary: str,
) -> None:
    async def endpoint(
        patient_id: uuid.UUID,
        body: ClinicianActionIn,
        principal: CurrentPrincipal,
        access: TaperUpdate,
        idem: Idempotent,
    ) -> TaperOut:
        async with access.refusing(RuleRefused, _unprocessable) as uow:
            taper = await use_case(
                taper_commands.ClinicianAction(patient_id, principal.subject, body.reason_code), uow
            )
            out = await taper_view(uow, taper, runtime.clock.now())
            await idem.record(uow, out)
        return out

    router.add_api_route(
        f"/patients/{{patient_id}}/taper/{action}",
        endpoint,
        methods=["POST"],
        response_model=TaperOut,
        summary=f"{summary} (clinician)",
        name=action.replace("-", "_"),
    )


# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "POST /patients/{patient_id}/taper": "startTaper",
    "POST /patients/{patient_id}/dose-reductions": "reduceDose",
    "POST /patients/{patient_id}/taper/hold": "holdTaper",
    "POST /patients/{patient_id}/taper/resume": "resumeTaper",
    "POST /patients/{patient_id}/taper/return-to-prior-dose": "returnToPriorDose",
    "POST /patients/{patient_id}/taper/end-at-maintenance": "endTaperAtMaintenance",
    "POST /patients/{patient_id}/taper/hold-request": "requestTaperHold",
    "GET /patients/{patient_id}/taper": "getTaper",
}


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["taper"])

    @router.post(
        "/patients/{patient_id}/taper",
        status_code=status.HTTP_201_CREATED,
        response_model=TaperOut,
        summary="Start a patient's taper (clinician)",
    )
    async def start(
        patient_id: uuid.UUID,
        body: StartTaperIn,
        principal: CurrentPrincipal,
        access: TaperUpdate,
        idem: Idempotent,
    ) -> TaperOut:
        async with access.refusing(RuleRefused, _unprocessable) as uow:
            taper = await taper_commands.start_taper(
                taper_commands.StartTaper(
                    patient_id=patient_id,
                    clinician=principal.subject,
                    drug=body.drug,
                    half_life_class=body.half_life_class,
                    current_daily_dose_mg=body.current_daily_dose_mg,
                    reason_code=body.reason_code,
                    timezone=body.timezone,
                    first_dose_time=body.first_dose_time,
                ),
                uow,
            )
            out = await taper_view(uow, taper, runtime.clock.now())
            await idem.record(uow, out, status.HTTP_201_CREATED)
        return out

    @router.post(
        "/patients/{patient_id}/dose-reductions",
        status_code=status.HTTP_201_CREATED,
        response_model=DoseStepOut,
        summary="Schedule the next dose reduction (clinician)",
    )
    async def reduce(
        patient_id: uuid.UUID,
        body: DoseReductionIn,
        principal: CurrentPrincipal,
        access: DoseStepUpdate,
        idem: Idempotent,
    ) -> DoseStepOut:
        async with access.refusing(RuleRefused, _unprocessable) as uow:
            step = await taper_commands.schedule_reduction(
                taper_commands.ScheduleReduction(
                    patient_id=patient_id,
                    clinician=principal.subject,
                    new_daily_dose_mg=body.new_daily_dose_mg,
                    effective_on=body.effective_on,
                    reason_code=body.reason_code,
                    override=body.override,
                    override_reason_code=body.override_reason_code,
                ),
                uow,
            )
            out = DoseStepOut.of(step)
            await idem.record(uow, out, status.HTTP_201_CREATED)
        return out

    for action, use_case, summary in _CLINICIAN_ACTIONS:
        _add_clinician_action(router, runtime, action, use_case, summary)

    @router.post(
        "/patients/{patient_id}/taper/hold-request",
        response_model=TaperOut,
        summary="The patient asks for a hold: held at once until a clinician resumes (patient)",
    )
    async def hold_request(
        patient_id: uuid.UUID,
        body: ClinicianActionIn,
        principal: CurrentPrincipal,
        access: HoldRequestAccess,
        idem: Idempotent,
    ) -> TaperOut:
        async with access as uow:
            taper = await taper_commands.request_hold(
                taper_commands.PatientHoldRequest(patient_id, principal.subject, body.reason_code),
                uow,
            )
            out = await taper_view(uow, taper, runtime.clock.now())
            await idem.record(uow, out)
        return out

    @router.get(
        "/patients/{patient_id}/taper",
        response_model=TaperOut,
        summary="The taper and its steps (the patient, or a clinician on their panel)",
    )
    async def read(patient_id: uuid.UUID, access: TaperRead) -> TaperOut:
        async with access as uow:
            taper = await taper_commands.get_taper(uow, patient_id)
            return await taper_view(uow, taper, runtime.clock.now())

    return [name_operations(router, OPERATION_IDS)]
