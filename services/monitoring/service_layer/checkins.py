"""Check-ins after each dose step: scheduled on ``DoseReduced``, announced as ``CheckInDue`` when
they fall due, completed by a report inside their window, else missed (an ``engagement`` signal).

Two durable timers per check-in, both keyed by the check-in's id: ``checkin_due`` (at ``due_at``:
status ``due``, publish ``CheckInDue``, arm the second) and ``checkin_missed`` (at
``window_closes_at``: still ``due`` -> ``missed`` and ``escalate``). Every step is guarded by the
row's status, so a timer that fires twice, or after a report or a newer step, changes nothing.
Timers are never cancelled by a report (the status guard is enough, and it keeps the lock order
of the timer poller, timer row then check-in row, the only one used).

A later step supersedes the earlier step's check-ins that have not fallen due yet and would fall
due once it is in effect (status ``superseded``, timers cancelled): the new step's own cadence
assesses the patient from then on, and stale check-ins would page about engagement twice for one
silence. A check-in already ``due`` keeps its window: the patient has been reminded of it.
This relies on a patient's DoseReduced arriving in order (Kafka key = patient_id).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from contracts import CheckInDue, DoseReduced
from services.chassis.errors import PermanentError
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import checkins
from services.monitoring.domain.checkins import (
    CheckInCadence,
    CheckInStatus,
    UnknownHalfLifeClass,
    cadence_v1,
    plan_checkins,
    step_start,
)
from services.monitoring.domain.model import Reason, Severity
from services.monitoring.domain.rules import ENGAGEMENT, Finding
from services.monitoring.service_layer.episodes import escalate

CHECKIN_DUE = "checkin_due"
CHECKIN_MISSED = "checkin_missed"
MISSED_CHECKIN = "missed_checkin"  # the reason code of the engagement finding


class NoCheckInCadence(PermanentError):
    """The event's half-life class has no check-in cadence: dead-letter it, never guess."""


class InconsistentCheckIn(PermanentError):
    """A timer names a check-in that does not exist (parked for an operator)."""


async def schedule_checkins(
    event: DoseReduced, uow: UnitOfWork, *, cadence: CheckInCadence | None = None
) -> None:
    """Plan the step's check-ins (status ``scheduled``), one ``checkin_due`` timer each.

    A redelivered event schedules nothing (its check-ins exist); check-ins whose window has
    already closed (an event consumed very late) are not scheduled: nobody could be reminded.
    """
    cadence = cadence or cadence_v1()
    try:
        planned = plan_checkins(
            event.effective_on,
            event.half_life_class,
            cadence,
            starts_at=event.effective_at,
            timezone=event.timezone,
        )
    except UnknownHalfLifeClass as exc:
        raise NoCheckInCadence(str(exc)) from None
    already = await uow.session.scalar(
        sa.select(sa.func.count())
        .select_from(checkins)
        .where(checkins.c.after_dose_event_id == event.event_id)
    )
    if already:
        return
    now = uow.clock.now()
    planned = [p for p in planned if p.window_closes_at > now]
    if not planned:
        return
    await _supersede(uow, event, step_start(event.effective_on, event.effective_at))
    instruments = list(cadence.instruments)
    for p in planned:
        checkin_id = uuid.uuid4()
        await uow.session.execute(
            sa.insert(checkins).values(
                id=checkin_id,
                patient_id=event.patient_id,
                after_dose_event_id=event.event_id,
                due_at=p.due_at,
                window_closes_at=p.window_closes_at,
                instruments=instruments,
                status=CheckInStatus.SCHEDULED.value,
                completed_by_report_id=None,
            )
        )
        await uow.schedule_timer(
            CHECKIN_DUE,
            key=str(checkin_id),
            due_at=p.due_at,
            payload={"correlation_id": str(event.correlation_id)},
        )


async def _supersede(uow: UnitOfWork, event: DoseReduced, step_starts_at: datetime) -> None:
    rows = await uow.session.execute(
        sa.select(checkins.c.id).where(
            checkins.c.patient_id == event.patient_id,
            checkins.c.status == CheckInStatus.SCHEDULED.value,
            checkins.c.after_dose_event_id != event.event_id,
            checkins.c.due_at >= step_starts_at,
        )
    )
    for (checkin_id,) in rows.all():
        await uow.cancel_timer(CHECKIN_DUE, str(checkin_id))  # timer row first: the poller's order
        await uow.session.execute(
            sa.update(checkins)
            .where(checkins.c.id == checkin_id, checkins.c.status == CheckInStatus.SCHEDULED.value)
            .values(status=CheckInStatus.SUPERSEDED.value)
        )


