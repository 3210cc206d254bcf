"""The patient's own schedule page (issue 13, item 15):
``GET /api/scheduler/patients/{patient_id}/plans/{plan_id}/schedule.html``.

The patient (their own record) or a clinician on their panel, authorized and audited like the
plan read. ``text/html``: plain words per day from the message catalogue, today's row and the
next change marked, printable (``adapters.schedule_html``). The page carries its own
Content-Security-Policy (no script; its one inline style allowed by hash).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.chassis.errors import FieldRefusal
from services.chassis.openapi import HTML_BODY, name_operations
from services.chassis.runtime import ServiceRuntime
from services.scheduler.adapters.schedule_html import CSP, schedule_to_html
from services.scheduler.adapters.stored_plan import record_to_plan
from services.scheduler.domain.dispensing import DispensingError
from services.scheduler.domain.patient_schedule import schedule
from services.scheduler.entrypoints.dispensing_api import products_on_file
from services.scheduler.entrypoints.plans_api import PlanRead
from services.scheduler.service_layer import plans as plan_cases

# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "GET /patients/{patient_id}/plans/{plan_id}/schedule.html": "getPlanSchedulePage",
}


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["plans"])

    @router.get(
        "/patients/{patient_id}/plans/{plan_id}/schedule.html",
        # Not response_class=HTMLResponse: FastAPI would then document the JSON error answers
        # (401/403/404/422) as text/html too. The 200 is documented as text/html here.
        response_model=None,
        summary="The patient's own schedule, day by day in plain words, printable (text/html; "
        "the patient, or a clinician on their panel)",
        responses={200: {"content": {"text/html": HTML_BODY}}},
    )
    async def schedule_page(
        patient_id: uuid.UUID, plan_id: uuid.UUID, access: PlanRead
    ) -> HTMLResponse:
        async with access as uow:
            record = await plan_cases.get_plan(uow, patient_id, plan_id)
        stored = record_to_plan(record.row, record.steps)
        try:
            page = schedule(
                stored.steps,
                products_on_file(record.row["input"]),
                runtime.clock.now().date(),
                baseline=stored.baseline,
            )
        except DispensingError as exc:
            raise FieldRefusal(["plan", exc.field], exc.problem, "schedule") from None
        return HTMLResponse(schedule_to_html(page), headers={"Content-Security-Policy": CSP})

    return [name_operations(router, OPERATION_IDS)]
