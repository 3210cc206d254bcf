"""Moderators: who runs cohorts, in which languages, how many; a moderator removed hands their
active cohorts to another (configuration, no patient data)."""

from __future__ import annotations

from typing import Any

from services.chassis.errors import Conflict, NotFound
from services.chassis.pagination import PageParams
from services.chassis.uow import UnitOfWork
from services.group_matching.adapters.repository import CohortRepository, ModeratorRepository
from services.group_matching.domain.cohort import Cohort
from services.group_matching.service_layer.cohorts import request_match


async def set_moderator(
    uow: UnitOfWork, subject: str, languages: list[str], max_cohorts: int, by: str
) -> None:
    """Register or update a moderator (``max_cohorts`` 0: paused, keeps their cohorts, takes no
    new one); whether they are active is changed only by ``set_moderator_active``."""
    values = {
        "languages": languages,
        "max_cohorts": max_cohorts,
        "updated_by": by,
        "updated_at": uow.clock.now(),
    }
    moderators = ModeratorRepository(uow)
    if await moderators.exists(subject):
        await moderators.update(subject, **values)
    else:
        await moderators.add(subject, **values)
    await request_match(uow)  # cohorts waiting for a moderator may form now


async def moderators_list(
    uow: UnitOfWork, page: PageParams, *, active: bool | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of moderators by subject, each with how many active cohorts they run:
    configuration, no patient data."""
    load = await CohortRepository(uow).moderator_load()
    rows, following = await ModeratorRepository(uow).page(page, active=active)
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
    found = await ModeratorRepository(uow).update(
        subject, active=active, updated_by=by, updated_at=uow.clock.now()
    )
    if not found:
        raise NotFound("no such moderator")
    if active:
        await request_match(uow)  # cohorts waiting for a moderator may form now


async def remove_moderator(uow: UnitOfWork, subject: str) -> int:
    """Remove a moderator; their active cohorts are handed to the least loaded active moderator
    who speaks the cohort's language and has room. If one cannot be handed over, nothing
    changes (``Conflict``): the cohort's members must not lose their group's moderator.
    Returns how many cohorts were handed over."""
    moderators = ModeratorRepository(uow)
    if not await moderators.exists(subject):
        raise NotFound("no such moderator")
    cohorts = CohortRepository(uow)
    load = await cohorts.moderator_load()
    others = await moderators.active_others(subject)
    theirs = await cohorts.run_by(subject)
    handover: list[tuple[Cohort, str]] = []
    for cohort in theirs:
        fits = [
            m
            for m in others
            if cohort.language in m["languages"] and load[m["subject"]] < m["max_cohorts"]
        ]
        if not fits:
            raise Conflict(
                f"{len(theirs) - len(handover)} of the moderator's active cohorts have no other "
                "active moderator with room for their language: add or free one first"
            )
        to = min(fits, key=lambda m: (load[m["subject"]], m["subject"]))["subject"]
        load[to] += 1
        handover.append((cohort, to))
    for cohort, to in handover:
        cohort.hand_over(to)
        await cohorts.save(cohort)
    await moderators.remove(subject)
    return len(handover)
