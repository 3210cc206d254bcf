"""Taper plan preview, under ``/api/scheduler/plans`` (issue 3): clinician only, nothing stored.

The body carries no patient identifier and nothing is saved, so there is no patient to audit
access to; the clinician role is still required. ``?format=`` picks JSON (default), FHIR R4
(``application/fhir+json``: a MedicationRequest, or a Bundle of one per drug for a crossover) or
an SVG chart (``image/svg+xml``). Input the planner refuses is a 422 whose ``loc`` names the field.

A stored plan (``GET /api/scheduler/patients/{patient_id}/plans/{plan_id}``) takes the same
``?format=``: it is rebuilt as a ``TaperPlan`` (``adapters.stored_plan``, cancelled steps left
out) and rendered by the same adapters, with the FHIR ``subject`` ``Patient/{patient_id}`` and
the plan's status mapped to the MedicationRequest status. Access is authorized and audited first.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.chassis.auth import CurrentPrincipal, Role, require_role
from services.chassis.dates import PlausibleAwareDatetime, PlausibleDate
from services.chassis.decimals import DecimalStr, canonical_json
from services.chassis.entrypoint import CLINICIAN, PatientAccess, patient_access
from services.chassis.errors import FieldRefusal
from services.chassis.idempotency import Idempotent, IdempotentRequest
from services.chassis.openapi import FHIR_RESOURCE, SVG_BODY, name_operations, stored_examples
from services.chassis.pagination import SINCE_DOC, UNTIL_DOC, PageQuery, link_next, paginated
from services.chassis.preconditions import IfMatch, check_if_match, conditional, etag, with_etag
from services.chassis.runtime import ServiceRuntime
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.chart import plan_to_svg
from services.scheduler.adapters.fhir import medication_request_status, plan_to_fhir
from services.scheduler.adapters.stored_plan import record_to_plan
from services.scheduler.domain.model import CODE_PATTERN, DRUG_PATTERN, DecisionKind
from services.scheduler.domain.plan_view import schedule
from services.scheduler.domain.planning import (
    BoundOverride,
    EquivalenceOverride,
    History,
    PacePreference,
    PlanningError,
    PlanningInput,
    Strategy,
    TaperPlan,
    equivalence_v1,
    plan,
)
from services.scheduler.entrypoints.patient_day_fields import FirstDoseTime, TimeZoneName
from services.scheduler.service_layer import plan_queries, replanning
from services.scheduler.service_layer import plans as plan_cases
from services.scheduler.service_layer.errors import RuleRefused

ReasonCode = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
DoseMg = Annotated[Decimal, Field(gt=0, le=1000, decimal_places=4)]
MAX_DAILY_MG = Decimal(1000)


class HistoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seizures: bool = Field(False, description="A history of seizures (slower pace).")
    falls: bool = Field(False, description="A history of falls.")
    pregnancy: bool = Field(False, description="Pregnant now.")
    anxiety_or_depression: bool = Field(False, description="An anxiety or depressive disorder.")
    failed_taper: bool = Field(False, description="A taper tried before that failed.")


class EquivalenceOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mg_equal_to_10mg_diazepam: Decimal = Field(
        gt=0,
        le=1000,
        decimal_places=4,
        description="The clinician's equivalence: mg of the drug equal to 10 mg diazepam.",
    )
    reason_code: ReasonCode = Field(description="Why (a code, never free text).")
    outside_range_reason_code: ReasonCode | None = Field(
        default=None,
        description="A clinician's confirmation of a value outside the published range "
        "widened by its factor (equivalence data); without it such a value is refused.",
    )


class BoundOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_fraction_per_window: Decimal = Field(
        gt=0, lt=1, decimal_places=4, description="The largest cut allowed per window (0..1)."
    )
    reason_code: ReasonCode = Field(description="Why (a code, never free text).")


class PlanPreviewIn(BaseModel):
    """A patient's planning input, without anything that identifies the patient."""

    model_config = stored_examples(__file__, "PlanPreviewIn", extra="forbid")

    drug: Annotated[str, StringConstraints(pattern=DRUG_PATTERN)] = Field(
        examples=["alprazolam"], description="A drug code of the equivalence table."
    )
    administrations_mg: list[DoseMg] = Field(
        min_length=1, max_length=6, description="The day's doses in order (morning first)."
    )
    duration_weeks: int = Field(ge=0, le=5200, description="How long the drug has been taken.")
    age: int = Field(ge=0, le=120, description="Age in years (older: slower pace).")
    start_on: PlausibleDate = Field(description="Today or later (service clock, UTC).")
    formulations: list[Code] = Field(
        min_length=1, max_length=20, description="Product codes on file (formulations table)."
    )
    frail: bool = Field(False, description="Frail (slower pace).")
    history: HistoryIn = Field(default_factory=HistoryIn, description="Risk history.")
    pace: PacePreference = Field(
        PacePreference.STANDARD, description="The pace the patient prefers."
    )
    crossover_wanted: bool = Field(
        False, description="Cross over to a long-acting drug before tapering."
    )
    maintenance_mg: Decimal | None = Field(
        default=None,
        ge=0,
        le=1000,
        decimal_places=4,
        description="Stop at this daily mg instead of zero.",
    )
    equivalence_override: EquivalenceOverrideIn | None = Field(
        None, description="A clinician's equivalence for this patient."
    )
    equivalence_column: Code | None = Field(
        None, description="Which published equivalence column to use."
    )
    bound_override: BoundOverrideIn | None = Field(
        None, description="A clinician's taper-rate bound for this patient."
    )
    strategy: Strategy | None = Field(
        None, description="proportional (a fraction of the current dose) or linear (fixed cuts)."
    )
    dose_above_maximum_reason_code: ReasonCode | None = Field(
        default=None,
        description="A clinician's confirmation of a daily total above the drug's plausible "
        "maximum (equivalence data); without it such a day is refused.",
    )
    # The patient's day (stored with the plan, taken over by the taper on approval).
    timezone: TimeZoneName | None = Field(
        None, description="The patient's IANA time zone; null: steps start 00:00 UTC."
    )
    first_dose_time: FirstDoseTime | None = Field(
        None, description="Local time a step takes effect (HH:MM)."
    )
    first_step_on_start: bool = Field(
        default=False,
        description="The first step on start_on; by default it waits one interval (or stage).",
    )

    @field_validator("drug")
    @classmethod
    def _known_drug(cls, value: str) -> str:
        if equivalence_v1().get(value) is None:
            raise ValueError("not in the equivalence table")
        return value

    @field_validator("administrations_mg")
    @classmethod
    def _plausible_day(cls, value: list[Decimal]) -> list[Decimal]:
        if sum(value, Decimal(0)) > MAX_DAILY_MG:
            raise ValueError(f"the daily total must not exceed {MAX_DAILY_MG} mg")
        return value

    def to_input(self) -> PlanningInput:
        eo, bo = self.equivalence_override, self.bound_override
        return PlanningInput(
            drug=self.drug,
            administrations_mg=tuple(self.administrations_mg),
            duration_weeks=self.duration_weeks,
            age=self.age,
            start_on=self.start_on,
            formulations=tuple(self.formulations),
            frail=self.frail,
            history=History(**self.history.model_dump()),
            pace=self.pace,
            crossover_wanted=self.crossover_wanted,
            maintenance_mg=self.maintenance_mg,
            equivalence_override=(
                EquivalenceOverride(
                    eo.mg_equal_to_10mg_diazepam, eo.reason_code, eo.outside_range_reason_code
                )
                if eo
                else None
            ),
            equivalence_column=self.equivalence_column,
            bound_override=(
                BoundOverride(bo.max_fraction_per_window, bo.reason_code) if bo else None
            ),
            dose_above_maximum_reason_code=self.dose_above_maximum_reason_code,
            first_step_on_start=self.first_step_on_start,
        )


