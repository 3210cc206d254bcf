"""A patient's check-ins, ``GET /api/monitoring/patients/{patient_id}/check-ins`` (issue 18
part 8): the assessments planned after each dose step (``service_layer/checkins``) with their
window and status, so a patient app can show what is due and a clinician what was missed.

Authorized and audited like the symptom reports (the patient, a clinician on their panel).
Paged with the chassis keyset pagination, latest due first (due_at, then id); ``since`` and
``until`` bound ``due_at``; ``status`` filters.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.chassis.entrypoint import PatientAccess, patient_access
from services.chassis.openapi import name_operations
from services.chassis.pagination import (
    SINCE_DOC,
    UNTIL_DOC,
    PageQuery,
    link_next,
    paginated,
)
from services.chassis.runtime import ServiceRuntime
from services.monitoring.domain.checkins import CheckInStatus
from services.monitoring.service_layer import checkins as service


class CheckInOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                    "due_at": "2026-03-05T08:00:00Z",
                    "window_closes_at": "2026-03-06T08:00:00Z",
                    "instruments": ["ciwa-b"],
                    "status": "due",
                    "completed_by_report_id": None,
                    "after_dose_event_id": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
                }
            ]
        }
    )

    id: uuid.UUID = Field(description="The check-in's id.")
    due_at: datetime = Field(description="When it falls due: a report is asked for from then.")
    window_closes_at: datetime = Field(
        description="A report of one of its instruments before this completes it; after it, "
        "the check-in is missed."
    )
    instruments: list[str] = Field(description="The questionnaires any of which completes it.")
    status: CheckInStatus = Field(
        description="scheduled (not due yet), due (the patient was reminded), completed, "
        "missed (the window closed without a report), superseded (a later dose step took over)."
    )
    completed_by_report_id: uuid.UUID | None = Field(
        description="The symptom report that completed it; null otherwise."
    )
    after_dose_event_id: uuid.UUID = Field(
        description="The DoseReduced event of the dose step it follows."
    )


OPERATION_IDS = {"GET /patients/{patient_id}/check-ins": "listCheckIns"}

CheckInRead = Annotated[PatientAccess, Depends(patient_access("read", "checkin"))]


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(tags=["check-ins"])

    @api.get(
        "/patients/{patient_id}/check-ins",
        response_model=list[CheckInOut],
        responses=paginated(list[CheckInOut], "Latest due first."),
        summary="A patient's check-ins after dose steps, latest due first (patient, panel)",
    )
    async def list_checkins(
        patient_id: uuid.UUID,
        access: CheckInRead,
        request: Request,
        response: Response,
        page: PageQuery,
        status: Annotated[
            CheckInStatus | None, Query(description="Only check-ins in this status.")
        ] = None,
        since: Annotated[AwareDatetime | None, Query(description=f"Due: {SINCE_DOC}")] = None,
        until: Annotated[AwareDatetime | None, Query(description=f"Due: {UNTIL_DOC}")] = None,
    ) -> list[CheckInOut]:
        async with access as uow:
            rows, next_cursor = await service.checkin_page(
                uow, patient_id, page, status=status, since=since, until=until
            )
        link_next(request, response, next_cursor)
        return [CheckInOut.model_validate(row) for row in rows]

    return name_operations(api, OPERATION_IDS)
