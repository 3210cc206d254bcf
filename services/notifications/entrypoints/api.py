"""Notifications' HTTP API, under ``/api/notifications``."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from services.chassis.auth import CurrentPrincipal, authorize_patient_access
from services.chassis.runtime import ServiceRuntime
from services.notifications.service_layer import handlers


class PageOut(BaseModel):
    id: uuid.UUID
    episode_id: uuid.UUID
    level: int
    severity: str
    reason_codes: list[str]
    status: str
    attempts: int
    created_at: datetime
    delivered_at: datetime | None


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["pages"])

    @router.get("/patients/{patient_id}/pages", response_model=list[PageOut])
    async def page_history(
        patient_id: uuid.UUID, principal: CurrentPrincipal, request: Request
    ) -> list[PageOut]:
        async with runtime.uow() as uow:
            await authorize_patient_access(
                uow, principal, patient_id, action="read", resource="page", request=request
            )
            rows = await handlers.list_pages(uow, patient_id)
        return [PageOut(**r) for r in rows]

    return [router]