class AdministrationOut(BaseModel):
    drug: str = Field(description="The drug code.")
    dose_mg: DecimalStr = Field(description="mg of that administration.")


class StepOut(BaseModel):
    number: int = Field(description="1 for the first step.")
    effective_on: date = Field(description="The day it takes effect.")
    kind: str = Field(description="reduction | crossover | final | restore.")
    administrations: list[AdministrationOut] = Field(description="The day's doses in order.")
    daily_dose_mg: DecimalStr | None = Field(description="None while a crossover mixes two drugs.")
    daily_dose_mg_by_drug: dict[str, DecimalStr] = Field(description="Daily mg per drug.")
    diazepam_eq_mg: DecimalStr = Field(description="The day's total in diazepam-equivalent mg.")
    hold_weeks: int = Field(description="Weeks at this dose before the next step.")


class RiskOut(BaseModel):
    category: str = Field(description="low | moderate | high.")
    reasons: list[str] = Field(description="What raised it (codes).")
    short_use: bool = Field(description="Taken for a short time (a faster taper may do).")


class PaceOut(BaseModel):
    code: str = Field(description="The pace chosen.")
    step_fraction: DecimalStr = Field(description="Each cut as a fraction of the dose.")
    interval_weeks: int = Field(description="Weeks between cuts.")


