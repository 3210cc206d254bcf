"""Peer-support cohorts: the waitlist, matching runs, moves on a stage change. Moderators are
managed in ``moderators``; reads are in ``views``.

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
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contracts import EscalationResolved, ThresholdExceeded
from services.chassis.errors import NotFound
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.group_matching.adapters.repository import (
    CohortRepository,
    ModeratorRepository,
    ParticipantRepository,
    RedEpisodeRepository,
)
from services.group_matching.domain import lifecycle, matching, placement
from services.group_matching.domain.cohort import (
    Cohort,
    LeaveReason,
    MoveReason,
    ParticipantStatus,
)
from services.group_matching.domain.placement import Hysteresis

log = logging.getLogger(__name__)

MATCH = "match"
DEBOUNCE = timedelta(seconds=10)
DAILY_AT = timedelta(hours=3)  # 03:00 UTC: the hysteresis clock ticks once a day
SESSION_WEEKDAY = 2  # ⚠ design choice: new cohorts meet on Wednesdays (UTC)

WAITING, PLACED, LEFT = ParticipantStatus.WAITING, ParticipantStatus.PLACED, ParticipantStatus.LEFT


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
    participants = ParticipantRepository(uow)
    row = await participants.get(patient_id)
    if row is None:
        await participants.add(
            patient_id=patient_id,
            handle=placement.new_handle(),
            timezone=timezone,
            language=language,
            status=WAITING.value,
            waiting_since=now,
            opted_in_at=now,
            updated_at=now,
        )
    elif row["status"] == LEFT:
        await participants.move(
            patient_id,
            LEFT,
            WAITING,
            timezone=timezone,
            language=language,
            waiting_since=now,
            opted_in_at=now,
        )
    else:
        await participants.update(patient_id, timezone=timezone, language=language)
    await request_match(uow)


async def leave(uow: UnitOfWork, patient_id: uuid.UUID) -> None:
    """Opt out: off the waitlist, out of their cohort (``CohortLeft``)."""
    participants = ParticipantRepository(uow)
    row = await participants.get(patient_id)
    if row is None or row["status"] == LEFT:
        raise NotFound("not taking part in peer support")
    now = uow.clock.now()
    if row["cohort_id"] is not None:
        cohorts = CohortRepository(uow)
        cohort = await cohorts.get(row["cohort_id"])
        cohort.release(patient_id, "patient_left", now)
        cohort.announce_departure(patient_id, "patient_left", now)
        await cohorts.save(cohort)
    await participants.move(
        patient_id, ParticipantStatus(row["status"]), LEFT, cohort_id=None, waiting_since=None
    )
    await request_match(uow)  # a seat is free


async def override_red(
    uow: UnitOfWork, patient_id: uuid.UUID, clinician: str, reason_code: str
) -> None:
    participants = ParticipantRepository(uow)
    if await participants.get(patient_id) is None:
        raise NotFound("not taking part in peer support")
    await participants.update(
        patient_id, override_red_by=clinician, override_red_reason=reason_code
    )
    await request_match(uow)


# --- consumers (monitoring) -------------------------------------------------------------------


async def on_threshold_exceeded(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """RED: not placed in a new cohort until the episode is resolved (recorded even before the
    patient opts in: they may join while it is still open)."""
    if event.severity.value != "RED":
        return
    await RedEpisodeRepository(uow).open(event.episode_id, event.patient_id, event.occurred_at)


async def on_escalation_resolved(event: EscalationResolved, uow: UnitOfWork) -> None:
    if await RedEpisodeRepository(uow).resolve(event.episode_id, event.occurred_at):
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
    run = _Run(uow, uow.clock.now())
    rows = await run.participants.taking_part_with_stage()
    run.status = {r["patient_id"]: ParticipantStatus(r["status"]) for r in rows}
    run.active = {c.id: c for c in await run.cohorts.active()}
    moved_out = await run.move_settled_members(rows, config, rules)
    blocked = await RedEpisodeRepository(uow).patients_with_open()
    held_back = frozenset(
        r["patient_id"]
        for r in rows
        if placement.blocked_by_red(r["patient_id"] in blocked, r["override_red_by"] is not None)
    )
    candidates: list[matching.Candidate] = []
    for r in rows:
        waiting = r["status"] == WAITING or r["patient_id"] in moved_out
        if waiting and r["patient_id"] not in held_back:
            candidates.append(_candidate(r, r["waiting_since"] or run.now, run.now))
    live = _live_cohorts(list(run.active.values()), rows, run.now)
    plan = lifecycle.plan_run(live, candidates, config, now=run.now, hold_back=held_back)
    # patient -> (the cohort they left this run, why): CohortChanged if placed, else CohortLeft
    run.left_from = {p: (c, "stage_changed") for p, c in moved_out.items()}
    run.by_id = {c.patient_id: c for c in candidates}
    for cohort in live:
        if cohort.cohort_id in plan.merged:
            await run.merge(cohort, plan.merged[cohort.cohort_id])
        elif cohort.cohort_id in plan.closed:
            await run.close(cohort)
    new = await run.form_cohorts(plan.new_cohorts, config)
    placed = await run.place(plan.placements, new)
    await run.announce_departures(placed)
    log.info(
        "matching run",
        extra={
            "candidates": len(candidates),
            "placed": len(placed),
            "new_cohorts": len(new),
            "merged": len(plan.merged),
            "closed": len(plan.closed),
        },
    )
    return plan


class _Run:
    """One matching run's changes to cohorts and participants."""

    def __init__(self, uow: UnitOfWork, now: datetime) -> None:
        self.now = now
        self.cohorts = CohortRepository(uow)
        self.participants = ParticipantRepository(uow)
        self.active: dict[uuid.UUID, Cohort] = {}
        self.left_from: dict[uuid.UUID, tuple[uuid.UUID, MoveReason]] = {}
        self.by_id: dict[uuid.UUID, matching.Candidate] = {}
        self.inactive: dict[uuid.UUID, Cohort] = {}  # loaded when a member still names one
        self.status: dict[uuid.UUID, ParticipantStatus] = {}  # of everyone taking part

    async def move(self, patient_id: uuid.UUID, after: ParticipantStatus, **values: Any) -> None:
        await self.participants.move(patient_id, self.status[patient_id], after, **values)
        self.status[patient_id] = after

    async def cohort(self, cohort_id: uuid.UUID) -> Cohort:
        found = self.active.get(cohort_id) or self.inactive.get(cohort_id)
        if found is None:
            found = self.inactive[cohort_id] = await self.cohorts.get(cohort_id)
        return found

    async def move_settled_members(
        self, rows: list[sa.RowMapping], config: matching.MatchingConfig, rules: Hysteresis
    ) -> dict[uuid.UUID, uuid.UUID]:
        """Members whose new stage group has settled leave their cohort (patient -> old cohort)."""
        now = self.now
        cohort_groups = await self.cohorts.stage_groups()
        moved: dict[uuid.UUID, uuid.UUID] = {}
        for r in rows:
            if r["status"] != PLACED or r["cohort_id"] is None or r["stage"] is None:
                continue
            group = placement.stage_group(_stage(r, now), config)
            since = _group_since(r, now)
            if placement.should_move(cohort_groups[r["cohort_id"]], group, since, now, rules):
                cohort = await self.cohort(r["cohort_id"])
                cohort.release(r["patient_id"], "stage_changed", now)
                await self.cohorts.save(cohort)
                await self.move(r["patient_id"], WAITING, cohort_id=None, waiting_since=now)
                moved[r["patient_id"]] = r["cohort_id"]
        return moved

    async def merge(self, small: lifecycle.LiveCohort, into_id: uuid.UUID) -> None:
        """The small cohort closes and its members move, together, into ``into``."""
        cohort, into = self.active[small.cohort_id], self.active[into_id]
        cohort.close(self.now)
        for m in small.members:
            into.admit(
                m.patient_id,
                waited_since=m.waiting_since,
                now=self.now,
                came_from=(cohort.id, "cohort_closed"),
            )
            await self.move(m.patient_id, PLACED, cohort_id=into.id, waiting_since=None)
        await self.cohorts.save(cohort)
        await self.cohorts.save(into)

    async def close(self, small: lifecycle.LiveCohort) -> None:
        """The cohort closes; its members wait again with the waiting time they had when placed."""
        cohort = self.active[small.cohort_id]
        cohort.close(self.now)
        await self.cohorts.save(cohort)
        for m in small.members:
            await self.move(m.patient_id, WAITING, cohort_id=None, waiting_since=m.waiting_since)
            self.left_from[m.patient_id] = (cohort.id, "cohort_closed")
            self.by_id[m.patient_id] = m

    async def form_cohorts(
        self, new: tuple[matching.NewCohort, ...], config: matching.MatchingConfig
    ) -> dict[str, Cohort]:
        """Create the new cohorts that get a moderator: the least loaded one for the language."""
        load = await self.cohorts.moderator_load()
        available = await ModeratorRepository(self.cohorts.uow).all()
        formed: dict[str, Cohort] = {}
        for proposed in new:
            fits = [
                m
                for m in available
                if m["active"]
                and proposed.language in m["languages"]
                and load[m["subject"]] < m["max_cohorts"]
            ]
            if not fits:
                log.warning(
                    "new cohort waits for a moderator", extra={"language": proposed.language}
                )
                continue
            moderator = min(fits, key=lambda m: (load[m["subject"]], m["subject"]))["subject"]
            load[moderator] += 1
            cohort = Cohort.form(
                stage_group=proposed.stage_group,
                language=proposed.language,
                drug=proposed.drug,
                on_diazepam=proposed.on_diazepam,
                session_weekday=SESSION_WEEKDAY,
                session_utc_minute=proposed.session_utc_minute,
                capacity=config.max_size,
                moderator=moderator,
                now=self.now,
            )
            await self.cohorts.add(cohort)
            formed[proposed.key] = cohort
        return formed

    async def place(
        self, placements: tuple[matching.Placement, ...], new: dict[str, Cohort]
    ) -> set[uuid.UUID]:
        """Admit each placed candidate; returns who was placed."""
        placed: set[uuid.UUID] = set()
        joined: dict[uuid.UUID, Cohort] = {}
        for p in placements:
            if p.cohort_id is not None:
                cohort = self.active[p.cohort_id]
            elif (p.new_cohort_key or "") in new:
                cohort = new[p.new_cohort_key or ""]
            else:
                continue  # its new cohort found no moderator: still waiting
            candidate = self.by_id[p.patient_id]
            cohort.admit(
                p.patient_id,
                waited_since=candidate.waiting_since,
                now=self.now,
                came_from=self.left_from.get(p.patient_id),
            )
            await self.move(p.patient_id, PLACED, cohort_id=cohort.id, waiting_since=None)
            joined[cohort.id] = cohort
            placed.add(p.patient_id)
        for cohort in joined.values():
            await self.cohorts.save(cohort)
        return placed

    async def announce_departures(self, placed: set[uuid.UUID]) -> None:
        """Whoever left a cohort this run and joined no other: ``CohortLeft``."""
        for patient_id, (from_cohort, reason) in self.left_from.items():
            if patient_id not in placed:
                left: LeaveReason = reason
                (await self.cohort(from_cohort)).announce_departure(patient_id, left, self.now)


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


def _live_cohorts(
    active: list[Cohort], rows: list[sa.RowMapping], now: datetime
) -> list[lifecycle.LiveCohort]:
    """Every active cohort with its current members (each with the waiting time they had)."""
    by_patient = {r["patient_id"]: r for r in rows}
    live = []
    for c in active:
        members = []
        for m in c.members.values():
            row = by_patient.get(m.patient_id)
            if row is None:
                continue  # opted out (their membership ended with it)
            members.append(_candidate(row, m.waited_since or m.joined_at, now))
        open_cohort = matching.OpenCohort(
            cohort_id=c.id,
            stage_group=c.stage_group,
            language=c.language,
            session_utc_minute=c.session_utc_minute,
            drug=c.drug,
            size=0,
            capacity=c.capacity,
            on_diazepam=c.on_diazepam,
        )
        live.append(lifecycle.LiveCohort(cohort=open_cohort, members=tuple(members)))
    return live


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
