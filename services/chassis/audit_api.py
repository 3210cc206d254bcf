"""The audit log, queryable by ops: who touched which patient's data, what, when, from where.

Every service serves it under its own prefix (``GET /api/<service>/ops/audit``). Rows carry opaque
ids and codes only (no PHI by construction), so ops may read them; reading them is audited too.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime

from services.chassis.auth import CurrentPrincipal, Role, require_role
from services.chassis.openapi import camel
from services.chassis.telemetry import valid_request_id
from services.chassis.text import FreeText

if TYPE_CHECKING:
    from services.chassis.runtime import ServiceRuntime


def router(runtime: ServiceRuntime) -> APIRouter:
    api = APIRouter(tags=["ops"])

    @api.get(
        "/ops/audit",
        operation_id=f"list{camel(runtime.service)}AuditLog",
        summary="Audit log entries, newest first (ops only)",
    )
    async def audit_log(
        principal: CurrentPrincipal,
        request: Request,
        patient_id: uuid.UUID | None = None,
        actor: Annotated[FreeText | None, Query(max_length=100)] = None,
        outcome: Literal["allowed", "denied"] | None = None,
        # With an offset: a naive time is ambiguous (and the database refuses to compare it).
        since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with offset")] = None,
        until: Annotated[AwareDatetime | None, Query(description="ISO 8601 with offset")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        require_role(principal, Role.OPS)
        async with runtime.uow() as uow:
            log = uow.table("audit_log")
            query = sa.select(log).order_by(log.c.id.desc()).limit(limit)
            if patient_id is not None:
                query = query.where(log.c.patient_id == patient_id)
            if actor is not None:
                query = query.where(log.c.actor == actor)
            if outcome is not None:
                query = query.where(log.c.outcome == outcome)
            if since is not None:
                query = query.where(log.c.at >= since)
            if until is not None:
                query = query.where(log.c.at < until)
            rows = [dict(r) for r in (await uow.session.execute(query)).mappings()]
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
        return rows

    return api