class BoundOut(BaseModel):
    version: str = Field(description="The bound data's version.")
    max_fraction_per_window: DecimalStr = Field(description="The largest cut per window.")
    window_days: int = Field(description="The window's length in days.")


class FormulationNeedOut(BaseModel):
    kind: str = Field(description="What is missing or needed (a code).")
    drug: str = Field(description="For which drug.")
    at_dose_mg: DecimalStr = Field(description="At which dose.")
    needed_unit_mg: DecimalStr = Field(description="The unit strength that would serve.")
    reason_code: str = Field(description="Why.")
    after_step: int = Field(description="The last step that can be taken without it.")


class PlanOut(BaseModel):
    model_config = stored_examples(__file__, "PlanOut")

    drug: str = Field(description="The drug taken now.")
    final_drug: str = Field(
        description="The drug at the end (after a crossover, the long-acting one)."
    )
    strategy: str = Field(description="proportional or linear.")
    complete: bool = Field(description="Ends at zero or the maintenance dose, no product missing.")
    risk: RiskOut = Field(description="The patient's risk and why.")
    pace: PaceOut = Field(description="The pace used.")
    bound: BoundOut = Field(description="The taper-rate bound applied.")
    steps: list[StepOut] = Field(description="Every step, in order.")
    formulation_needs: list[FormulationNeedOut] = Field(
        description="Products missing for a step, if any."
    )
    ends_at_mg: DecimalStr = Field(description="Daily mg of final_drug at the last step.")
    ends_on: date | None = Field(description="The last step's date.")
    expected_duration_days: int = Field(
        description="Start date to the last step (to where the plan stops if a product is missing)."
    )
    reference_duration_weeks: list[int | None] | None = Field(
        description="Taper length (at least, at most weeks) the reference gives for the duration "
        "of use; a plan outside it has the note expected_duration_above/below_reference."
    )
    equivalence: dict[str, DecimalStr] = Field(description="mg equal to 10 mg diazepam, as used.")
    notes: list[str] = Field(description="Codes worth a clinician's look.")
    reference_versions: dict[str, str] = Field(description="Versions of the clinical data used.")

    @classmethod
    def of(cls, p: TaperPlan) -> PlanOut:
        return cls(
            drug=p.drug,
            final_drug=p.final_drug,
            strategy=p.strategy.value,
            complete=p.complete,
            risk=RiskOut(
                category=p.risk.category.value,
                reasons=list(p.risk.reasons),
                short_use=p.risk.short_use,
            ),
            pace=PaceOut(
                code=p.pace.code,
                step_fraction=p.pace.step_fraction,
                interval_weeks=p.pace.interval_weeks,
            ),
            bound=BoundOut(
                version=p.bound.version,
                max_fraction_per_window=p.bound.max_fraction_per_step,
                window_days=p.bound.window_days,
            ),
            steps=[
                StepOut(
                    number=s.number,
                    effective_on=s.effective_on,
                    kind=s.kind.value,
                    administrations=[
                        AdministrationOut(drug=a.drug, dose_mg=a.dose_mg) for a in s.administrations
                    ],
                    daily_dose_mg=s.daily_dose_mg
                    if len({a.drug for a in s.administrations}) == 1
                    else None,
                    daily_dose_mg_by_drug={
                        d: s.daily_dose_mg_of(d)
                        for d in dict.fromkeys(a.drug for a in s.administrations)
                    },
                    diazepam_eq_mg=s.diazepam_eq_mg,
                    hold_weeks=s.hold_weeks,
                )
                for s in p.steps
            ],
            formulation_needs=[
                FormulationNeedOut(
                    kind=n.kind.value,
                    drug=n.drug,
                    at_dose_mg=n.at_dose_mg,
                    needed_unit_mg=n.needed_unit_mg,
                    reason_code=n.reason_code,
                    after_step=n.after_step,
                )
                for n in p.formulation_needs
            ],
            ends_at_mg=p.ends_at,
            ends_on=p.steps[-1].effective_on if p.steps else None,
            expected_duration_days=p.expected_duration_days,
            reference_duration_weeks=list(p.reference_duration_weeks)
            if p.reference_duration_weeks
            else None,
            equivalence=dict(p.equivalence),
            notes=list(p.notes),
            reference_versions=dict(p.reference_versions),
        )


