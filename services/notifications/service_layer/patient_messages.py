"""Patient messages: a taper event in, at most one short message to the patient out.

Each event becomes one ``patient_messages`` row (unique per source event and kind, so a
redelivered event finds it and does nothing) and, unless the patient opted out or cannot be
reached, one delivery on their first preferred channel, due when their quiet hours allow. The
delivery's durable timer does the waiting, so a message deferred overnight survives restarts.

The message is rendered when the delivery fires, from the template and the facts stored with it,
against the profile as it is *then*: a patient who changed number gets it on the new one; one who
opted out in between gets nothing; one who switched channel gets it on the channel they prefer
now. The text is never stored, logged or returned by the API; logs carry opaque ids and kinds.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import (
    CheckInDue,
    CohortAssigned,
    CohortChanged,
    CohortLeft,
    DoseReduced,
    DoseRestored,
    Event,
    ThresholdExceeded,
    event_class,
)
from services.chassis.errors import PermanentError
from services.chassis.pagination import PageParams
from services.chassis.timers import DueTimer, TimerHandler
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.channels import ChannelKind
from services.notifications.adapters.patient_repository import MessageRepository, ProfileRepository
from services.notifications.domain import drafts, preferences
from services.notifications.domain.drafts import Draft, Kind
from services.notifications.domain.preferences import (
    Preferences,
    SkipReason,
    Status,
)
from services.notifications.service_layer import feed, waiting_for_profile
from services.notifications.service_layer.delivery import deliveries_of, enqueue
from services.notifications.service_layer.message_delivery import (
    OWNER_KIND,
    idempotency_key,
    render_for,
)

log = logging.getLogger(__name__)


# --- consumers ----------------------------------------------------------------------------------

DraftFor = Callable[[Preferences], Draft]
# Kinds where only the newest parked message is worth telling (the dose the patient takes now,
# the group they are in now); older ones are skipped as superseded on release.
NEWEST_ONLY = (Kind.DOSE_CHANGED, Kind.COHORT_ASSIGNED)
SAFETY_NOTICE = "patient_safety_notice"


def _dose_reduced(event: DoseReduced) -> tuple[Kind, DraftFor]:
    regimen = [(d.drug, d.daily_dose_mg) for d in event.regimen] if event.regimen else None
    return Kind.DOSE_CHANGED, lambda prefs: drafts.dose_step(
        step_kind=event.step_kind,
        drug=event.drug,
        previous_mg=event.previous_daily_dose_mg,
        new_mg=event.new_daily_dose_mg,
        regimen=regimen,
        effective_on=event.effective_on,
        with_dose=prefs.include_dose_details,
    )


def _dose_restored(event: DoseRestored) -> tuple[Kind, DraftFor]:
    return Kind.DOSE_CHANGED, lambda prefs: drafts.dose_restored(
        drug=event.drug,
        restored_mg=event.restored_daily_dose_mg,
        regimen=[(d.drug, d.daily_dose_mg) for d in event.regimen],
        effective_on=event.effective_on,
        with_dose=prefs.include_dose_details,
    )


def _check_in_due(event: CheckInDue) -> tuple[Kind, DraftFor]:
    draft = drafts.check_in_due(window_closes_at=event.window_closes_at)
    return Kind.CHECK_IN_DUE, lambda _: draft


def _cohort_assigned(event: CohortAssigned) -> tuple[Kind, DraftFor]:
    draft = drafts.cohort_assigned(moved=False)
    return Kind.COHORT_ASSIGNED, lambda _: draft


def _cohort_changed(event: CohortChanged) -> tuple[Kind, DraftFor]:
    draft = drafts.cohort_assigned(moved=True)
    return Kind.COHORT_ASSIGNED, lambda _: draft


def _cohort_left(event: CohortLeft) -> tuple[Kind, DraftFor] | None:
    """Told only when it was not their own choice (they know when they left)."""
    if event.reason == "patient_left":
        return None
    draft = drafts.cohort_left()
    return Kind.COHORT_ASSIGNED, lambda _: draft


# The message each event type makes: used on consumption and again when a parked event is
# released, so both paths decide the same way.
_DRAFTS: dict[str, Callable[[Any], tuple[Kind, DraftFor] | None]] = {
    DoseReduced.EVENT_TYPE: _dose_reduced,
    DoseRestored.EVENT_TYPE: _dose_restored,
    CheckInDue.EVENT_TYPE: _check_in_due,
    CohortAssigned.EVENT_TYPE: _cohort_assigned,
    CohortChanged.EVENT_TYPE: _cohort_changed,
    CohortLeft.EVENT_TYPE: _cohort_left,
}


async def on_patient_event(event: Event, uow: UnitOfWork) -> None:
    """DoseReduced, DoseRestored, CheckInDue, CohortAssigned/Changed/Left: one message each."""
    made = _DRAFTS[event.event_type](event)
    if made is not None:
        await _record(uow, event, *made)
    if isinstance(event, DoseReduced | DoseRestored):
        # The patient's app hears of it at once, message or not (opted out, no profile yet).
        change = "reduced" if isinstance(event, DoseReduced) else "restored"
        await feed.announce(
            uow,
            "patient",
            "dose.changed",
            event.patient_id,
            {"change": change, "event_id": str(event.event_id)},
        )


on_dose_reduced = on_dose_restored = on_check_in_due = on_patient_event
on_cohort_assigned = on_cohort_changed = on_cohort_left = on_patient_event


async def schedule_safety_notice(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """RED: the patient's safety notice as a durable step of its own (due now), so nothing on
    the patient's side (no or a broken profile, a template error) can fail or delay the page
    written in the same transaction; it is retried, then parked for an operator, on its own."""
    if event.severity.value != "RED":
        return
    await uow.schedule_timer(
        SAFETY_NOTICE,
        str(event.event_id),
        uow.clock.now(),
        {"event": event.model_dump(mode="json")},
    )


async def on_safety_notice_due(timer: DueTimer, uow: UnitOfWork) -> None:
    await on_threshold_exceeded(ThresholdExceeded.model_validate(timer.payload["event"]), uow)


async def on_threshold_exceeded(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """RED: tell the patient their care team has been alerted, and the emergency numbers.

    A patient without a profile gets no notice and nothing is parked: "help is coming" told
    hours later, once a profile exists, would be wrong (the episode may be long over).
    """
    if event.severity.value != "RED":
        return
    if await _preferences(uow, event.patient_id) is None:
        log.info("safety notice not sent: no notification profile")
        return
    draft = drafts.safety_notice()
    await _record(uow, event, Kind.SAFETY_NOTICE, lambda _: draft)


async def on_release_due(timer: DueTimer, uow: UnitOfWork) -> None:
    """The patient's profile exists now: each parked event becomes its message, by the rules
    of ``decide`` (a check-in whose window closed is skipped, opt-outs hold), except that of
    several parked dose or cohort changes only the newest is told (the older are superseded)."""
    patient_id = uuid.UUID(timer.payload["patient_id"])
    if await _preferences(uow, patient_id) is None:
        return  # a re-check before any profile exists: they keep waiting
    rows = await waiting_for_profile.parked(uow, patient_id)
    newest = {row["kind"]: row["id"] for row in rows if row["kind"] in NEWEST_ONLY}
    for row in rows:
        event = event_class(row["event_type"]).model_validate(row["payload"])
        made = _DRAFTS[row["event_type"]](event)
        superseded = row["kind"] in NEWEST_ONLY and newest[row["kind"]] != row["id"]
        if made is not None:
            await _record(uow, event, *made, superseded=superseded)
        outcome = "superseded" if superseded else "recorded"
        await waiting_for_profile.mark_released(uow, row, outcome)


TIMER_HANDLERS: dict[str, TimerHandler] = {
    SAFETY_NOTICE: on_safety_notice_due,
    waiting_for_profile.RELEASE: on_release_due,
}


async def _record(
    uow: UnitOfWork, event: Event, kind: Kind, draft_for: DraftFor, *, superseded: bool = False
) -> None:
    messages = MessageRepository(uow)
    existing = await messages.recorded(event.event_id, kind.value)
    if existing is not None:
        log.info("patient message already recorded", extra={"message_id": str(existing)})
        return
    prefs = await _preferences(uow, event.patient_id)
    if prefs is None:
        # A valid event, not a bad message: kept until the profile exists (never dead-lettered).
        await waiting_for_profile.park(uow, event, kind)
        return
    draft = draft_for(prefs)
    if draft.kind is not kind:
        raise PermanentError(f"template kind {draft.kind} differs from {kind}")
    now = uow.clock.now()
    decision = preferences.decide(prefs, draft, now)
    if superseded:
        decision = preferences.Decision(Status.SKIPPED, now, skip_reason=SkipReason.SUPERSEDED)
    if decision.channel is not None:
        # A template that cannot render fails here, where the event is dead-lettered and can be
        # replayed after a fix, not hours later in a timer.
        render_for(draft.template, draft.params, decision.channel, prefs, decision.send_at)
    message_id = uuid.uuid4()
    await messages.add(
        id=message_id,
        patient_id=event.patient_id,
        kind=kind.value,
        source_event_id=event.event_id,
        template=draft.template,
        params=draft.params,
        status=decision.status.value,
        skip_reason=decision.skip_reason.value if decision.skip_reason else None,
        send_at=decision.send_at,
        created_at=now,
    )
    if decision.channel is not None:
        await enqueue(
            uow,
            owner_kind=OWNER_KIND,
            owner_id=message_id,
            channel=ChannelKind(decision.channel),
            idempotency_key=idempotency_key(message_id, decision.channel),
            due_at=decision.send_at,
        )
    log.info(
        "patient message recorded",
        extra={
            "message_id": str(message_id),
            "event_id": str(event.event_id),
            "kind": kind.value,
            "status": decision.status.value,
            "skip_reason": decision.skip_reason.value if decision.skip_reason else None,
        },
    )


# --- preferences and history (for the API) ------------------------------------------------------


async def get_preferences(uow: UnitOfWork, patient_id: uuid.UUID) -> dict[str, Any] | None:
    row = await ProfileRepository(uow).row(patient_id)
    return dict(row) if row is not None else None


async def set_preferences(
    uow: UnitOfWork, patient_id: uuid.UUID, prefs: Preferences, *, updated_by: str
) -> dict[str, Any]:
    """Store ``prefs`` (already validated by the domain) and commit; returns the stored row.

    Messages already scheduled pick the change up when they fire (see ``MessageOwner``)."""
    values = await ProfileRepository(uow).save(
        patient_id, prefs, updated_by=updated_by, now=uow.clock.now()
    )
    # Events that waited for this profile are released now (a timer of their own).
    await waiting_for_profile.schedule_release(uow, patient_id)
    await uow.commit()
    log.info("notification preferences saved", extra={"patient_id": str(patient_id)})
    return {"patient_id": patient_id, **values}


@dataclass(frozen=True)
class MessageSummary:
    """A message as the API shows it: status and deliveries, never its text or the address."""

    id: uuid.UUID
    kind: str
    status: str
    skip_reason: str | None
    send_at: datetime
    sent_at: datetime | None
    created_at: datetime
    deliveries: list[dict[str, Any]]


async def message_history(
    uow: UnitOfWork,
    patient_id: uuid.UUID,
    page: PageParams,
    *,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[MessageSummary], str | None]:
    """Newest first, one page (created in [since, until), in ``status`` if given)."""
    found, following = await MessageRepository(uow).history(
        patient_id, page, status=status, since=since, until=until
    )
    by_message = await deliveries_of(uow, OWNER_KIND, [r["id"] for r in found])
    summaries = [MessageSummary(**r, deliveries=by_message.get(r["id"], [])) for r in found]
    return summaries, following


# --- helpers ------------------------------------------------------------------------------------


async def _preferences(uow: UnitOfWork, patient_id: uuid.UUID) -> Preferences | None:
    return await ProfileRepository(uow).preferences(patient_id)
