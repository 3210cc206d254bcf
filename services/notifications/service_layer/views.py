"""Read models for the API: escalations, their pages and each delivery's status.

No contact address and no message text leave through here: channel, status, attempts and the
(PHI-free) last error are what a clinician or operator needs to see that a page did not get out.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from services.chassis.uow import UnitOfWork
from services.notifications.adapters.orm import escalations, pages
from services.notifications.service_layer import escalations as escalation_service
from services.notifications.service_layer.delivery import deliveries_of

ESCALATION_COLUMNS = (
    escalations.c.id,
    escalations.c.episode_id,
    escalations.c.patient_id,
    escalations.c.severity,
    escalations.c.family,
    escalations.c.reason_codes,
    escalations.c.policy_key,
    escalations.c.policy_version,
    escalations.c.status,
    escalations.c.cycle,
    escalations.c.loop,
    escalations.c.level,
    escalations.c.next_step_at,
    escalations.c.created_at,
    escalations.c.acknowledged_at,
    escalations.c.acknowledged_by,
    escalations.c.acknowledged_via,
    escalations.c.resolved_at,
    escalations.c.resolution,
)
PAGE_COLUMNS = (
    pages.c.id,
    pages.c.escalation_id,
    pages.c.episode_id,
    pages.c.severity,
    pages.c.cycle,
    pages.c.loop,
    pages.c.level,
    pages.c.target,
    pages.c.reason_codes,
    pages.c.status,
    pages.c.attempts,
    pages.c.created_at,
    pages.c.delivered_at,
)


async def escalations_for(
    uow: UnitOfWork, *, panel: frozenset[uuid.UUID] | None, paged: str, only_open: bool
) -> list[dict[str, Any]]:
    """``panel`` None: every escalation (administrators)."""
    query = sa.select(*ESCALATION_COLUMNS).order_by(escalations.c.created_at.desc()).limit(500)
    if only_open:
        query = query.where(escalations.c.status.in_(escalation_service.OPEN))
    if panel is not None:
        paged_me = sa.select(pages.c.escalation_id).where(pages.c.target == paged)
        query = query.where(
            sa.or_(escalations.c.patient_id.in_(list(panel)), escalations.c.id.in_(paged_me))
        )
    return [dict(r) for r in (await uow.session.execute(query)).mappings()]


async def escalation_detail(uow: UnitOfWork, escalation_id: uuid.UUID) -> dict[str, Any]:
    row = (
        (
            await uow.session.execute(
                sa.select(*ESCALATION_COLUMNS).where(escalations.c.id == escalation_id)
            )
        )
        .mappings()
        .one()
    )
    page_rows = await _pages(uow, pages.c.escalation_id == escalation_id)
    return {**dict(row), "pages": page_rows}


async def pages_of_patient(uow: UnitOfWork, patient_id: uuid.UUID) -> list[dict[str, Any]]:
    return await _pages(uow, pages.c.patient_id == patient_id)


async def _pages(uow: UnitOfWork, where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
    rows = [
        dict(r)
        for r in (
            await uow.session.execute(
                sa.select(*PAGE_COLUMNS).where(where).order_by(pages.c.created_at)
            )
        ).mappings()
    ]
    by_page = await deliveries_of(uow, "page", [r["id"] for r in rows])
    for r in rows:
        r["deliveries"] = by_page.get(r["id"], [])
    return rows
