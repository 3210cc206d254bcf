"""Read models for the API: escalations, their pages and each delivery's status.

No contact address and no message text leave through here: channel, status, attempts and the
(PHI-free) last error are what a clinician or operator needs to see that a page did not get out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.orm import deliveries, escalations, pages
from services.notifications.domain.paging import OPEN
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


@dataclass(frozen=True)
class EscalationFilter:
    """What ``GET /escalations`` narrows to; ``panel`` None: every patient (administrators)."""

    panel: frozenset[uuid.UUID] | None
    subject: str  # the caller: "paged me" widens the panel, ``mine`` narrows to it
    status: str = "open"  # open | all | one status
    patient_id: uuid.UUID | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    mine: bool = False  # paged to or acknowledged by the caller


async def escalations_page(
    uow: UnitOfWork, f: EscalationFilter, page: PageParams
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, one page (keyset on created_at, id: stable while new escalations arrive),
    and the cursor of the next page (None on the last)."""
    e = escalations.c
    query = sa.select(*ESCALATION_COLUMNS)
    if f.status == "open":
        query = query.where(e.status.in_([s.value for s in OPEN]))
    elif f.status != "all":
        query = query.where(e.status == f.status)
    paged_me = sa.select(pages.c.escalation_id).where(pages.c.target == f.subject)
    if f.panel is not None:
        query = query.where(sa.or_(e.patient_id.in_(list(f.panel)), e.id.in_(paged_me)))
    if f.mine:
        query = query.where(sa.or_(e.id.in_(paged_me), e.acknowledged_by == f.subject))
    if f.patient_id is not None:
        query = query.where(e.patient_id == f.patient_id)
    query = within(query, e.created_at, f.since, f.until)
    return await fetch_page(uow.session, query, (e.created_at, e.id), page)


async def delivery_health(uow: UnitOfWork, since: datetime) -> list[dict[str, Any]]:
    """Deliveries created since ``since`` counted by kind (page, message), channel and outcome:
    no patient, no address, no message."""
    d = deliveries.c
    rows = await uow.session.execute(
        sa.select(d.owner_kind, d.channel, d.status, sa.func.count().label("count"))
        .where(d.created_at >= since)
        .group_by(d.owner_kind, d.channel, d.status)
        .order_by(d.owner_kind, d.channel, d.status)
    )
    return [
        {"kind": r.owner_kind, "channel": r.channel, "outcome": r.status, "count": r.count}
        for r in rows
    ]


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


@dataclass(frozen=True)
class PageFilter:
    """What ``GET /patients/{id}/pages`` narrows to: a page status, created in [since, until)."""

    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def pages_of_patient(
    uow: UnitOfWork, patient_id: uuid.UUID, f: PageFilter, page: PageParams
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, one page, each page with its deliveries."""
    p = pages.c
    query = sa.select(*PAGE_COLUMNS).where(p.patient_id == patient_id)
    if f.status is not None:
        query = query.where(p.status == f.status)
    query = within(query, p.created_at, f.since, f.until)
    rows, following = await fetch_page(uow.session, query, (p.created_at, p.id), page)
    await _with_deliveries(uow, rows)
    return rows, following


async def _pages(uow: UnitOfWork, where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
    rows = [
        dict(r)
        for r in (
            await uow.session.execute(
                sa.select(*PAGE_COLUMNS).where(where).order_by(pages.c.created_at)
            )
        ).mappings()
    ]
    await _with_deliveries(uow, rows)
    return rows


async def _with_deliveries(uow: UnitOfWork, rows: list[dict[str, Any]]) -> None:
    by_page = await deliveries_of(uow, "page", [r["id"] for r in rows])
    for r in rows:
        r["deliveries"] = by_page.get(r["id"], [])
