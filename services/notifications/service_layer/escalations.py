"""Paging clinicians: an escalation per episode and severity walks its policy until acknowledged.

Flow (every arrow one transaction, driven by a consumer or a durable timer):
``ThresholdExceeded`` → escalation (policy copied in) + step timer → the step pages the level's
targets (a page row per person, unique, and a delivery per contact method) and arms the next step
at the level's timeout → … → exhausted. An acknowledgement (API or signed link) stops the walk,
and the ``Escalation`` records ``PageAcknowledged`` (the unit of work publishes it on commit);
the re-page timer is armed; if the episode is still not resolved then, the policy starts again
(a new cycle). ``EscalationResolved`` ends it. Every timer checks that the escalation still
expects it (``next_step_key``), so a stale or re-fired timer pages nobody. The states and their
changes are the aggregate's (domain/paging.py); loading and saving, the repositories'
(adapters/escalation_repository.py); what a page's delivery sends, page_delivery.py.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contracts import EscalationResolved, ThresholdExceeded
from services.chassis.errors import Conflict
from services.chassis.timers import DueTimer, TimerHandler
from services.chassis.uow import UnitOfWork
from services.notifications.adapters import paging_config_repository as paging_config
from services.notifications.adapters import paging_metrics
from services.notifications.adapters.channels import ChannelKind
from services.notifications.adapters.escalation_repository import (
    EscalationRepository,
    PageRepository,
)
from services.notifications.domain import escalation as policy_rules
from services.notifications.domain import routing
from services.notifications.domain.escalation import Step
from services.notifications.domain.paging import (
    Escalation,
    EscalationStatus,
    ForbiddenTransition,
)
from services.notifications.service_layer import delivery, feed, notification_rules, teams

log = logging.getLogger(__name__)

OWNER_KIND = "page"
STEP = "escalation_step"
REPAGE = "escalation_repage"
EXHAUSTED = "escalation_exhausted"
FALLBACK = "fallback"  # the organisation's pager, when nobody else can be reached


# --- consumers --------------------------------------------------------------------------------


async def on_threshold_exceeded(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """Start the policy for this episode and severity, once (a redelivery or a re-publish of the
    same episode finds the escalation); a rise to RED supersedes the AMBER escalation."""
    severity = event.severity.value
    repo = EscalationRepository(uow)
    if await repo.episode_resolved(event.episode_id):
        return  # its EscalationResolved overtook it: the episode is closed, page nobody
    existing = await repo.of_episode(event.episode_id)
    if any(e.outranks(severity) for e in existing):
        return
    superseded = [lower for lower in existing if lower.is_open]
    for lower in superseded:
        lower.supersede()
        await repo.save(lower)
    # The patient's care team chooses the policy (else the default team, else shipped).
    policy = await teams.policy_for(uow, event.patient_id, severity)
    await teams.refresh_gauge_if_stale(uow)  # the unroutable-policies gauge
    opened = Escalation.open(
        episode_id=event.episode_id,
        patient_id=event.patient_id,
        severity=severity,
        family=event.family,
        reason_codes=[r.code for r in event.reasons],
        threshold_event_id=event.event_id,
        policy_key=policy.key,
        policy_version=policy.version,
        policy=policy.definition,
        now=uow.clock.now(),
    )
    await repo.add(opened)
    await _arm_step(uow, opened, opened.first_step())
    # Announced last (feed.py: the feed's lock comes after every row lock).
    for lower in superseded:
        await feed.announce_escalation(uow, "escalation.superseded", lower.summary())
    await feed.announce_escalation(uow, "escalation.opened", opened.summary())


async def on_escalation_resolved(event: EscalationResolved, uow: UnitOfWork) -> None:
    """Monitoring closed the episode: every escalation for it stops, pending deliveries cancel."""
    repo = EscalationRepository(uow)
    if not await repo.episode_resolved(event.episode_id):
        await repo.record_resolved(event.episode_id, event.resolution, event.occurred_at)
    # The pending step's timer is left to fire and find itself stale (``expects``): cancelling
    # it here would lock the escalation, then the timer row, while the poller locks the timer
    # row, then the escalation — a deadlock waiting to happen.
    stopped = [e for e in await repo.of_episode(event.episode_id) if e.is_open]
    for esc in stopped:
        esc.resolve(event.resolution, uow.clock.now())
        await repo.save(esc)
    for esc in stopped:
        await feed.announce_escalation(uow, "escalation.resolved", esc.summary())


# --- timers -----------------------------------------------------------------------------------


async def on_step_due(timer: DueTimer, uow: UnitOfWork) -> None:
    repo = EscalationRepository(uow)
    esc = await _expecting(repo, timer)
    if esc is None:
        return
    step = Step(timer.payload["cycle"], timer.payload["loop"], timer.payload["level"])
    now = uow.clock.now()
    await _page_level(uow, esc, step, now)
    following = esc.step_paged(step, now)
    if following is not None:
        await _arm_step(uow, esc, following)
    elif esc.next_step_key is not None and esc.next_step_at is not None:
        await uow.schedule_timer(
            EXHAUSTED, esc.next_step_key, esc.next_step_at, {"escalation_id": str(esc.id)}
        )
    await repo.save(esc)
    await feed.announce_escalation(uow, "escalation.raised", esc.summary())


async def on_exhausted_due(timer: DueTimer, uow: UnitOfWork) -> None:
    """The last level timed out on the last loop: nobody acknowledged. It stays open and visible
    (the episode is still open in monitoring) until someone acknowledges or it is resolved."""
    repo = EscalationRepository(uow)
    esc = await _expecting(repo, timer)
    if esc is None:
        return
    log.warning("escalation exhausted its policy unacknowledged", extra={"escalation": str(esc.id)})
    esc.exhaust()
    await repo.save(esc)
    await feed.announce_escalation(uow, "escalation.exhausted", esc.summary())


async def on_repage_due(timer: DueTimer, uow: UnitOfWork) -> None:
    """Acknowledged but not resolved in time: start the policy again (a re-triggered alert
    restarts its policy), as a new cycle so every page of it is new."""
    repo = EscalationRepository(uow)
    esc = await _expecting(repo, timer, EscalationStatus.ACKNOWLEDGED)
    if esc is None:
        return
    step = esc.repage(uow.clock.now())
    await repo.save(esc)
    await _arm_step(uow, esc, step)
    await feed.announce_escalation(uow, "escalation.repaged", esc.summary())


TIMER_HANDLERS: dict[str, TimerHandler] = {
    STEP: on_step_due,
    REPAGE: on_repage_due,
    EXHAUSTED: on_exhausted_due,
}


# --- acknowledgement --------------------------------------------------------------------------


async def acknowledge(
    uow: UnitOfWork, escalation_id: uuid.UUID, clinician: str, via: str
) -> dict[str, Any]:
    """Stop the walk, tell monitoring, arm the re-page. Acknowledging twice changes nothing."""
    repo = EscalationRepository(uow)
    esc = await repo.get(escalation_id, lock=True)
    try:
        changed = esc.acknowledge(clinician, via, uow.clock.now())
    except ForbiddenTransition as exc:
        raise Conflict(str(exc)) from None
    if not changed:
        return dict(await repo.row(escalation_id))
    if esc.next_step_key is not None and esc.next_step_at is not None:
        await uow.schedule_timer(
            REPAGE, esc.next_step_key, esc.next_step_at, {"escalation_id": str(esc.id)}
        )
    await repo.save(esc)  # PageAcknowledged goes to the outbox on commit
    await uow.audit(
        actor=clinician,
        actor_role="clinician",
        action="page.acknowledge",
        resource=f"escalation:{via}",
        patient_id=esc.patient_id,
    )
    acknowledged = await repo.row(escalation_id)
    await feed.announce_escalation(uow, "escalation.acknowledged", acknowledged)
    return dict(acknowledged)


async def was_paged(uow: UnitOfWork, escalation_id: uuid.UUID, clinician: str) -> bool:
    return await PageRepository(uow).paged(escalation_id, clinician)


async def escalation(
    uow: UnitOfWork, escalation_id: uuid.UUID, *, lock: bool = False
) -> sa.RowMapping:
    """The stored escalation as the API shows it (NotFound when there is none)."""
    return await EscalationRepository(uow).row(escalation_id, lock=lock)


# --- internals --------------------------------------------------------------------------------


async def _page_level(uow: UnitOfWork, esc: Escalation, step: Step, now: datetime) -> None:
    """Page every target of the level together; a level that reaches nobody pages the fallback."""
    targets: list[str] = []
    for target in policy_rules.level_of(esc.policy, step).targets:
        who = (
            await paging_config.on_call(uow, target.ref, now)
            if target.kind == "schedule"
            else target.ref
        )
        if who is not None and who not in targets:
            targets.append(who)
    reachable = [t for t in targets if await paging_config.contact_methods(uow, t)]
    for person in reachable or [FALLBACK]:
        await page_target(uow, esc, step, person, now, cause="unroutable")


async def page_target(
    uow: UnitOfWork,
    esc: Escalation,
    step: Step,
    target: str,
    now: datetime,
    *,
    cause: str = "unroutable",
) -> None:
    if target == FALLBACK:
        key = policy_rules.fallback_dedup_key(esc.episode_id, esc.severity, step)
    else:
        key = policy_rules.dedup_key(esc.episode_id, esc.severity, step, target)
    pages = PageRepository(uow)
    if await pages.exists(key):
        return  # this person (or the fallback pager, for this level) was already paged
    if target == FALLBACK:
        await _count_fallback(uow, esc, cause)
    page_id = await pages.add(esc, step, target, key, now)
    if target == FALLBACK:
        plan = [(ChannelKind.WEBHOOK.value, 0)]
    else:
        # The level pages the person; the person's own rules choose the channels and delays.
        methods = [m["channel"] for m in await paging_config.contact_methods(uow, target)]
        plan = routing.channel_plan(await notification_rules.rules_of(uow, target), methods)
    for channel, delay in plan:
        await delivery.enqueue(
            uow,
            owner_kind=OWNER_KIND,
            owner_id=page_id,
            channel=ChannelKind(channel),
            idempotency_key=f"{key}-{channel}",
            due_at=now + timedelta(minutes=delay),
        )


async def _count_fallback(uow: UnitOfWork, esc: Escalation, cause: str) -> None:
    """A metric per fallback page; a log line once per escalation (not once per level)."""
    paging_metrics.METRICS.fallback_paged(esc.severity, cause)
    if not await PageRepository(uow).paged(esc.id, FALLBACK):
        log.warning(
            "escalation pages the fallback pager: nobody reachable (one page per level)",
            extra={"escalation": str(esc.id), "policy": esc.policy_key, "cause": cause},
        )


async def _arm_step(uow: UnitOfWork, esc: Escalation, step: Step) -> None:
    """The step's timer, due when the escalation expects it (``next_step_at``)."""
    if esc.next_step_at is None:
        raise ValueError("an escalation arms a step only when one is due")
    await uow.schedule_timer(
        STEP,
        step.timer_key(esc.id),
        esc.next_step_at,
        {"escalation_id": str(esc.id), "cycle": step.cycle, "loop": step.loop, "level": step.level},
    )


async def _expecting(
    repo: EscalationRepository,
    timer: DueTimer,
    status: EscalationStatus = EscalationStatus.TRIGGERED,
) -> Escalation | None:
    """The escalation, locked, if it still waits for exactly this timer in ``status``; None for
    a stale timer (acknowledged, resolved or moved on since it was armed)."""
    esc = await repo.find(uuid.UUID(timer.payload["escalation_id"]))
    return esc if esc is not None and esc.expects(timer.key, status) else None
