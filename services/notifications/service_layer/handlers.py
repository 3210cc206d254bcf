"""Notifications' use cases."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from contracts import ThresholdExceeded
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.orm import pages
from services.notifications.adapters.senders import PageSender
from services.notifications.domain.paging import Page, dedup_key_for

DELIVER_PAGE = "deliver_page"
FIRST_LEVEL = 1


async def on_threshold_exceeded(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """Record the intent to page level 1 for this episode, and a timer that delivers it now.

    Escalation to further levels, acknowledgements and business hours come with issue 5.
    """
    key = dedup_key_for(event.episode_id, FIRST_LEVEL)
    exists = await uow.session.scalar(sa.select(pages.c.id).where(pages.c.dedup_key == key))
    if exists is not None:
        return  # same episode and level already paged (a new report, not a new page)
    now = uow.clock.now()
    await uow.session.execute(
        sa.insert(pages).values(
            id=uuid.uuid4(),
            episode_id=event.episode_id,
            level=FIRST_LEVEL,
            patient_id=event.patient_id,
            severity=event.severity.value,
            reason_codes=[r.code for r in event.reasons],
            dedup_key=key,
            threshold_event_id=event.event_id,
            status="pending",
            attempts=0,
            created_at=now,
        )
    )
    await uow.schedule_timer(DELIVER_PAGE, key, due_at=now)


def make_deliver_page(sender: PageSender) -> Any:
    async def deliver_page(timer: DueTimer, uow: UnitOfWork) -> None:
        """Send the page, then mark it delivered in the same transaction as the timer fires.

        A crash between the send and the commit resends with the same dedup key, which the
        provider collapses into the one incident.
        """
        row = (
            (await uow.session.execute(sa.select(pages).where(pages.c.dedup_key == timer.key)))
            .mappings()
            .first()
        )
        if row is None or row["status"] == "delivered":
            return
        await uow.session.execute(
            sa.update(pages).where(pages.c.id == row["id"]).values(attempts=row["attempts"] + 1)
        )
        page = Page(
            page_id=row["id"],
            episode_id=row["episode_id"],
            level=row["level"],
            patient_id=row["patient_id"],
            severity=row["severity"],
            reason_codes=tuple(row["reason_codes"]),
        )
        await sender.send(page)
        await uow.session.execute(
            sa.update(pages)
            .where(pages.c.id == row["id"])
            .values(status="delivered", delivered_at=uow.clock.now())
        )

    return deliver_page


async def list_pages(uow: UnitOfWork, patient_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        sa.select(
            pages.c.id,
            pages.c.episode_id,
            pages.c.level,
            pages.c.severity,
            pages.c.reason_codes,
            pages.c.status,
            pages.c.attempts,
            pages.c.created_at,
            pages.c.delivered_at,
        )
        .where(pages.c.patient_id == patient_id)
        .order_by(pages.c.created_at)
    )
    return [dict(r) for r in rows.mappings()]
