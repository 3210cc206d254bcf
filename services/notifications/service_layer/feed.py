"""The live-update feed: what the event streams tell a clinician's console and a patient's app.

A change announces itself with :func:`announce` inside its own transaction, as an ``event_feed``
row (like the outbox): nothing is announced that did not commit, nothing committed is missed. A
stream (entrypoints/events_api.py) on any replica reads the rows after the last id it sent, so a
client that reconnects to another replica with ``Last-Event-ID`` resumes exactly there.

"After id N" is only safe if ids become visible in id order. PostgreSQL hands out sequence
values at insert, not at commit: a transaction holding id 10 that commits after the one holding
11 would be skipped by a reader that already saw 11. So on PostgreSQL the insert takes a
transaction-scoped advisory lock first: feed rows are written one transaction at a time, ids in
commit order. It is taken last in each transaction (after the escalation or delivery row locks
the change took), so the lock order is always row, then feed. SQLite has a single writer anyway.

The payload is PHI-minimal: ids, statuses, severities, levels, kinds. The client reads details
with its own authorized GET.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from services.chassis.db import is_postgres
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.orm import event_feed, pages

Audience = Literal["clinician", "patient"]
_LOCK_KEY = zlib.crc32(b"notifications:event_feed")

# Every type a stream carries, with what it means (the OpenAPI description lists them).
CLINICIAN_TYPES = {
    "escalation.opened": "A new escalation for a patient (a rise to RED opens one too).",
    "escalation.raised": "The escalation paged its next level (level, loop, cycle).",
    "escalation.acknowledged": "A clinician acknowledged it; paging stopped.",
    "escalation.repaged": "Acknowledged but unresolved in time: the policy starts again.",
    "escalation.exhausted": "Its policy ran out with nobody acknowledging; still open.",
    "escalation.superseded": "A RED escalation of the same episode replaced this AMBER one.",
    "escalation.resolved": "The episode was resolved; the escalation is closed.",
}
PATIENT_TYPES = {
    "dose.changed": "The patient's dose changed (reduced or restored): read the taper.",
    "message.sent": "A message (SMS or e-mail) went out to the patient.",
}
RESET = "feed.reset"
RESET_DOC = (
    "The stream cannot resume where asked (events older than the feed's retention, or an id "
    "this feed never gave): reload the lists, then carry on from this event's id."
)


async def announce(
    uow: UnitOfWork,
    audience: Audience,
    event_type: str,
    patient_id: uuid.UUID,
    payload: dict[str, Any],
    *,
    escalation_id: uuid.UUID | None = None,
) -> None:
    """Add an event to the feed, in ``uow``'s transaction. Call it after the change's own
    writes: on PostgreSQL it holds the feed's lock until the transaction ends."""
    known = CLINICIAN_TYPES if audience == "clinician" else PATIENT_TYPES
    if event_type not in known:
        raise ValueError(f"unknown {audience} feed event {event_type}")
    if is_postgres(uow.session.bind):
        await uow.session.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
    await uow.session.execute(
        sa.insert(event_feed).values(
            audience=audience,
            patient_id=patient_id,
            escalation_id=escalation_id,
            type=event_type,
            payload=payload,
            created_at=uow.clock.now(),
        )
    )


def escalation_payload(row: Any, **changes: Any) -> dict[str, Any]:
    """What a clinician's console needs to update its list: ids, status, severity, position."""
    values = {**dict(row), **changes}
    return {
        "escalation_id": str(values["id"]),
        "episode_id": str(values["episode_id"]),
        "status": values["status"],
        "severity": values["severity"],
        "level": values["level"],
        "loop": values["loop"],
        "cycle": values["cycle"],
    }


async def announce_escalation(uow: UnitOfWork, event_type: str, row: Any, **changes: Any) -> None:
    await announce(
        uow,
        "clinician",
        event_type,
        row["patient_id"],
        escalation_payload(row, **changes),
        escalation_id=row["id"],
    )


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicianView:
    """A clinician's panel and the escalations that paged them; ``panel`` None: every patient
    (clinical administrators), as ``GET /escalations`` shows them."""

    subject: str
    panel: frozenset[uuid.UUID] | None


@dataclass(frozen=True)
class PatientView:
    patient_id: uuid.UUID


View = ClinicianView | PatientView


def _visible(view: View) -> sa.ColumnElement[bool]:
    f = event_feed.c
    if isinstance(view, PatientView):
        return sa.and_(f.audience == "patient", f.patient_id == view.patient_id)
    if view.panel is None:
        return f.audience == "clinician"
    # Correlated on the escalation (pages' index): evaluated for the few new rows only.
    paged_me = sa.exists().where(
        pages.c.escalation_id == f.escalation_id, pages.c.target == view.subject
    )
    return sa.and_(f.audience == "clinician", sa.or_(f.patient_id.in_(list(view.panel)), paged_me))


async def after(uow: UnitOfWork, view: View, last_id: int, limit: int) -> list[dict[str, Any]]:
    """The view's events after ``last_id``, oldest first, at most ``limit``."""
    f = event_feed.c
    query = (
        sa.select(f.id, f.type, f.patient_id, f.payload, f.created_at)
        .where(f.id > last_id, _visible(view))
        .order_by(f.id)
        .limit(limit)
    )
    return [dict(r) for r in (await uow.session.execute(query)).mappings()]


async def resume_point(uow: UnitOfWork, last_id: int | None) -> tuple[int, str | None]:
    """Where a stream starts: after ``last_id`` if the feed still holds everything since (else
    a reset reason), and after the newest row for a client that gives no id (only what is new)."""
    f = event_feed.c
    oldest, newest = (
        await uow.session.execute(sa.select(sa.func.min(f.id), sa.func.max(f.id)))
    ).one()
    newest = newest or 0
    if last_id is None:
        return newest, None
    if last_id > newest:
        return newest, "unknown_id"  # another deployment's id, or a database started afresh
    if oldest is not None and last_id < oldest - 1:
        return newest, "expired"  # rows after it were pruned (retention)
    return last_id, None
