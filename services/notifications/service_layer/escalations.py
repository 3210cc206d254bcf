"""Paging clinicians: an escalation per episode and severity walks its policy until acknowledged.

Flow (every arrow one transaction, driven by a consumer or a durable timer):
``ThresholdExceeded`` → escalation (policy copied in) + step timer → the step pages the level's
targets (a page row per person, unique, and a delivery per contact method) and arms the next step
at the level's timeout → … → exhausted. An acknowledgement (API or signed link) stops the walk,
publishes ``PageAcknowledged`` and arms the re-page timer; if the episode is still not resolved
then, the policy starts again (a new cycle). ``EscalationResolved`` ends it. Every timer checks
that the escalation still expects it (``next_step_key``), so a stale or re-fired timer pages
nobody.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contracts import EscalationResolved, PageAcknowledged, ThresholdExceeded
from services.chassis.db import is_postgres
from services.chassis.errors import Conflict, NotFound
from services.chassis.timers import DueTimer, TimerHandler
from services.chassis.uow import UnitOfWork
from services.notifications.adapters import paging_metrics
from services.notifications.adapters.ack_links import AckClaim, AckLinks
from services.notifications.adapters.channels import ChannelKind, OutboundMessage
from services.notifications.adapters.orm import deliveries, escalations, pages, resolved_episodes
from services.notifications.domain import escalation as policy_rules
from services.notifications.domain import routing
from services.notifications.domain.escalation import PolicyDefinition, Step
from services.notifications.domain.rendering import render_page
from services.notifications.service_layer import (
    config,
    delivery,
    feed,
    notification_rules,
    teams,
)

log = logging.getLogger(__name__)

OWNER_KIND = "page"
STEP = "escalation_step"
REPAGE = "escalation_repage"
EXHAUSTED = "escalation_exhausted"
FALLBACK = "fallback"  # the organisation's pager, when nobody else can be reached
OPEN = ("triggered", "acknowledged", "exhausted")
SEVERITY_RANK = {"AMBER": 1, "RED": 2}


# --- consumers --------------------------------------------------------------------------------


async def on_threshold_exceeded(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """Start the policy for this episode and severity, once (a redelivery or a re-publish of the
    same episode finds the escalation); a rise to RED supersedes the AMBER escalation."""
    severity = event.severity.value
    if await _resolved(uow, event.episode_id):
        return  # its EscalationResolved overtook it: the episode is closed, page nobody
    existing = await _escalations_of(uow, event.episode_id)
    if any(SEVERITY_RANK[e["severity"]] >= SEVERITY_RANK[severity] for e in existing):
        return
    now = uow.clock.now()
    superseded = [lower for lower in existing if lower["status"] in OPEN]
    for lower in superseded:
        await _stop(uow, lower, status="superseded")
    # The patient's care team chooses the policy (else the default team, else shipped).
    policy = await teams.policy_for(uow, event.patient_id, severity)
    await teams.refresh_gauge_if_stale(uow)  # the unroutable-policies gauge
    escalation_id = uuid.uuid4()
    step = policy_rules.first_step()
    due = policy_rules.first_page_at(policy.definition, severity, now)
    await uow.session.execute(
        sa.insert(escalations).values(
            id=escalation_id,
            episode_id=event.episode_id,
            patient_id=event.patient_id,
            severity=severity,
            family=event.family,
            reason_codes=[r.code for r in event.reasons],
            threshold_event_id=event.event_id,
            policy_key=policy.key,
            policy_version=policy.version,
            policy=policy.definition.model_dump(mode="json"),
            status="triggered",
            cycle=0,
            loop=0,
            level=0,  # nothing paged yet
            next_step_key=step.timer_key(escalation_id),
            next_step_at=due,
            created_at=now,
        )
    )
    await _arm_step(uow, escalation_id, step, due)
    # Announced last (feed.py: the feed's lock comes after every row lock).
    for lower in superseded:
        await feed.announce_escalation(uow, "escalation.superseded", lower, status="superseded")
    await feed.announce_escalation(uow, "escalation.opened", await escalation(uow, escalation_id))


async def on_escalation_resolved(event: EscalationResolved, uow: UnitOfWork) -> None:
    """Monitoring closed the episode: every escalation for it stops, pending deliveries cancel."""
    if not await _resolved(uow, event.episode_id):
        await uow.session.execute(
            sa.insert(resolved_episodes).values(
                episode_id=event.episode_id,
                resolution=event.resolution,
                resolved_at=event.occurred_at,
            )
        )
    stopped = [row for row in await _escalations_of(uow, event.episode_id) if row["status"] in OPEN]
    for row in stopped:
        await _stop(uow, row, status="resolved", resolution=event.resolution)
    for row in stopped:
        await feed.announce_escalation(uow, "escalation.resolved", row, status="resolved")


# --- timers -----------------------------------------------------------------------------------


async def on_step_due(timer: DueTimer, uow: UnitOfWork) -> None:
    row = await _expecting(uow, timer)
    if row is None:
        return
    step = Step(timer.payload["cycle"], timer.payload["loop"], timer.payload["level"])
    policy = PolicyDefinition.model_validate(row["policy"])
    now = uow.clock.now()
    await _page_level(uow, row, policy, step, now)
    due = now + policy_rules.ack_timeout(policy, step)
    following = policy_rules.step_after(policy, step)
    if following is not None:
        next_key = following.timer_key(row["id"])
        await _arm_step(uow, row["id"], following, due)
    else:
        next_key = f"{row['id']}:c{step.cycle}:exhausted"
        await uow.schedule_timer(EXHAUSTED, next_key, due, {"escalation_id": str(row["id"])})
    await _update(
        uow,
        row["id"],
        cycle=step.cycle,
        loop=step.loop,
        level=step.level,
        next_step_key=next_key,
        next_step_at=due,
    )
    await feed.announce_escalation(
        uow, "escalation.raised", row, cycle=step.cycle, loop=step.loop, level=step.level
    )


async def on_exhausted_due(timer: DueTimer, uow: UnitOfWork) -> None:
    """The last level timed out on the last loop: nobody acknowledged. It stays open and visible
    (the episode is still open in monitoring) until someone acknowledges or it is resolved."""
    row = await _expecting(uow, timer)
    if row is None:
        return
    log.warning(
        "escalation exhausted its policy unacknowledged", extra={"escalation": str(row["id"])}
    )
    await _update(uow, row["id"], status="exhausted", next_step_key=None, next_step_at=None)
    await feed.announce_escalation(uow, "escalation.exhausted", row, status="exhausted")


async def on_repage_due(timer: DueTimer, uow: UnitOfWork) -> None:
    """Acknowledged but not resolved in time: start the policy again (a re-triggered alert
    restarts its policy), as a new cycle so every page of it is new."""
    row = await _expecting(uow, timer, status="acknowledged")
    if row is None:
        return
    step = policy_rules.first_step(cycle=row["cycle"] + 1)
    now = uow.clock.now()
    await _update(
        uow,
        row["id"],
        status="triggered",
        cycle=step.cycle,
        loop=0,
        level=0,
        next_step_key=step.timer_key(row["id"]),
        next_step_at=now,
        acknowledged_at=None,
        acknowledged_by=None,
        acknowledged_via=None,
    )
    await _arm_step(uow, row["id"], step, now)
    await feed.announce_escalation(
        uow, "escalation.repaged", row, status="triggered", cycle=step.cycle, loop=0, level=0
    )


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
    row = await escalation(uow, escalation_id, lock=True)
    if row["status"] == "acknowledged":
        return dict(row)
    if row["status"] not in ("triggered", "exhausted"):
        raise Conflict(f"escalation is {row['status']}")
    now = uow.clock.now()
    policy = PolicyDefinition.model_validate(row["policy"])
    repage = policy_rules.repage_at(policy, now)
    repage_key = f"{row['id']}:c{row['cycle']}:repage" if repage else None
    if repage is not None and repage_key is not None:
        await uow.schedule_timer(REPAGE, repage_key, repage, {"escalation_id": str(row["id"])})
    await _update(
        uow,
        row["id"],
        status="acknowledged",
        acknowledged_at=now,
        acknowledged_by=clinician,
        acknowledged_via=via,
        next_step_key=repage_key,
        next_step_at=repage,
    )
    await uow.publish(
        PageAcknowledged.create(
            patient_id=row["patient_id"],
            occurred_at=now,
            episode_id=row["episode_id"],
            severity=row["severity"],
            acknowledged_by=clinician,
            channel=via,
        )
    )
    await uow.audit(
        actor=clinician,
        actor_role="clinician",
        action="page.acknowledge",
        resource=f"escalation:{via}",
        patient_id=row["patient_id"],
    )
    acknowledged = await escalation(uow, escalation_id)
    await feed.announce_escalation(uow, "escalation.acknowledged", acknowledged)
    return dict(acknowledged)


async def current_for_episode(uow: UnitOfWork, episode_id: uuid.UUID) -> sa.RowMapping:
    """The escalation that speaks for the episode: the highest severity."""
    rows = await _escalations_of(uow, episode_id)
    if not rows:
        raise NotFound("no escalation for this episode")
    return max(rows, key=lambda r: SEVERITY_RANK[r["severity"]])


async def was_paged(uow: UnitOfWork, escalation_id: uuid.UUID, clinician: str) -> bool:
    found = await uow.session.scalar(
        sa.select(pages.c.id)
        .where(pages.c.escalation_id == escalation_id, pages.c.target == clinician)
        .limit(1)
    )
    return found is not None


# --- the page as a delivery owner -------------------------------------------------------------


class PageOwner:
    """Turns a page delivery into the message on the wire, and acts on how it went."""

    def __init__(self, links: AckLinks, *, fallback_routing_key: str) -> None:
        self._links = links
        self._fallback_routing_key = fallback_routing_key

    async def message_for(
        self, uow: UnitOfWork, row: sa.RowMapping, *, in_doubt: bool = False
    ) -> OutboundMessage | None:
        # A page has no timing of its own to wait for: the same message in doubt or not.
        page = (
            (await uow.session.execute(sa.select(pages).where(pages.c.id == row["owner_id"])))
            .mappings()
            .one()
        )
        esc = await escalation(uow, page["escalation_id"])
        if esc["status"] not in ("triggered", "exhausted") or esc["cycle"] != page["cycle"]:
            return None  # acknowledged, resolved or superseded since: nobody needs this page
        channel = ChannelKind(row["channel"])
        address = await self._address(uow, page["target"], channel)
        if address is None:
            return None  # the contact method was removed since
        policy = PolicyDefinition.model_validate(esc["policy"])
        now = uow.clock.now()
        # SMS and email leave our systems: no patient id, no reasons (minimum necessary); the
        # clinician opens the console. The pager webhook (a BAA-covered provider) gets the codes.
        words = render_page(
            severity=page["severity"], level=page["level"], levels=len(policy.levels)
        )
        links: tuple[tuple[str, str], ...] = ()
        if page["target"] != FALLBACK:
            # Valid across re-pages: a clinician answering an earlier page is still answering.
            claim = AckClaim(esc["id"], page["target"])
            links = ((self._links.url(claim, now), words.acknowledge),)
        details: dict[str, Any] = {}
        if channel is ChannelKind.WEBHOOK:
            details = {
                "episode_id": str(page["episode_id"]),
                "patient_id": str(page["patient_id"]),
                "level": page["level"],
                "loop": page["loop"],
                "cycle": page["cycle"],
                "reasons": list(page["reason_codes"]),
            }
        return OutboundMessage(
            delivery_id=row["id"],
            channel=channel,
            address=address,
            idempotency_key=row["idempotency_key"],
            subject=words.subject,
            body=words.body,
            severity=page["severity"],
            details=details,
            links=links,
        )

    async def on_outcome(self, uow: UnitOfWork, row: Mapping[str, Any], status: str) -> None:
        page = (
            (await uow.session.execute(sa.select(pages).where(pages.c.id == row["owner_id"])))
            .mappings()
            .one()
        )
        now = uow.clock.now()
        attempts = page["attempts"] + int(row["attempts"] or 0)
        if status == "sent":
            values: dict[str, Any] = {"attempts": attempts}
            if page["status"] != "delivered":
                values |= {"status": "delivered", "delivered_at": now}
            await uow.session.execute(
                sa.update(pages).where(pages.c.id == page["id"]).values(**values)
            )
            await uow.audit(
                actor="notifications",
                actor_role="service",
                action="page.sent",
                resource=f"page:{row['channel']}",
                patient_id=page["patient_id"],
            )
            return
        await uow.session.execute(
            sa.update(pages).where(pages.c.id == page["id"]).values(attempts=attempts)
        )
        if status == "cancelled":
            return
        await uow.audit(
            actor="notifications",
            actor_role="service",
            action=f"page.{status}",
            resource=f"page:{row['channel']}",
            patient_id=page["patient_id"],
        )
        if await _every_delivery_gave_up(uow, page["id"]):
            await uow.session.execute(
                sa.update(pages).where(pages.c.id == page["id"]).values(status="undeliverable")
            )
            if page["target"] != FALLBACK:
                # Nobody could be reached on any channel: the organisation's pager gets it.
                esc = await escalation(uow, page["escalation_id"])
                step = Step(page["cycle"], page["loop"], page["level"])
                await _page_target(uow, esc, step, FALLBACK, now, cause="undeliverable")

    async def _address(self, uow: UnitOfWork, target: str, channel: ChannelKind) -> str | None:
        if target == FALLBACK:
            return self._fallback_routing_key if channel is ChannelKind.WEBHOOK else None
        for method in await config.contact_methods(uow, target):
            if method["channel"] == channel.value:
                return method["address"]
        return None


# --- internals --------------------------------------------------------------------------------


async def _page_level(
    uow: UnitOfWork, esc: sa.RowMapping, policy: PolicyDefinition, step: Step, now: datetime
) -> None:
    """Page every target of the level together; a level that reaches nobody pages the fallback."""
    targets: list[str] = []
    for target in policy_rules.level_of(policy, step).targets:
        who = (
            await config.on_call(uow, target.ref, now) if target.kind == "schedule" else target.ref
        )
        if who is not None and who not in targets:
            targets.append(who)
    reachable = [t for t in targets if await config.contact_methods(uow, t)]
    for person in reachable or [FALLBACK]:
        await _page_target(uow, esc, step, person, now, cause="unroutable")


async def _page_target(
    uow: UnitOfWork,
    esc: sa.RowMapping,
    step: Step,
    target: str,
    now: datetime,
    *,
    cause: str = "unroutable",
) -> None:
    if target == FALLBACK:
        key = policy_rules.fallback_dedup_key(esc["episode_id"], esc["severity"], step)
    else:
        key = policy_rules.dedup_key(esc["episode_id"], esc["severity"], step, target)
    if await uow.session.scalar(sa.select(pages.c.id).where(pages.c.dedup_key == key)) is not None:
        return  # this person (or the fallback pager, for this level) was already paged
    if target == FALLBACK:
        await _count_fallback(uow, esc, cause)
    page_id = uuid.uuid4()
    await uow.session.execute(
        sa.insert(pages).values(
            id=page_id,
            escalation_id=esc["id"],
            episode_id=esc["episode_id"],
            patient_id=esc["patient_id"],
            severity=esc["severity"],
            cycle=step.cycle,
            loop=step.loop,
            level=step.level,
            target=target,
            reason_codes=esc["reason_codes"],
            dedup_key=key,
            threshold_event_id=esc["threshold_event_id"],
            status="pending",
            attempts=0,
            created_at=now,
        )
    )
    if target == FALLBACK:
        plan = [(ChannelKind.WEBHOOK.value, 0)]
    else:
        # The level pages the person; the person's own rules choose the channels and delays.
        methods = [m["channel"] for m in await config.contact_methods(uow, target)]
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


async def _count_fallback(uow: UnitOfWork, esc: sa.RowMapping, cause: str) -> None:
    """A metric per fallback page; a log line once per escalation (not once per level)."""
    paging_metrics.METRICS.fallback_paged(esc["severity"], cause)
    earlier = await uow.session.scalar(
        sa.select(pages.c.id)
        .where(pages.c.escalation_id == esc["id"], pages.c.target == FALLBACK)
        .limit(1)
    )
    if earlier is None:
        log.warning(
            "escalation pages the fallback pager: nobody reachable (one page per level)",
            extra={"escalation": str(esc["id"]), "policy": esc["policy_key"], "cause": cause},
        )


async def _every_delivery_gave_up(uow: UnitOfWork, page_id: uuid.UUID) -> bool:
    statuses = (
        await uow.session.scalars(
            sa.select(deliveries.c.status).where(
                deliveries.c.owner_kind == OWNER_KIND,
                deliveries.c.owner_id == page_id,
            )
        )
    ).all()
    return bool(statuses) and all(s in ("failed", "rejected") for s in statuses)


async def _arm_step(uow: UnitOfWork, escalation_id: uuid.UUID, step: Step, due: datetime) -> None:
    await uow.schedule_timer(
        STEP,
        step.timer_key(escalation_id),
        due,
        {
            "escalation_id": str(escalation_id),
            "cycle": step.cycle,
            "loop": step.loop,
            "level": step.level,
        },
    )


async def _stop(
    uow: UnitOfWork, row: sa.RowMapping, *, status: str, resolution: str | None = None
) -> None:
    # The pending step's timer is left to fire and find itself stale (``_expecting``):
    # cancelling it here would lock the escalation, then the timer row, while the poller locks
    # the timer row, then the escalation — a deadlock waiting to happen.
    values: dict[str, Any] = {"status": status, "next_step_key": None, "next_step_at": None}
    if status == "resolved":
        values |= {"resolved_at": uow.clock.now(), "resolution": resolution}
    await _update(uow, row["id"], **values)


async def _expecting(
    uow: UnitOfWork, timer: DueTimer, status: str = "triggered"
) -> sa.RowMapping | None:
    """The escalation, locked, if it still waits for exactly this timer in ``status``; None for
    a stale timer (acknowledged, resolved or moved on since it was armed)."""
    row = await _locked(uow, escalations.c.id == uuid.UUID(timer.payload["escalation_id"]))
    if not row or row[0]["next_step_key"] != timer.key or row[0]["status"] != status:
        return None
    return row[0]


async def escalation(
    uow: UnitOfWork, escalation_id: uuid.UUID, *, lock: bool = False
) -> sa.RowMapping:
    query = sa.select(escalations).where(escalations.c.id == escalation_id)
    rows = await _locked(uow, escalations.c.id == escalation_id) if lock else None
    row = rows[0] if rows else (await uow.session.execute(query)).mappings().first()
    if row is None:
        raise NotFound("no such escalation")
    return row


async def _escalations_of(uow: UnitOfWork, episode_id: uuid.UUID) -> list[sa.RowMapping]:
    return await _locked(uow, escalations.c.episode_id == episode_id)


async def _locked(uow: UnitOfWork, where: sa.ColumnElement[bool]) -> list[sa.RowMapping]:
    """Escalation rows locked for this transaction (PostgreSQL; SQLite has one writer anyway).

    Timers fire concurrently and an acknowledgement can race a step: every change to an
    escalation takes its row lock, so one waits for the other and then sees its outcome. Lock
    order is always the timer row (taken by the poller), then the escalation: nothing here
    touches timer rows of an existing step.
    """
    query = sa.select(escalations).where(where)
    if is_postgres(uow.session.bind):
        query = query.with_for_update()
    return list((await uow.session.execute(query)).mappings())


async def _resolved(uow: UnitOfWork, episode_id: uuid.UUID) -> bool:
    found = await uow.session.scalar(
        sa.select(resolved_episodes.c.episode_id).where(
            resolved_episodes.c.episode_id == episode_id
        )
    )
    return found is not None


async def _update(uow: UnitOfWork, escalation_id: uuid.UUID, **values: Any) -> None:
    await uow.session.execute(
        sa.update(escalations).where(escalations.c.id == escalation_id).values(**values)
    )