def _unprocessable(field: str, msg: str) -> FieldRefusal:
    return FieldRefusal.naming(field, msg, "planning", known=PlanPreviewIn.model_fields)


class ApprovePlanIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason_code": "plan_approved", "version": 1}]},
    )

    reason_code: ReasonCode = Field("plan_approved", description="Why (a code, never free text).")
    version: int | None = Field(
        default=None,
        ge=1,
        description="The plan version the clinician reviewed (from GET): approving a plan that "
        "changed since, e.g. steps proposed again, is a 409.",
    )


class AdjustPlanIn(BaseModel):
    """What changes for the rest of the plan; a field left out keeps the plan's value."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason_code": "withdrawal", "pace": "slower"}]},
    )

    reason_code: ReasonCode = Field(description="Why (a code, never free text).")
    pace: PacePreference | None = Field(default=None, description="slower: smaller, rarer cuts.")
    strategy: Literal["proportional", "linear"] | None = Field(
        None, description="proportional or linear."
    )
    maintenance_mg: Decimal | None = Field(
        default=None,
        ge=0,
        le=1000,
        decimal_places=4,
        description="Stop at this daily mg instead of zero.",
    )
    formulations: list[Code] | None = Field(
        default=None, min_length=1, max_length=20, description="Products now on file."
    )
    start_on: PlausibleDate | None = Field(
        default=None,
        description="The first re-planned step; default one pace interval after the last step "
        "taken, not before today.",
    )


class CancelPlanIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason_code": "draft_discarded"}]}
    )

    reason_code: ReasonCode = Field("draft_discarded", description="Why (a code, never free text).")


class PlanStepRecordOut(BaseModel):
    number: int = Field(
        description="Its place in the schedule in force, 1..n in date order (a cancelled step: "
        "its place among the cancelled ones)."
    )
    effective_on: date = Field(description="The day it takes effect.")
    kind: str = Field(description="reduction | crossover | final | restore.")
    administrations: list[AdministrationOut] = Field(description="The day's doses in order.")
    daily_dose_mg: DecimalStr = Field(description="The day's total mg.")
    diazepam_eq_mg: DecimalStr = Field(description="The day's total in diazepam-equivalent mg.")
    hold_weeks: int = Field(description="Weeks at this dose before the next step.")
    status: str = Field(
        description="proposed (awaiting a clinician's approval) | planned | scheduled | emitted"
        " | blocked_by_hold | cancelled"
    )
    dose_step_id: uuid.UUID | None = Field(
        description="The taper's dose step once the step was scheduled."
    )
    sequence: int = Field(
        description="The step's stored sequence in the plan, which never changes (decisions and "
        "the audit name it); after an adjustment it is no longer its number in the schedule.",
    )

    @classmethod
    def of(cls, number: int, s: Mapping[str, Any]) -> PlanStepRecordOut:
        return cls(
            number=number,
            effective_on=s["effective_on"],
            kind=s["kind"],
            administrations=[AdministrationOut(**a) for a in s["administrations"]],
            daily_dose_mg=s["daily_dose_mg"],
            diazepam_eq_mg=s["diazepam_eq_mg"],
            hold_weeks=s["hold_weeks"],
            status=s["status"],
            dose_step_id=s["dose_step_id"],
            sequence=s["number"],
        )


class PlanRecordOut(BaseModel):
    model_config = stored_examples(__file__, "PlanRecordOut")

    id: uuid.UUID = Field(description="The plan's id.")
    patient_id: uuid.UUID = Field(description="The patient.")
    status: str = Field(
        description="draft | approved | active | completed | maintenance | cancelled"
    )
    strategy: str = Field(description="proportional or linear.")
    input: dict[str, Any] = Field(description="The planning input as submitted (with defaults).")
    summary: dict[str, Any] = Field(
        description="The plan's summary: risk, pace, bound, formulation needs, notes ..."
    )
    reference_versions: dict[str, str] = Field(
        description="Versions of the clinical data it was computed with."
    )
    created_by: str = Field(description="The clinician who drafted it.")
    created_at: datetime = Field(description="When it was drafted.")
    approved_by_decision_id: uuid.UUID | None = Field(
        description="The approval decision, once approved."
    )
    approved_at: datetime | None = Field(description="When it was approved.")
    version: int = Field(description="Increases with every change; send it when approving.")
    steps: list[PlanStepRecordOut] = Field(
        description="The schedule in force: every step taken, due or proposed, numbered 1..n in "
        "order. Steps an adjustment or the plan's end cancelled are in cancelled_steps."
    )
    expected_duration_days: int | None = Field(
        default=None, description="Start date to the last step not cancelled."
    )
    cancelled_steps: list[PlanStepRecordOut] = Field(
        default_factory=list,
        description="Steps superseded by an adjustment, or left when the plan was discarded or "
        "ended, in their stored order; never given.",
    )

    @classmethod
    def of(cls, record: plan_cases.PlanRecord) -> PlanRecordOut:
        r = record.row
        in_force, cancelled = schedule(record.steps)
        return cls(
            id=r["id"],
            patient_id=r["patient_id"],
            status=r["status"],
            strategy=r["strategy"],
            # Stored as given and as computed: sent in the API's one decimal format.
            input=canonical_json(r["input"]),
            summary=canonical_json(r["summary"]),
            reference_versions=r["reference_versions"],
            created_by=r["created_by"],
            created_at=r["created_at"],
            approved_by_decision_id=r["approved_by_decision_id"],
            approved_at=r["approved_at"],
            version=r["version"],
            expected_duration_days=_duration_days(r["input"], record.steps),
            steps=[PlanStepRecordOut.of(n, s) for n, s in in_force],
            cancelled_steps=[PlanStepRecordOut.of(n, s) for n, s in enumerate(cancelled, 1)],
        )


def _duration_days(inp: Any, steps: Any) -> int | None:
    kept = [s["effective_on"] for s in steps if s["status"] != "cancelled"]
    start = inp.get("start_on") if isinstance(inp, dict) else None
    if not start:
        return None
    first = date.fromisoformat(str(start))
    return (max(map(_as_date, kept)) - first).days if kept else 0


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


class PlanStepBriefOut(BaseModel):
    number: int = Field(description="Its place in the plan's schedule in force (1..n).")
    effective_on: date = Field(description="The day it takes (or took) effect.")
    kind: str = Field(description="reduction | crossover | final.")
    daily_dose_mg: DecimalStr = Field(description="The day's total mg from then on.")
    status: str = Field(
        description="emitted | planned | scheduled | blocked_by_hold | proposed (see getPlan)."
    )

    @classmethod
    def of(cls, number: int, s: Mapping[str, Any]) -> PlanStepBriefOut:
        return cls(
            number=number,
            effective_on=s["effective_on"],
            kind=s["kind"],
            daily_dose_mg=s["daily_dose_mg"],
            status=s["status"],
        )


class PlanSummaryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "8c9d0e1f-2a3b-4c4d-9e5f-6a7b8c9d0e1f",
                    "status": "active",
                    "drug": "alprazolam",
                    "final_drug": "diazepam",
                    "strategy": "crossover_then_proportional",
                    "created_by": "dr-panel",
                    "created_at": "2026-01-05T09:00:00Z",
                    "approved_at": "2026-01-05T09:30:00Z",
                    "version": 3,
                    "steps": 24,
                    "steps_taken": 2,
                    "current_step": {
                        "number": 2,
                        "effective_on": "2026-01-26",
                        "kind": "crossover",
                        "daily_dose_mg": "9",
                        "status": "emitted",
                    },
                    "next_step": {
                        "number": 3,
                        "effective_on": "2026-02-09",
                        "kind": "crossover",
                        "daily_dose_mg": "8.5",
                        "status": "scheduled",
                    },
                    "ends_on": "2026-09-14",
                }
            ]
        }
    )

    id: uuid.UUID = Field(description="The plan's id (getPlan reads it whole).")
    status: str = Field(
        description="draft | approved | active | completed | maintenance | cancelled"
    )
    drug: str = Field(description="The drug the plan starts from.")
    final_drug: str = Field(description="The drug at the end (after a crossover, diazepam).")
    strategy: str = Field(description="proportional, linear or crossover_then_proportional.")
    created_by: str = Field(description="The clinician who drafted it.")
    created_at: datetime = Field(description="When it was drafted.")
    approved_at: datetime | None = Field(description="When it was last approved (or adjusted).")
    version: int = Field(description="Increases with every change; send it when approving.")
    steps: int = Field(description="Steps in the schedule in force (not cancelled).")
    steps_taken: int = Field(description="Of those, the ones that took effect.")
    current_step: PlanStepBriefOut | None = Field(
        description="The last step that took effect; null before the first."
    )
    next_step: PlanStepBriefOut | None = Field(
        description="The first step not taken yet; null when none is left."
    )
    ends_on: date | None = Field(description="The last step's date in the schedule in force.")

    @classmethod
    def of(cls, digest: plan_queries.PlanDigest) -> PlanSummaryOut:
        r, in_force = digest.row, digest.schedule
        taken = [(n, s) for n, s in in_force if s["status"] == "emitted"]
        ahead = [(n, s) for n, s in in_force if s["status"] != "emitted"]
        return cls(
            id=r["id"],
            status=r["status"],
            drug=r["summary"]["drug"],
            final_drug=r["summary"].get("final_drug", r["summary"]["drug"]),
            strategy=r["strategy"],
            created_by=r["created_by"],
            created_at=r["created_at"],
            approved_at=r["approved_at"],
            version=r["version"],
            steps=len(in_force),
            steps_taken=len(taken),
            current_step=PlanStepBriefOut.of(*taken[-1]) if taken else None,
            next_step=PlanStepBriefOut.of(*ahead[0]) if ahead else None,
            ends_on=in_force[-1][1]["effective_on"] if in_force else None,
        )


PlanStatus = Literal["draft", "approved", "active", "completed", "maintenance", "cancelled"]


class DecisionOut(BaseModel):
    model_config = stored_examples(__file__, "DecisionOut")

    id: uuid.UUID = Field(description="The decision's id.")
    kind: str = Field(description="approve | adjust | cancel | hold | resume ...")
    clinician: str = Field(description="The decider's subject (the patient's for a hold request).")
    decided_by_role: str = Field(description="clinician, or patient for a hold request.")
    reason_code: str = Field(description="Why (a code).")
    decided_at: datetime = Field(description="When.")


# ``?format=fhir|svg``: the other 200 bodies a plan endpoint returns besides its JSON model.
_RENDERED: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/fhir+json": {"schema": FHIR_RESOURCE},
            "image/svg+xml": SVG_BODY,
        }
    }
}


def _plan(runtime: ServiceRuntime, body: PlanPreviewIn) -> TaperPlan:
    if body.start_on < runtime.clock.now().date():
        raise _unprocessable("start_on", "must be today or later")
    try:
        return plan(body.to_input(), body.strategy)
    except PlanningError as exc:
        raise _unprocessable(exc.field, exc.problem) from None


# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "POST /patients/{patient_id}/plans": "createPlan",
    "POST /patients/{patient_id}/plans/{plan_id}/approve": "approvePlan",
    "POST /patients/{patient_id}/plans/{plan_id}/adjust": "adjustPlan",
    "POST /patients/{patient_id}/plans/{plan_id}/cancel": "cancelPlan",
    "GET /patients/{patient_id}/plans/{plan_id}": "getPlan",
    "GET /patients/{patient_id}/plans": "listPlans",
    "GET /patients/{patient_id}/decisions": "listPlanDecisions",
    "POST /plans/preview": "previewPlan",
}


async def _written(
    uow: UnitOfWork,
    idem: IdempotentRequest,
    record: plan_cases.PlanRecord,
    response: Response,
    status_code: int = status.HTTP_200_OK,
) -> PlanRecordOut:
    """The written plan's answer with its new ETag, stored with the Idempotency-Key (the
    access commits on leaving its block)."""
    out = PlanRecordOut.of(record)
    headers = {"ETag": etag(record.row["version"])}
    await idem.record(uow, out, status_code, headers)
    response.headers.update(headers)
    return out


def _refused_approval(exc: RuleRefused) -> FieldRefusal:
    # The field is the stored plan's (e.g. start_on): plan again with a new body.
    return FieldRefusal(["plan", exc.field], exc.problem, "plan")


def _refused_adjustment(exc: RuleRefused) -> FieldRefusal:
    return FieldRefusal.naming(exc.field, exc.problem, "planning", known=AdjustPlanIn.model_fields)


# A clinician's change to a plan: authorized, keyed, committed (chassis/entrypoint.py).
PlanUpdate = Annotated[
    PatientAccess,
    Depends(patient_access("update", "plan", roles=CLINICIAN, commit=True, idempotent=True)),
]
PlanRead = Annotated[PatientAccess, Depends(patient_access("read", "plan"))]
DecisionRead = Annotated[PatientAccess, Depends(patient_access("read", "decision"))]


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["plans"])

    @router.post(
        "/patients/{patient_id}/plans",
        status_code=status.HTTP_201_CREATED,
        response_model=PlanRecordOut,
        summary="Plan and store a DRAFT (clinician): nothing is scheduled before approval",
        responses=with_etag(code=201),
    )
    async def create(
        patient_id: uuid.UUID,
        body: PlanPreviewIn,
        principal: CurrentPrincipal,
        access: PlanUpdate,
        response: Response,
        idem: Idempotent,
    ) -> PlanRecordOut:
        async with access as uow:
            result = _plan(runtime, body)
            record = await plan_cases.create_plan(
                plan_cases.CreatePlan(
                    patient_id=patient_id,
                    clinician=principal.subject,
                    input=body.model_dump(mode="json"),
                    result=result,
                ),
                uow,
            )
            out = await _written(uow, idem, record, response, status.HTTP_201_CREATED)
        return out

    @router.post(
        "/patients/{patient_id}/plans/{plan_id}/approve",
        response_model=PlanRecordOut,
        summary="Approve a draft (clinician): the plan becomes active, its first step is armed",
        responses=conditional(),
    )
    async def approve(
        patient_id: uuid.UUID,
        plan_id: uuid.UUID,
        body: ApprovePlanIn,
        principal: CurrentPrincipal,
        access: PlanUpdate,
        response: Response,
        idem: Idempotent,
        if_match: IfMatch = None,
    ) -> PlanRecordOut:
        async with access as uow:
            await _if_match(uow, patient_id, plan_id, if_match)
            try:
                record = await plan_cases.approve_plan(
                    plan_cases.ApprovePlan(
                        patient_id, plan_id, principal.subject, body.reason_code, body.version
                    ),
                    uow,
                )
            except RuleRefused as exc:
                raise _refused_approval(exc) from None
            out = await _written(uow, idem, record, response)
        return out

    @router.post(
        "/patients/{patient_id}/plans/{plan_id}/adjust",
        response_model=PlanRecordOut,
        summary="Re-plan the rest of an active plan from today's dose (clinician): slower, new "
        "products on file, another maintenance target",
        responses=conditional(),
    )
    async def adjust(
        patient_id: uuid.UUID,
        plan_id: uuid.UUID,
        body: AdjustPlanIn,
        principal: CurrentPrincipal,
        access: PlanUpdate,
        response: Response,
        idem: Idempotent,
        if_match: IfMatch = None,
    ) -> PlanRecordOut:
        async with access as uow:
            await _if_match(uow, patient_id, plan_id, if_match)
            try:
                record = await replanning.adjust_plan(
                    replanning.AdjustPlan(
                        patient_id=patient_id,
                        plan_id=plan_id,
                        clinician=principal.subject,
                        reason_code=body.reason_code,
                        pace=body.pace,
                        strategy=Strategy(body.strategy) if body.strategy else None,
                        maintenance_mg=body.maintenance_mg,
                        formulations=tuple(body.formulations) if body.formulations else None,
                        start_on=body.start_on,
                    ),
                    uow,
                )
            except RuleRefused as exc:
                raise _refused_adjustment(exc) from None
            out = await _written(uow, idem, record, response)
        return out

    @router.post(
        "/patients/{patient_id}/plans/{plan_id}/cancel",
        response_model=PlanRecordOut,
        summary="Discard a draft (clinician); an active plan is adjusted or ended instead",
        responses=conditional(),
    )
    async def cancel(
        patient_id: uuid.UUID,
        plan_id: uuid.UUID,
        body: CancelPlanIn,
        principal: CurrentPrincipal,
        access: PlanUpdate,
        response: Response,
        idem: Idempotent,
        if_match: IfMatch = None,
    ) -> PlanRecordOut:
        async with access as uow:
            await _if_match(uow, patient_id, plan_id, if_match)
            record = await plan_cases.cancel_plan(
                plan_cases.CancelPlan(patient_id, plan_id, principal.subject, body.reason_code),
                uow,
            )
            out = await _written(uow, idem, record, response)
        return out

    @router.get(
        "/patients/{patient_id}/plans/{plan_id}",
        response_model=PlanRecordOut,
        summary="A plan with its full schedule (the patient, or a clinician on their panel)",
        responses=with_etag(_RENDERED),
    )
    async def read(
        patient_id: uuid.UUID,
        plan_id: uuid.UUID,
        access: PlanRead,
        response: Response,
        fmt: Annotated[Literal["json", "fhir", "svg"], Query(alias="format")] = "json",
    ) -> Any:
        async with access as uow:
            record = await plan_cases.get_plan(uow, patient_id, plan_id)
        if fmt == "json":
            response.headers["ETag"] = etag(record.row["version"])
            return PlanRecordOut.of(record)
        stored = record_to_plan(record.row, record.steps)  # without cancelled steps
        if fmt == "fhir":
            return JSONResponse(
                plan_to_fhir(
                    stored,
                    patient_ref=f"Patient/{patient_id}",
                    status=medication_request_status(record.row["status"]),
                ),
                media_type="application/fhir+json",
            )
        return Response(plan_to_svg(stored), media_type="image/svg+xml")

    async def _if_match(
        uow: UnitOfWork, patient_id: uuid.UUID, plan_id: uuid.UUID, if_match: str | None
    ) -> None:
        """Lock the plan and check If-Match, after the access took the Idempotency-Key (a retry
        replays before If-Match is looked at: the plan moved on because of the first try)."""
        if if_match is not None:
            version = await plan_queries.locked_version(uow, patient_id, plan_id)
            if version is not None:  # else the use case answers 404
                check_if_match(if_match, etag(version))

    @router.get(
        "/patients/{patient_id}/plans",
        response_model=list[PlanSummaryOut],
        responses=paginated(list[PlanSummaryOut], "The patient's plans, newest first."),
        summary="The patient's plans, newest first (the patient, or a clinician on their panel)",
    )
    async def list_plans(
        patient_id: uuid.UUID,
        access: PlanRead,
        request: Request,
        response: Response,
        page: PageQuery,
        plan_status: Annotated[
            PlanStatus | None, Query(alias="status", description="Only plans in this status.")
        ] = None,
    ) -> list[PlanSummaryOut]:
        async with access as uow:
            digests, next_cursor = await plan_queries.list_plans(uow, patient_id, page, plan_status)
        link_next(request, response, next_cursor)
        return [PlanSummaryOut.of(d) for d in digests]

    @router.get(
        "/patients/{patient_id}/decisions",
        response_model=list[DecisionOut],
        responses=paginated(list[DecisionOut]),
        summary="Every recorded decision: who, what, why (a code), when; newest first",
    )
    async def decisions(
        patient_id: uuid.UUID,
        access: DecisionRead,
        page: PageQuery,
        request: Request,
        response: Response,
        kind: Annotated[DecisionKind | None, Query(description="Only this kind.")] = None,
        since: Annotated[PlausibleAwareDatetime | None, Query(description=SINCE_DOC)] = None,
        until: Annotated[PlausibleAwareDatetime | None, Query(description=UNTIL_DOC)] = None,
    ) -> list[DecisionOut]:
        async with access as uow:
            rows, following = await plan_queries.decision_history(
                uow, patient_id, page, kind=kind, since=since, until=until
            )
        link_next(request, response, following)
        return [DecisionOut(**{k: r[k] for k in DecisionOut.model_fields}) for r in rows]

    @router.post(
        "/plans/preview",
        response_model=PlanOut,
        summary="Preview a taper plan (clinician; nothing is stored)",
        responses=_RENDERED,
    )
    async def preview(
        body: PlanPreviewIn,
        principal: CurrentPrincipal,
        fmt: Annotated[Literal["json", "fhir", "svg"], Query(alias="format")] = "json",
    ) -> Any:
        require_role(principal, Role.CLINICIAN)
        result = _plan(runtime, body)
        if fmt == "fhir":
            return JSONResponse(
                plan_to_fhir(result, patient_ref=None), media_type="application/fhir+json"
            )
        if fmt == "svg":
            return Response(plan_to_svg(result), media_type="image/svg+xml")
        return PlanOut.of(result)

    return [name_operations(router, OPERATION_IDS)]
