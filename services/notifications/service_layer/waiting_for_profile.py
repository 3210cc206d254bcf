"""Valid events for a patient notifications cannot reach yet: parked until their profile exists.

A taper event for a patient without a notification profile is not a bad message (the profile is
created by the care team or the patient, often after the taper started): the dead-letter topic is
for messages that are bad, so an alert on it means something and a replay never re-sends stale
reminders. The event is parked here instead (one row per event and message kind, so a redelivery
parks nothing twice) and released, without an operator, when the profile is saved.

What is still worth sending on release is decided by ``patient_messages`` (see its
``on_release_due``): a reminder whose window closed is skipped, and of several dose or cohort
changes only the newest is told.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import sqlalchemy as sa

from contracts import Event
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.patient_repository import ParkedEventRepository
from services.notifications.domain.drafts import Kind

log = logging.getLogger(__name__)

RELEASE = "patient_messages_release"
RECHECK_AFTER = timedelta(minutes=1)


async def park(uow: UnitOfWork, event: Event, kind: Kind) -> None:
    """Keep ``event`` until the patient has a profile (a redelivered event is parked once)."""
    repo = ParkedEventRepository(uow)
    if await repo.parked_once(event.event_id, kind.value):
        return
    row_id = uuid.uuid4()
    await repo.add(
        id=row_id,
        patient_id=event.patient_id,
        event_id=event.event_id,
        event_type=event.event_type,
        kind=kind.value,
        occurred_at=event.occurred_at,
        payload=event.model_dump(mode="json"),
        parked_at=uow.clock.now(),
    )
    # A profile saved while this transaction ran (after it found none) released nothing of
    # this event: look again shortly, whatever happens meanwhile.
    await uow.schedule_timer(
        RELEASE,
        f"{event.patient_id}:parked:{row_id}",
        uow.clock.now() + RECHECK_AFTER,
        {"patient_id": str(event.patient_id)},
    )
    log.info(
        "patient event parked: no notification profile yet",
        extra={"parked_id": str(row_id), "event_id": str(event.event_id), "kind": kind.value},
    )


async def schedule_release(uow: UnitOfWork, patient_id: uuid.UUID) -> bool:
    """The profile was saved: release what waits for it, in a timer of its own (a release that
    fails is retried and parked on its own; the profile save never fails because of it)."""
    if not await parked(uow, patient_id):
        return False
    now = uow.clock.now()
    await uow.schedule_timer(
        RELEASE, f"{patient_id}:{now.isoformat()}", now, {"patient_id": str(patient_id)}
    )
    return True


async def parked(uow: UnitOfWork, patient_id: uuid.UUID) -> list[sa.RowMapping]:
    """The patient's parked events, oldest first (when they happened, then when they came)."""
    return await ParkedEventRepository(uow).waiting(patient_id)


async def mark_released(uow: UnitOfWork, row: sa.RowMapping, outcome: str) -> None:
    await ParkedEventRepository(uow).released(row["id"], outcome, uow.clock.now())
