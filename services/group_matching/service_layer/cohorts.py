"""Peer-support cohorts: the waitlist, matching runs, moves on a stage change, moderators.

A matching run is a durable timer (``match``), requested (debounced to 10 s) by whatever can
change the answer — a patient joining or leaving, a stage change, a RED episode resolved — and
once a day for the hysteresis clock. One run, one transaction: members whose stage has settled
into another group leave their cohort; every waiting patient who may be placed is matched
(``domain.matching``) into cohorts with room or new ones (a new cohort needs an active moderator
with room for it); a cohort below its minimum is topped up, merged or closed
(``domain.lifecycle``); the outcome is published as ``CohortAssigned``, ``CohortChanged`` or
``CohortLeft``.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contracts import (
    CohortAssigned,
    CohortChanged,
    CohortLeft,
    EscalationResolved,
    ThresholdExceeded,
)
from services.chassis.errors import Conflict, NotFound
from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.group_matching.adapters.orm import (
    cohorts,
    memberships,
    moderators,
    participants,
    patient_stages,
    red_episodes,
)
from services.group_matching.domain import lifecycle, matching, placement
from services.group_matching.domain.placement import Hysteresis

log = logging.getLogger(__name__)

MATCH = "match"
DEBOUNCE = timedelta(seconds=10)
DAILY_AT = timedelta(hours=3)  # 03:00 UTC: the hysteresis clock ticks once a day
SESSION_WEEKDAY = 2  # ⚠ design choice: new cohorts meet on Wednesdays (UTC)


# --- requests ---------------------------------------------------------------------------------


async def request_match(uow: UnitOfWork) -> None:
    """A run within ``DEBOUNCE``: everything that happens in those seconds shares one run."""
    now = uow.clock.now()
    slot = datetime.fromtimestamp(
        (int(now.timestamp() // DEBOUNCE.total_seconds()) + 1) * DEBOUNCE.total_seconds(), UTC
    )
    await uow.schedule_timer(MATCH, f"run:{slot.isoformat()}", slot)


async def join(uow: UnitOfWork, patient_id: uuid.UUID, timezone: str, language: str) -> None:
    """Opt in (or update timezone and language); a patient already placed stays placed."""
    now = uow.clock.now()
    row = await _participant(uow, patient_id)
    if row is None:
        await uow.session.execute(
            sa.insert(participants).values(
                patient_id=patient_id,
                handle=placement.new_handle(),
                timezone=timezone,
                language=language,
                status="waiting",
                waiting_since=now,
                opted_in_at=now,
                updated_at=now,
            )
        )
    else:
        values: dict[str, Any] = {"timezone": timezone, "language": language, "updated_at": now}
        if row["status"] == "left":
            values |= {"status": "waiting", "waiting_since": now, "opted_in_at": now}
        await uow.session.execute(
            sa.update(participants).where(participants.c.patient_id == patient_id).values(**values)
        )
    await request_match(uow)


async def leave(uow: UnitOfWork, patient_id: uuid.UUID) -> None:
    """Opt out: off the waitlist, out of their cohort (``CohortLeft``)."""
    row = await _participant(uow, patient_id)
    if row is None or row["status"] == "left":
        raise NotFound("not taking part in peer support")
    now = uow.clock.now()
    if row["cohort_id"] is not None:
        await _end_membership(uow, patient_id, row["cohort_id"], "patient_left", now)
        await uow.publish(
            CohortLeft.create(
                patient_id=patient_id,
                occurred_at=now,
                cohort_id=row["cohort_id"],
                reason="patient_left",
            )
        )
    await _set(uow, patient_id, status="left", cohort_id=None, waiting_since=None)
    await request_match(uow)  # a seat is free


async def override_red(
    uow: UnitOfWork, patient_id: uuid.UUID, clinician: str, reason_code: str
) -> None:
    if await _participant(uow, patient_id) is None:
        raise NotFound("not taking part in peer support")
    await _set(uow, patient_id, override_red_by=clinician, override_red_reason=reason_code)
    await request_match(uow)


async def set_moderator(
    uow: UnitOfWork, subject: str, languages: list[str], max_cohorts: int, by: str
) -> None:
    """Register or update a moderator (``max_cohorts`` 0: paused, keeps their cohorts, takes no
    new one); whether they are active is changed only by ``set_moderator_active``."""
    now = uow.clock.now()
    values = {
        "languages": languages,
        "max_cohorts": max_cohorts,
        "updated_by": by,
        "updated_at": now,
    }
    exists = await uow.session.scalar(
        sa.select(moderators.c.subject).where(moderators.c.subject == subject)
    )
    if exists is None:
        await uow.session.execute(sa.insert(moderators).values(subject=subject, **values))
    else:
        await uow.session.execute(
            sa.update(moderators).where(moderators.c.subject == subject).values(**values)
        )
    await request_match(uow)  # cohorts waiting for a moderator may form now


async def moderators_list(
    uow: UnitOfWork, page: PageParams, *, active: bool | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of moderators by subject, each with how many active cohorts they run:
    configuration, no patient data."""
    load = await _moderator_load(uow)
    query = sa.select(moderators)
    if active is not None:
        query = query.where(moderators.c.active == active)
    rows, following = await fetch_page(
        uow.session, query, (moderators.c.subject,), page, ascending=True
    )
    found = [
        {
            "subject": m["subject"],
            "languages": list(m["languages"]),
            "max_cohorts": m["max_cohorts"],
            "active": m["active"],
            "active_cohorts": load[m["subject"]],
            "updated_by": m["updated_by"],
            "updated_at": m["updated_at"],
        }
        for m in rows
    ]
    return found, following


