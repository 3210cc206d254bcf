"""Group matching's HTTP API, under ``/api/group-matching``."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from services.chassis.auth import CurrentPrincipal, authorize_patient_access
from services.chassis.runtime import ServiceRuntime
from services.group_matching.service_layer import handlers


class StageOut(BaseModel):
    patient_id: uuid.UUID
    drug: str
    stage: str
    updated_at: datetime


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["stages"])

    @router.get(
        "/patients/{patient_id}/stage",
        response_model=StageOut,
        summary="The patient's taper stage (the patient, or a clinician on their panel)",
    )
    async def stage(
        patient_id: uuid.UUID, principal: CurrentPrincipal, request: Request
    ) -> StageOut:
        async with runtime.uow() as uow:
            await authorize_patient_access(
                uow, principal, patient_id, action="read", resource="stage", request=request
            )
            row = await handlers.get_stage(uow, patient_id)
        return StageOut(**row)

    return [router]
