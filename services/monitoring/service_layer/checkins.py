"""Check-ins after each dose step: scheduled on ``DoseReduced``, announced as ``CheckInDue`` when
they fall due, completed by a report inside their window, else missed (an ``engagement`` signal).

Two durable timers per check-in, both keyed by the check-in's id: ``checkin_due`` (at ``due_at``:
status ``due``, ``CheckInDue`` recorded, arm the second) and ``checkin_missed`` (at
``window_closes_at``: still ``due`` -> ``missed`` and ``escalate``). Every step is a move of the
``CheckIn`` aggregate's state machine (``domain.checkin``), taken only if the state allows it and
saved only if the row still has the status it was read with, so a timer that fires twice, or
after a report or a newer step, changes nothing.
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

from contracts import CheckInDue, DoseReduced
from services.chassis.errors import PermanentError
from services.chassis.pagination import PageParams
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.checkin_repository import CheckInRepository
from services.monitoring.domain.checkin import CheckIn
from services.monitoring.domain.checkins import (
    CheckInCadence,
    CheckInStatus,
    UnknownHalfLifeClass,
    cadence_v1,
    plan_checkins,
    step_start,
)
from services.monitoring.service_layer.episodes import escalate

CHECKIN_DUE = "checkin_due"
CHECKIN_MISSED = "checkin_missed"


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
    repository = CheckInRepository(uow)
    if await repository.any_after(event.event_id):
        return
    now = uow.clock.now()
    planned = [p for p in planned if p.window_closes_at > now]
    if not planned:
        return
    await _supersede(uow, event, step_start(event.effective_on, event.effective_at))
    for p in planned:
        checkin = CheckIn.plan(event.patient_id, event.event_id, p, tuple(cadence.instruments))
        await repository.add(checkin)
        await uow.schedule_timer(
            CHECKIN_DUE,
            key=str(checkin.id),
            due_at=p.due_at,
            payload={"correlation_id": str(event.correlation_id)},
        )


async def _supersede(uow: UnitOfWork, event: DoseReduced, step_starts_at: datetime) -> None:
    repository = CheckInRepository(uow)
    stale = await repository.scheduled_from(
        event.patient_id, step_starts_at, besides=event.event_id
    )
    for checkin in stale:
        await uow.cancel_timer(CHECKIN_DUE, str(checkin.id))  # timer row first: the poller's order
        checkin.supersede()
        await repository.save(checkin)


async def on_checkin_due(timer: DueTimer, uow: UnitOfWork) -> None:
    """The check-in is due: remind the patient (``CheckInDue``) and arm the missed-check timer."""
    repository = CheckInRepository(uow)
    checkin = await _load(repository, timer.key)
    if not checkin.may_become(CheckInStatus.DUE):
        return  # already due, completed early, superseded: firing again changes nothing
    reminder = checkin.fall_due(uow.clock.now(), _uuid(timer.payload.get("correlation_id")))
    if not await repository.save(checkin):
        return  # a report completed it concurrently
    payload: dict[str, Any] = {}
    if reminder is not None:
        payload["checkin_due"] = reminder.model_dump(mode="json")
    await uow.schedule_timer(CHECKIN_MISSED, str(checkin.id), checkin.window_closes_at, payload)


async def on_checkin_missed(timer: DueTimer, uow: UnitOfWork) -> None:
    """The window closed: a check-in still ``due`` is missed, an AMBER ``engagement`` finding."""
    repository = CheckInRepository(uow)
    checkin = await _load(repository, timer.key)
    if not checkin.may_become(CheckInStatus.MISSED):
        return  # completed (or already missed): nothing to do
    finding = checkin.miss()
    if not await repository.save(checkin):
        return  # a report completed it concurrently
    reminder = timer.payload.get("checkin_due")
    await escalate(
        uow,
        checkin.patient_id,
        (finding,),
        checkin.id,
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
    repository = CheckInRepository(uow)
    completed = 0
    for checkin in await repository.open_at(patient_id, now):
        if not checkin.completes_with(instrument, now):
            continue
        checkin.complete(report_id)
        if await repository.save(checkin):
            completed += 1
    return completed


async def checkin_page(
    uow: UnitOfWork,
    patient_id: uuid.UUID,
    page: PageParams,
    *,
    status: CheckInStatus | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Latest due first, due in [since, until), in ``status`` if given; the next cursor."""
    return await CheckInRepository(uow).page(
        patient_id, page, status=status, since=since, until=until
    )


async def _load(repository: CheckInRepository, key: str) -> CheckIn:
    try:
        checkin_id = uuid.UUID(key)
    except ValueError:
        raise InconsistentCheckIn("timer key is not a check-in id") from None
    checkin = await repository.get(checkin_id)
    if checkin is None:
        raise InconsistentCheckIn("check-in not found")
    return checkin


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