async def on_checkin_due(timer: DueTimer, uow: UnitOfWork) -> None:
    """The check-in is due: remind the patient (``CheckInDue``) and arm the missed-check timer."""
    row = await _load(uow, timer.key)
    if row["status"] != CheckInStatus.SCHEDULED.value:
        return  # already due, completed early, superseded: firing again changes nothing
    now = uow.clock.now()
    await uow.session.execute(
        sa.update(checkins).where(checkins.c.id == row["id"]).values(status=CheckInStatus.DUE.value)
    )
    payload: dict[str, Any] = {}
    if now < row["window_closes_at"]:  # a reminder for a window already closed helps nobody
        event = CheckInDue.create(
            patient_id=row["patient_id"],
            occurred_at=now,
            correlation_id=_uuid(timer.payload.get("correlation_id")),
            causation_id=row["after_dose_event_id"],
            checkin_id=row["id"],
            due_at=row["due_at"],
            window_closes_at=row["window_closes_at"],
            instruments=tuple(row["instruments"]),
            after_dose_event_id=row["after_dose_event_id"],
        )
        await uow.publish(event)
        payload["checkin_due"] = event.model_dump(mode="json")
    await uow.schedule_timer(CHECKIN_MISSED, str(row["id"]), row["window_closes_at"], payload)


async def on_checkin_missed(timer: DueTimer, uow: UnitOfWork) -> None:
    """The window closed: a check-in still ``due`` is missed, an AMBER ``engagement`` finding."""
    row = await _load(uow, timer.key)
    if row["status"] != CheckInStatus.DUE.value:
        return  # completed (or already missed): nothing to do
    result = await uow.session.execute(
        sa.update(checkins)
        .where(checkins.c.id == row["id"], checkins.c.status == CheckInStatus.DUE.value)
        .values(status=CheckInStatus.MISSED.value)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return  # a report completed it concurrently
    reminder = timer.payload.get("checkin_due")
    finding = Finding(ENGAGEMENT, Severity.AMBER, Reason(MISSED_CHECKIN, None, None, None))
    await escalate(
        uow,
        row["patient_id"],
        (finding,),
        row["id"],
        cause=CheckInDue.model_validate(reminder) if reminder else None,
    )


async def complete_due_checkins(
    uow: UnitOfWork, patient_id: uuid.UUID, report_id: uuid.UUID, instrument: str, now: datetime
) -> int:
    """A report of ``instrument`` at ``now`` completes the patient's check-ins whose window
    ``[due_at, window_closes_at)`` holds ``now`` and which ask for that instrument.

    A check-in still ``scheduled`` inside its window counts too (its due timer has not fired
    yet: the poller lags); that timer then finds it completed and reminds nobody.
    Returns how many were completed.
    """
    open_statuses = (CheckInStatus.SCHEDULED.value, CheckInStatus.DUE.value)
    rows = await uow.session.execute(
        sa.select(checkins.c.id, checkins.c.instruments).where(
            checkins.c.patient_id == patient_id,
            checkins.c.status.in_(open_statuses),
            checkins.c.due_at <= now,
            checkins.c.window_closes_at > now,
        )
    )
    completed = 0
    for checkin_id, instruments in rows.all():
        if instrument not in instruments:
            continue
        result = await uow.session.execute(
            sa.update(checkins)
            .where(checkins.c.id == checkin_id, checkins.c.status.in_(open_statuses))
            .values(status=CheckInStatus.COMPLETED.value, completed_by_report_id=report_id)
        )
        completed += result.rowcount  # type: ignore[attr-defined]
    return completed


async def _load(uow: UnitOfWork, key: str) -> Any:
    try:
        checkin_id = uuid.UUID(key)
    except ValueError:
        raise InconsistentCheckIn("timer key is not a check-in id") from None
    row = (
        (await uow.session.execute(sa.select(checkins).where(checkins.c.id == checkin_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise InconsistentCheckIn("check-in not found")
    return row


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
