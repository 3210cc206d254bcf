"""What the pharmacy dispenses for a stored plan (issue 13, item 14), under
``/api/scheduler/patients/{patient_id}/plans/{plan_id}/dispensing``.

Clinician on the patient's panel only (a pharmacy order), authorized and audited like the plan
read. ``fill_days`` (7..90, default 28) is the clinician's fill period; ``?format=fhir`` returns
a Bundle of MedicationRequests with ``dispenseRequest`` (``adapters.fhir_dispensing``). The
products are the plan's ``formulations`` on file; a dose they cannot make is a 422 naming
``formulations`` (the plan was made from other products: adjust it with the products on file).

``POST /api/scheduler/plans/preview/dispensing`` does the same for a preview (clinician, the
preview's body, nothing stored, no patient: the FHIR ``subject`` says so the standard way).
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.chassis.auth import CurrentPrincipal, Role, require_role
from services.chassis.decimals import DecimalStr
from services.chassis.entrypoint import CLINICIAN, PatientAccess, patient_access
from services.chassis.errors import FieldRefusal
from services.chassis.openapi import FHIR_RESOURCE, name_operations, stored_examples
from services.chassis.runtime import ServiceRuntime
from services.scheduler.adapters.fhir import medication_request_status
from services.scheduler.adapters.fhir_dispensing import fills_to_fhir, product_name
from services.scheduler.adapters.stored_plan import record_to_plan
from services.scheduler.domain.dispensing import (
    FILL_DAYS_MAX,
    FILL_DAYS_MIN,
    DispensingError,
    Fill,
    fills,
)
from services.scheduler.domain.planning import (
    Formulation,
    PlannedStep,
    PlanningError,
    formulations_v1,
    plan,
)
from services.scheduler.entrypoints.plans_api import PlanPreviewIn
from services.scheduler.service_layer import plans as plan_cases


class FillItemOut(BaseModel):
    product: str = Field(description="Product code on file (formulations table).")
    name: str = Field(description="e.g. 'Diazepam 2 mg tablet'.")
    drug: str = Field(description="The drug code.")
    form: Literal["tablet", "liquid"] = Field(description="tablet or liquid.")
    strength_mg: DecimalStr | None = Field(description="mg per tablet.")
    concentration_mg_per_ml: DecimalStr | None = Field(description="mg per mL of a liquid.")
    whole_tablets_taken: int = Field(description="Whole tablets taken over the fill.")
    half_tablets_taken: int = Field(description="Halves taken; dispensed as whole tablets.")
    ml_taken: DecimalStr = Field(description="mL taken over the fill.")
    quantity: DecimalStr = Field(description="To dispense: whole tablets, or whole mL.")
    unit: Literal["tablet", "mL"] = Field(description="tablet or mL.")
    mg_taken: DecimalStr = Field(description="mg taken over the fill.")


class FillOut(BaseModel):
    fill_number: int = Field(description="1 for the first fill.")
    covers_from: date = Field(description="First day covered.")
    covers_to: date = Field(description="Last day covered.")
    days: int = Field(description="Days covered.")
    items: list[FillItemOut] = Field(description="Each product to dispense.")


class DispensingOut(BaseModel):
    model_config = stored_examples(__file__, "DispensingOut")

    plan_id: uuid.UUID | None = Field(description="None for a preview.")
    fill_days: int = Field(description="Days one fill covers.")
    fills: list[FillOut] = Field(description="Every fill, in order.")


def _out(plan_id: uuid.UUID | None, fill_days: int, result: tuple[Fill, ...]) -> DispensingOut:
    return DispensingOut(
        plan_id=plan_id,
        fill_days=fill_days,
        fills=[
            FillOut(
                fill_number=f.fill_number,
                covers_from=f.covers_from,
                covers_to=f.covers_to,
                days=f.days,
                items=[
                    FillItemOut(
                        product=i.code,
                        name=product_name(i),
                        drug=i.drug,
                        form="tablet" if i.form == "tablet" else "liquid",
                        strength_mg=i.strength_mg,
                        concentration_mg_per_ml=i.concentration_mg_per_ml,
                        whole_tablets_taken=i.whole_tablets_taken,
                        half_tablets_taken=i.half_tablets_taken,
                        ml_taken=i.ml_taken,
                        quantity=i.quantity,
                        unit="tablet" if i.unit == "tablet" else "mL",
                        mg_taken=i.mg_taken,
                    )
                    for i in f.items
                ],
            )
            for f in result
        ],
    )


def products_on_file(stored_input: dict[str, Any]) -> list[Formulation]:
    catalogue = formulations_v1()
    found = (catalogue.get(c) for c in stored_input.get("formulations", []))
    return [f for f in found if f is not None]


def _unprocessable(loc: list[str], msg: str) -> FieldRefusal:
    return FieldRefusal(loc, msg, "dispensing")


def _fills(
    steps: tuple[PlannedStep, ...], forms: list[Formulation], fill_days: int, where: str
) -> tuple[Fill, ...]:
    """``where``: the loc of ``formulations`` (``plan`` when stored, ``body`` for a preview)."""
    try:
        return fills(steps, forms, fill_days)
    except DispensingError as exc:
        where = "query" if exc.field == "fill_days" else where
        raise _unprocessable([where, exc.field], exc.problem) from None


# Dispensing is the clinician's (and audited as a read of the plan).
ClinicianPlanRead = Annotated[
    PatientAccess, Depends(patient_access("read", "plan", roles=CLINICIAN))
]

_FHIR: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/fhir+json": {"schema": FHIR_RESOURCE}}}
}


# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "GET /patients/{patient_id}/plans/{plan_id}/dispensing": "getPlanDispensing",
    "POST /plans/preview/dispensing": "previewPlanDispensing",
}


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["plans"])

    @router.get(
        "/patients/{patient_id}/plans/{plan_id}/dispensing",
        response_model=DispensingOut,
        summary="Dispense quantities per fill (clinician): tablets of each strength (halves "
        "counted), mL of liquid, the dates each fill covers",
        responses=_FHIR,
    )
    async def dispensing(
        patient_id: uuid.UUID,
        plan_id: uuid.UUID,
        access: ClinicianPlanRead,
        fill_days: Annotated[int, Query(ge=FILL_DAYS_MIN, le=FILL_DAYS_MAX)] = 28,
        fmt: Annotated[Literal["json", "fhir"], Query(alias="format")] = "json",
    ) -> Any:
        async with access as uow:
            record = await plan_cases.get_plan(uow, patient_id, plan_id)
        stored = record_to_plan(record.row, record.steps)
        result = _fills(stored.steps, products_on_file(record.row["input"]), fill_days, "plan")
        if fmt == "fhir":
            return JSONResponse(
                fills_to_fhir(
                    result,
                    fill_days=fill_days,
                    plan_id=plan_id,
                    patient_ref=f"Patient/{patient_id}",
                    status=medication_request_status(record.row["status"]),
                ),
                media_type="application/fhir+json",
            )
        return _out(plan_id, fill_days, result)

    @router.post(
        "/plans/preview/dispensing",
        response_model=DispensingOut,
        summary="Dispense quantities of a preview (clinician; nothing is stored)",
        responses=_FHIR,
    )
    async def preview_dispensing(
        body: PlanPreviewIn,
        principal: CurrentPrincipal,
        fill_days: Annotated[int, Query(ge=FILL_DAYS_MIN, le=FILL_DAYS_MAX)] = 28,
        fmt: Annotated[Literal["json", "fhir"], Query(alias="format")] = "json",
    ) -> Any:
        require_role(principal, Role.CLINICIAN)
        if body.start_on < runtime.clock.now().date():
            raise _unprocessable(["body", "start_on"], "must be today or later")
        try:
            result = plan(body.to_input(), body.strategy)
        except PlanningError as exc:
            # as the preview does: the field when it is the body's, else the body as a whole
            loc = ["body", exc.field] if exc.field in PlanPreviewIn.model_fields else ["body"]
            raise _unprocessable(loc, exc.problem) from None
        catalogue = formulations_v1()
        forms = [f for c in body.formulations if (f := catalogue.get(c)) is not None]
        found = _fills(result.steps, forms, fill_days, "body")
        if fmt == "fhir":
            return JSONResponse(
                fills_to_fhir(found, fill_days=fill_days, plan_id=None, patient_ref=None),
                media_type="application/fhir+json",
            )
        return _out(None, fill_days, found)

    return [name_operations(router, OPERATION_IDS)]
