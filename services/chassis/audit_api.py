"""The audit log, queryable by ops: who touched which patient's data, what, when, from where.

Every service serves it under its own prefix (``GET /api/<service>/ops/audit``). Rows carry opaque
ids and codes only (no PHI by construction), so ops may read them; reading them is audited too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.chassis.auth import CurrentPrincipal, Role, require_role
from services.chassis.openapi import camel
from services.chassis.pagination import (
    PageParams,
    fetch_page,
    link_next,
    page_params,
    paginated,
    within,
)
from services.chassis.telemetry import valid_request_id
from services.chassis.text import FreeText

if TYPE_CHECKING:
    from services.chassis.runtime import ServiceRuntime


class AuditEntryOut(BaseModel):
    """One audit row: opaque ids and codes only (no PHI by construction)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "at": "2026-12-04T09:17:30+00:00",
                    "actor": "dr-oncall",
                    "actor_role": "clinician",
                    "action": "read",
                    "patient_id": "5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
                    "resource": "taper",
                    "outcome": "allowed",
                    "request_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                    "client_addr": "10.0.0.7",
                }
            ]
        }
    )

    id: int = Field(description="Increasing: newer rows have larger ids.")
    at: datetime = Field(description="When it happened.")
    actor: str = Field(description="The principal's subject.")
    actor_role: str = Field(description="patient | clinician | ops.")
    action: str = Field(description="What was done: read, update, acknowledge, audit.read ...")
    patient_id: uuid.UUID | None = Field(description="Whose data, if a patient's.")
    resource: str = Field(description="The kind of object touched: taper, plan, escalation ...")
    outcome: str = Field(description="allowed | denied.")
    request_id: str | None = Field(description="The request's X-Request-ID, to join with logs.")
    client_addr: str | None = Field(description="The client's address as the service saw it.")


# The audit log's published bounds (up to 1000, 100 by default) predate the chassis' 200/50:
# kept, so no ops client breaks.
AuditPage = Annotated[PageParams, Depends(page_params(default=100, maximum=1000))]


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(tags=["ops"])

    @api.get(
        "/ops/audit",
        operation_id=f"list{camel(runtime.service)}AuditLog",
        summary="Audit log entries, newest first (ops only)",
        # Documented only: the rows are returned as stored, their format unchanged.
        response_model=None,
        responses=paginated(list[AuditEntryOut]),
    )
    async def audit_log(
        principal: CurrentPrincipal,
        page: AuditPage,
        request: Request,
        response: Response,
        patient_id: uuid.UUID | None = None,
        actor: Annotated[FreeText | None, Query(max_length=100)] = None,
        outcome: Literal["allowed", "denied"] | None = None,
        # With an offset: a naive time is ambiguous (and the database refuses to compare it).
        since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with offset")] = None,
        until: Annotated[AwareDatetime | None, Query(description="ISO 8601 with offset")] = None,
    ) -> list[dict[str, Any]]:
        require_role(principal, Role.OPS)
        async with runtime.uow() as uow:
            log = uow.table("audit_log")
            query = sa.select(log)
            if patient_id is not None:
                query = query.where(log.c.patient_id == patient_id)
            if actor is not None:
                query = query.where(log.c.actor == actor)
            if outcome is not None:
                query = query.where(log.c.outcome == outcome)
            query = within(query, log.c.at, since, until)
            # The id alone orders it: it increases with every row (newest first).
            rows, following = await fetch_page(uow.session, query, (log.c.id,), page)
            await uow.audit(
                actor=principal.subject,
                actor_role=str(principal.role),
                action="audit.read",
                resource="audit_log",
                patient_id=patient_id,
                request_id=valid_request_id(request.headers.get("x-request-id")),
                client_addr=request.client.host if request.client else None,
            )
            await uow.commit()
        link_next(request, response, following)
        return rows

    return api
