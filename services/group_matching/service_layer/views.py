"""Reads of cohorts: a patient's own cohort, their placement as their clinician sees it, and a
moderator's roster. Nothing here changes anything."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.chassis.errors import NotFound
from services.chassis.pagination import PageParams
from services.chassis.uow import UnitOfWork
from services.group_matching.adapters.repository import (
    CohortRepository,
    ParticipantRepository,
    RedEpisodeRepository,
)
from services.group_matching.domain import placement
from services.group_matching.domain.cohort import ParticipantStatus

LEFT = ParticipantStatus.LEFT


async def my_cohort(uow: UnitOfWork, patient_id: uuid.UUID) -> dict[str, Any]:
    """The patient's cohort as they see it: handles only, sessions in their timezone."""
    me = await ParticipantRepository(uow).get(patient_id)
    if me is None or me["status"] == LEFT:
        raise NotFound("not taking part in peer support")
    if me["cohort_id"] is None:
        return {"status": "waiting", "waiting_since": me["waiting_since"], "handle": me["handle"]}
    cohorts = CohortRepository(uow)
    cohort = await cohorts.row(me["cohort_id"])
    handles = await cohorts.member_handles(me["cohort_id"])
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
    me = await ParticipantRepository(uow).get(patient_id)
    if me is None or me["status"] == LEFT:
        return {"status": "not_taking_part"}
    red_open = await RedEpisodeRepository(uow).has_open(patient_id)
    out: dict[str, Any] = {
        "status": me["status"],
        "waiting_since": me["waiting_since"],
        "held_back_by_open_red": placement.blocked_by_red(
            red_open, me["override_red_by"] is not None
        ),
        "red_override": me["override_red_by"] is not None,
        "cohort_size": None,
        "next_session": None,
    }
    if me["cohort_id"] is not None:
        cohorts = CohortRepository(uow)
        cohort = await cohorts.row(me["cohort_id"])
        out["cohort_size"] = len(await cohorts.member_handles(me["cohort_id"]))
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
    cohorts = CohortRepository(uow)
    rows, following = await cohorts.page_run_by(
        moderator, page, status=status, since=since, until=until
    )
    now = uow.clock.now()
    out = []
    for c in rows:
        members = await cohorts.members(c["id"])
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