async def set_moderator_active(uow: UnitOfWork, subject: str, active: bool, by: str) -> None:
    """A deactivated moderator keeps the cohorts they run and is given no new one."""
    result = await uow.session.execute(
        sa.update(moderators)
        .where(moderators.c.subject == subject)
        .values(active=active, updated_by=by, updated_at=uow.clock.now())
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("no such moderator")
    if active:
        await request_match(uow)  # cohorts waiting for a moderator may form now


async def remove_moderator(uow: UnitOfWork, subject: str) -> int:
    """Remove a moderator; their active cohorts are handed to the least loaded active moderator
    who speaks the cohort's language and has room. If one cannot be handed over, nothing
    changes (``Conflict``): the cohort's members must not lose their group's moderator.
    Returns how many cohorts were handed over."""
    found = await uow.session.scalar(
        sa.select(moderators.c.subject).where(moderators.c.subject == subject)
    )
    if found is None:
        raise NotFound("no such moderator")
    load = await _moderator_load(uow)
    others = list(
        (
            await uow.session.execute(
                sa.select(moderators)
                .where(moderators.c.subject != subject, moderators.c.active.is_(True))
                .order_by(moderators.c.subject)
            )
        ).mappings()
    )
    theirs = (
        await uow.session.execute(
            sa.select(cohorts.c.id, cohorts.c.language)
            .where(cohorts.c.moderator == subject, cohorts.c.status == "active")
            .order_by(cohorts.c.created_at, cohorts.c.id)
        )
    ).all()
    handover: list[tuple[uuid.UUID, str]] = []
    for cohort_id, language in theirs:
        fits = [
            m
            for m in others
            if language in m["languages"] and load[m["subject"]] < m["max_cohorts"]
        ]
        if not fits:
            raise Conflict(
                f"{len(theirs) - len(handover)} of the moderator's active cohorts have no other "
                "active moderator with room for their language: add or free one first"
            )
        to = min(fits, key=lambda m: (load[m["subject"]], m["subject"]))["subject"]
        load[to] += 1
        handover.append((cohort_id, to))
    for cohort_id, to in handover:
        await uow.session.execute(
            sa.update(cohorts).where(cohorts.c.id == cohort_id).values(moderator=to)
        )
    await uow.session.execute(sa.delete(moderators).where(moderators.c.subject == subject))
    return len(handover)


async def _moderator_load(uow: UnitOfWork) -> Counter[str]:
    rows = await uow.session.execute(
        sa.select(cohorts.c.moderator, sa.func.count())
        .where(cohorts.c.status == "active")
        .group_by(cohorts.c.moderator)
    )
    return Counter(dict(rows.tuples().all()))


# --- consumers (monitoring) -------------------------------------------------------------------


async def on_threshold_exceeded(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """RED: not placed in a new cohort until the episode is resolved (recorded even before the
    patient opts in: they may join while it is still open)."""
    if event.severity.value != "RED":
        return
    known = await uow.session.scalar(
        sa.select(red_episodes.c.episode_id).where(red_episodes.c.episode_id == event.episode_id)
    )
    if known is None:
        await uow.session.execute(
            sa.insert(red_episodes).values(
                episode_id=event.episode_id,
                patient_id=event.patient_id,
                opened_at=event.occurred_at,
            )
        )


async def on_escalation_resolved(event: EscalationResolved, uow: UnitOfWork) -> None:
    result = await uow.session.execute(
        sa.update(red_episodes)
        .where(red_episodes.c.episode_id == event.episode_id, red_episodes.c.resolved_at.is_(None))
        .values(resolved_at=event.occurred_at)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        await request_match(uow)


# --- the run ----------------------------------------------------------------------------------


async def on_match_due(timer: DueTimer, uow: UnitOfWork) -> None:
    await run_matching(uow)
    now = uow.clock.now()
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) + DAILY_AT
    await uow.schedule_timer(MATCH, f"daily:{tomorrow.date().isoformat()}", tomorrow)


async def run_matching(
    uow: UnitOfWork,
    config: matching.MatchingConfig | None = None,
    rules: Hysteresis | None = None,
) -> lifecycle.RunPlan:
    config = config or matching.matching_v1()
    rules = rules or Hysteresis()
    now = uow.clock.now()
    rows = await _participants_with_stage(uow)
    moved_out = await _move_settled_members(uow, rows, config, rules, now)
    blocked = await _red_blocked(uow)
    held_back = frozenset(
        r["patient_id"]
        for r in rows
        if placement.blocked_by_red(r["patient_id"] in blocked, r["override_red_by"] is not None)
    )
    candidates: list[matching.Candidate] = []
    for r in rows:
        waiting = r["status"] == "waiting" or r["patient_id"] in moved_out
        if waiting and r["patient_id"] not in held_back:
            candidates.append(_candidate(r, r["waiting_since"] or now, now))
    live = await _live_cohorts(uow, rows, now)
    plan = lifecycle.plan_run(live, candidates, config, now=now, hold_back=held_back)
    # patient -> (the cohort they left this run, why): CohortChanged if placed, else CohortLeft
    left_from = {p: (c, "stage_changed") for p, c in moved_out.items()}
    by_id = {c.patient_id: c for c in candidates}
    for cohort in live:
        if cohort.cohort_id in plan.merged:
            await _merge(uow, cohort, plan.merged[cohort.cohort_id], now)
        elif cohort.cohort_id in plan.closed:
            await _close(uow, cohort, now)
            for m in cohort.members:
                left_from[m.patient_id] = (cohort.cohort_id, "cohort_closed")
                by_id[m.patient_id] = m
    new_ids = await _form_cohorts(uow, plan.new_cohorts, config, now)
    groups = {c.cohort_id: c.cohort.stage_group for c in live}
    groups |= {new_ids[n.key]: n.stage_group for n in plan.new_cohorts if n.key in new_ids}
    placed: set[uuid.UUID] = set()
    for p in plan.placements:
        cohort_id = p.cohort_id or new_ids.get(p.new_cohort_key or "")
        if cohort_id is None:
            continue  # its new cohort found no moderator: still waiting
        await _place(uow, by_id[p.patient_id], cohort_id, groups[cohort_id], left_from, now)
        placed.add(p.patient_id)
    for patient_id, (from_cohort, reason) in left_from.items():
        if patient_id not in placed:
            await uow.publish(
                CohortLeft.create(
                    patient_id=patient_id,
                    occurred_at=now,
                    cohort_id=from_cohort,
                    reason=reason,
                )
            )
    log.info(
        "matching run",
        extra={
            "candidates": len(candidates),
            "placed": len(placed),
            "new_cohorts": len(new_ids),
            "merged": len(plan.merged),
            "closed": len(plan.closed),
        },
    )
    return plan


def _candidate(row: sa.RowMapping, waiting_since: datetime, now: datetime) -> matching.Candidate:
    return matching.Candidate(
        patient_id=row["patient_id"],
        stage=_stage(row, now),
        drug=row["drug"] or "unknown",
        on_diazepam=row["stage"] == "crossover" or (row["drug"] == "diazepam"),
        utc_offset_minutes=placement.utc_offset_minutes(row["timezone"], now),
        language=row["language"],
        waiting_since=waiting_since,
    )


async def _live_cohorts(
    uow: UnitOfWork, rows: list[sa.RowMapping], now: datetime
) -> list[lifecycle.LiveCohort]:
    """Every active cohort with its current members (each with the waiting time they had)."""
    by_patient = {r["patient_id"]: r for r in rows}
    found = await uow.session.execute(
        sa.select(
            memberships.c.cohort_id,
            memberships.c.patient_id,
            memberships.c.waited_since,
            memberships.c.joined_at,
        )
        .join(cohorts, cohorts.c.id == memberships.c.cohort_id)
        .where(memberships.c.left_at.is_(None), cohorts.c.status == "active")
    )
    members: dict[uuid.UUID, list[matching.Candidate]] = {}
    for m in found.mappings():
        row = by_patient.get(m["patient_id"])
        if row is None:
            continue  # opted out (their membership ended with it)
        kept = m["waited_since"] or m["joined_at"]
        members.setdefault(m["cohort_id"], []).append(_candidate(row, kept, now))
    active = await uow.session.execute(sa.select(cohorts).where(cohorts.c.status == "active"))
    return [
        lifecycle.LiveCohort(
            cohort=matching.OpenCohort(
                cohort_id=c["id"],
                stage_group=c["stage_group"],
                language=c["language"],
                session_utc_minute=c["session_utc_minute"],
                drug=c["drug"],
                size=0,
                capacity=c["capacity"],
                on_diazepam=c["on_diazepam"],
            ),
            members=tuple(members.get(c["id"], ())),
        )
        for c in active.mappings()
    ]


async def _merge(
    uow: UnitOfWork, cohort: lifecycle.LiveCohort, into: uuid.UUID, now: datetime
) -> None:
    """The small cohort closes and its members move, together, into ``into``."""
    await _set_cohort_status(uow, cohort.cohort_id, "closed")
    stage_group = await uow.session.scalar(
        sa.select(cohorts.c.stage_group).where(cohorts.c.id == into)
    )
    for m in cohort.members:
        await _end_membership(uow, m.patient_id, cohort.cohort_id, "cohort_closed", now)
        await uow.session.execute(
            sa.insert(memberships).values(
                id=uuid.uuid4(),
                cohort_id=into,
                patient_id=m.patient_id,
                joined_at=now,
                waited_since=m.waiting_since,
            )
        )
        await _set(uow, m.patient_id, status="placed", cohort_id=into, waiting_since=None)
        await uow.publish(
            CohortChanged.create(
                patient_id=m.patient_id,
                occurred_at=now,
                from_cohort_id=cohort.cohort_id,
                to_cohort_id=into,
                stage_group=stage_group,
                reason="cohort_closed",
            )
        )


async def _close(uow: UnitOfWork, cohort: lifecycle.LiveCohort, now: datetime) -> None:
    """The cohort closes; its members wait again with the waiting time they had when placed."""
    await _set_cohort_status(uow, cohort.cohort_id, "closed")
    for m in cohort.members:
        await _end_membership(uow, m.patient_id, cohort.cohort_id, "cohort_closed", now)
        await _set(
            uow, m.patient_id, status="waiting", cohort_id=None, waiting_since=m.waiting_since
        )


async def _set_cohort_status(uow: UnitOfWork, cohort_id: uuid.UUID, status: str) -> None:
    await uow.session.execute(
        sa.update(cohorts).where(cohorts.c.id == cohort_id).values(status=status)
    )


async def _move_settled_members(
    uow: UnitOfWork,
    rows: list[sa.RowMapping],
    config: matching.MatchingConfig,
    rules: Hysteresis,
    now: datetime,
) -> dict[uuid.UUID, uuid.UUID]:
    """Members whose new stage group has settled leave their cohort (patient -> old cohort)."""
    cohort_groups = dict(
        (await uow.session.execute(sa.select(cohorts.c.id, cohorts.c.stage_group))).tuples().all()
    )
    moved: dict[uuid.UUID, uuid.UUID] = {}
    for r in rows:
        if r["status"] != "placed" or r["cohort_id"] is None or r["stage"] is None:
            continue
        group = placement.stage_group(_stage(r, now), config)
        since = _group_since(r, now)
        if placement.should_move(cohort_groups[r["cohort_id"]], group, since, now, rules):
            await _end_membership(uow, r["patient_id"], r["cohort_id"], "stage_changed", now)
            await _set(uow, r["patient_id"], status="waiting", cohort_id=None, waiting_since=now)
            moved[r["patient_id"]] = r["cohort_id"]
    return moved


def _stage(row: sa.RowMapping, now: datetime) -> str:
    if row["stage"] is None:
        return matching.PRE_TAPER  # opted in before the first step of a taper
    return placement.matching_stage(row["stage"], row["completed_at"], now)


def _group_since(row: sa.RowMapping, now: datetime) -> datetime | None:
    """When the patient entered their current group: the stage's start, or for post-taper late
    the 6-month mark after completion."""
    if row["stage"] == "completed" and row["completed_at"] is not None:
        late = row["completed_at"] + placement.POST_TAPER_SPLIT
        return late if now >= late else row["completed_at"]
    since: datetime | None = row["stage_since"]
    return since


async def _place(
    uow: UnitOfWork,
    candidate: matching.Candidate,
    cohort_id: uuid.UUID,
    stage_group: str,
    left_from: dict[uuid.UUID, tuple[uuid.UUID, str]],
    now: datetime,
) -> None:
    patient_id = candidate.patient_id
    await uow.session.execute(
        sa.insert(memberships).values(
            id=uuid.uuid4(),
            cohort_id=cohort_id,
            patient_id=patient_id,
            joined_at=now,
            waited_since=candidate.waiting_since,
        )
    )
    await _set(uow, patient_id, status="placed", cohort_id=cohort_id, waiting_since=None)
    language = candidate.language
    if patient_id in left_from:
        from_cohort, reason = left_from[patient_id]
        event: CohortAssigned | CohortChanged = CohortChanged.create(
            patient_id=patient_id,
            occurred_at=now,
            from_cohort_id=from_cohort,
            to_cohort_id=cohort_id,
            stage_group=stage_group,
            reason=reason,
        )
    else:
        event = CohortAssigned.create(
            patient_id=patient_id,
            occurred_at=now,
            cohort_id=cohort_id,
            stage_group=stage_group,
            language=language,
        )
    await uow.publish(event)


async def _form_cohorts(
    uow: UnitOfWork,
    new: tuple[matching.NewCohort, ...],
    config: matching.MatchingConfig,
    now: datetime,
) -> dict[str, uuid.UUID]:
    """Create the new cohorts that get a moderator: the least loaded one for the language."""
    load = await _moderator_load(uow)
    available = list(
        (await uow.session.execute(sa.select(moderators).order_by(moderators.c.subject))).mappings()
    )
    formed: dict[str, uuid.UUID] = {}
    for cohort in new:
        fits = [
            m
            for m in available
            if m["active"]
            and cohort.language in m["languages"]
            and load[m["subject"]] < m["max_cohorts"]
        ]
        if not fits:
            log.warning("new cohort waits for a moderator", extra={"language": cohort.language})
            continue
        moderator = min(fits, key=lambda m: (load[m["subject"]], m["subject"]))["subject"]
        load[moderator] += 1
        cohort_id = uuid.uuid4()
        await uow.session.execute(
            sa.insert(cohorts).values(
                id=cohort_id,
                stage_group=cohort.stage_group,
                language=cohort.language,
                drug=cohort.drug,
                on_diazepam=cohort.on_diazepam,
                session_weekday=SESSION_WEEKDAY,
                session_utc_minute=cohort.session_utc_minute,
                capacity=config.max_size,
                moderator=moderator,
                status="active",
                created_at=now,
            )
        )
        formed[cohort.key] = cohort_id
    return formed


async def _participants_with_stage(uow: UnitOfWork) -> list[sa.RowMapping]:
    rows = await uow.session.execute(
        sa.select(
            participants,
            patient_stages.c.stage,
            patient_stages.c.drug,
            patient_stages.c.stage_since,
            patient_stages.c.completed_at,
        )
        .outerjoin(patient_stages, patient_stages.c.patient_id == participants.c.patient_id)
        .where(participants.c.status != "left")
        .order_by(participants.c.patient_id)
    )
    return list(rows.mappings())


async def _red_blocked(uow: UnitOfWork) -> set[uuid.UUID]:
    rows = await uow.session.scalars(
        sa.select(red_episodes.c.patient_id).where(red_episodes.c.resolved_at.is_(None)).distinct()
    )
    return set(rows.all())


async def _end_membership(
    uow: UnitOfWork, patient_id: uuid.UUID, cohort_id: uuid.UUID, reason: str, now: datetime
) -> None:
    await uow.session.execute(
        sa.update(memberships)
        .where(
            memberships.c.patient_id == patient_id,
            memberships.c.cohort_id == cohort_id,
            memberships.c.left_at.is_(None),
        )
        .values(left_at=now, left_reason=reason)
    )


async def _participant(uow: UnitOfWork, patient_id: uuid.UUID) -> sa.RowMapping | None:
    result = await uow.session.execute(
        sa.select(participants).where(participants.c.patient_id == patient_id)
    )
    return result.mappings().first()


async def _set(uow: UnitOfWork, patient_id: uuid.UUID, **values: Any) -> None:
    values["updated_at"] = uow.clock.now()
    await uow.session.execute(
        sa.update(participants).where(participants.c.patient_id == patient_id).values(**values)
    )


# --- reads ------------------------------------------------------------------------------------


async def my_cohort(uow: UnitOfWork, patient_id: uuid.UUID) -> dict[str, Any]:
    """The patient's cohort as they see it: handles only, sessions in their timezone."""
    me = await _participant(uow, patient_id)
    if me is None or me["status"] == "left":
        raise NotFound("not taking part in peer support")
    if me["cohort_id"] is None:
        return {"status": "waiting", "waiting_since": me["waiting_since"], "handle": me["handle"]}
    cohort = (
        (await uow.session.execute(sa.select(cohorts).where(cohorts.c.id == me["cohort_id"])))
        .mappings()
        .one()
    )
    handles = await _member_handles(uow, me["cohort_id"])
    return {
        "status": "placed",
        "handle": me["handle"],
        "cohort_id": cohort["id"],
        "stage_group": cohort["stage_group"],
        "language": cohort["language"],
        "members": sorted(handles.values()),
        "next_sessions": placement.next_sessions(
            cohort["session_weekday"], cohort["session_utc_minute"], me["timezone"], uow.clock.now()
        ),
    }


async def placement_of(uow: UnitOfWork, patient_id: uuid.UUID) -> dict[str, Any]:
    """The patient's placement as their clinician needs it: waiting (since when, and whether an
    open RED episode holds them back) or placed (their cohort's size and next session). Nothing
    about any other patient: a count, never a handle or an id."""
    me = await _participant(uow, patient_id)
    if me is None or me["status"] == "left":
        return {"status": "not_taking_part"}
    red_open = await uow.session.scalar(
        sa.select(sa.func.count())
        .select_from(red_episodes)
        .where(red_episodes.c.patient_id == patient_id, red_episodes.c.resolved_at.is_(None))
    )
    out: dict[str, Any] = {
        "status": me["status"],
        "waiting_since": me["waiting_since"],
        "held_back_by_open_red": placement.blocked_by_red(
            bool(red_open), me["override_red_by"] is not None
        ),
        "red_override": me["override_red_by"] is not None,
        "cohort_size": None,
        "next_session": None,
    }
    if me["cohort_id"] is not None:
        cohort = (
            (await uow.session.execute(sa.select(cohorts).where(cohorts.c.id == me["cohort_id"])))
            .mappings()
            .one()
        )
        out["cohort_size"] = len(await _member_handles(uow, me["cohort_id"]))
        out["next_session"] = placement.next_sessions(
            cohort["session_weekday"],
            cohort["session_utc_minute"],
            me["timezone"],
            uow.clock.now(),
            count=1,
        )[0]
    return out


async def roster(
    uow: UnitOfWork,
    moderator: str,
    page: PageParams,
    *,
    status: str = "active",
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a moderator's cohorts (newest first; active ones unless asked, formed in
    [since, until)) and their current members (opaque patient ids and handles: the moderator
    reaches clinical details only through their panel in the other services)."""
    c_ = cohorts.c
    query = sa.select(cohorts).where(c_.moderator == moderator)
    if status != "all":
        query = query.where(c_.status == status)
    query = within(query, c_.created_at, since, until)
    rows, following = await fetch_page(uow.session, query, (c_.created_at, c_.id), page)
    now = uow.clock.now()
    out = []
    for c in rows:
        members = await _members(uow, c["id"])
        out.append(
            {
                "cohort_id": c["id"],
                "stage_group": c["stage_group"],
                "language": c["language"],
                "session_weekday": c["session_weekday"],
                "session_utc_minute": c["session_utc_minute"],
                "next_session": placement.next_sessions(
                    c["session_weekday"], c["session_utc_minute"], "UTC", now, count=1
                )[0],
                "size": len(members),
                "capacity": c["capacity"],
                # Facts of membership only: who (opaque id, handle) and since when. No
                # attendance, no stage or dose of a member, no timezone (issue 17).
                "members": [
                    {"patient_id": p, "handle": h, "member_since": joined}
                    for p, h, joined in sorted(members, key=lambda m: m[1])
                ],
            }
        )
    return out, following


async def _members(uow: UnitOfWork, cohort_id: uuid.UUID) -> list[tuple[uuid.UUID, str, datetime]]:
    rows = await uow.session.execute(
        sa.select(participants.c.patient_id, participants.c.handle, memberships.c.joined_at)
        .join(memberships, memberships.c.patient_id == participants.c.patient_id)
        .where(memberships.c.cohort_id == cohort_id, memberships.c.left_at.is_(None))
    )
    return [(p, h, j) for p, h, j in rows.tuples().all()]


async def _member_handles(uow: UnitOfWork, cohort_id: uuid.UUID) -> dict[uuid.UUID, str]:
    rows = await uow.session.execute(
        sa.select(participants.c.patient_id, participants.c.handle)
        .join(memberships, memberships.c.patient_id == participants.c.patient_id)
        .where(memberships.c.cohort_id == cohort_id, memberships.c.left_at.is_(None))
    )
    return dict(rows.tuples().all())
