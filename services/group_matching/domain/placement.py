"""Who may be placed, and when a stage change moves a member. Pure: no I/O.

* The matching stage comes from the taper stage the scheduler's events imply: a held taper or
  one at a maintenance dose is "held" (not reducing: clinical reference §5 "paused"), a completed
  one is post-taper, split at 6 months after completion.
* A patient with an unresolved RED episode is not placed in a new cohort until it is resolved,
  unless a clinician overrode that for them.
* Hysteresis: a member leaves their cohort for one of their new stage group only once the new
  group has held for ``settle_days`` (⚠ 14), and a hold only once it has lasted
  ``held_settle_days`` (⚠ 28: short holds are common and the patient is better off staying with
  their peers). Without it a patient whose stage flickers (a hold lifted after two days, a dose
  just below the final-phase line then a return) would churn between groups.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.group_matching.domain import matching
from services.group_matching.domain.model import (
    ACTIVE,
    COMPLETED,
    CROSSOVER,
    FINAL_PHASE,
    HELD,
    MAINTENANCE,
    PRE_TAPER,
)

POST_TAPER_SPLIT = timedelta(days=182)  # "post-taper under 6 months / 6 months or more" (§5)


@dataclass(frozen=True)
class Hysteresis:
    settle: timedelta = timedelta(days=14)  # ⚠ design choice
    held_settle: timedelta = timedelta(days=28)  # ⚠ design choice


def matching_stage(stage: str, completed_at: datetime | None, now: datetime) -> str:
    """The matcher's stage for a taper stage (``domain.model``)."""
    if stage == COMPLETED:
        if completed_at is not None and now - completed_at >= POST_TAPER_SPLIT:
            return matching.POST_TAPER_LATE
        return matching.POST_TAPER_EARLY
    if stage in (HELD, MAINTENANCE):
        return matching.HELD
    if stage in (PRE_TAPER, CROSSOVER, ACTIVE, FINAL_PHASE):
        return stage
    raise ValueError("unknown taper stage")


def stage_group(stage: str, config: matching.MatchingConfig) -> str:
    return config.stage_groups[stage]


def should_move(
    cohort_group: str,
    current_group: str,
    current_since: datetime | None,
    now: datetime,
    rules: Hysteresis,
) -> bool:
    """Whether a member of a ``cohort_group`` cohort, now in ``current_group`` since
    ``current_since``, should leave it for a cohort of their new group."""
    if cohort_group == current_group:
        return False
    if current_since is None:
        return False  # no reliable date (rows from before stage tracking): do not churn
    settle = rules.held_settle if current_group == matching.HELD else rules.settle
    return now - current_since >= settle


def blocked_by_red(red_open: bool, overridden: bool) -> bool:
    """Whether an open RED episode keeps the patient out of matching: until it is resolved or a
    clinician overrides the hold (the matching run and the placement view both ask this)."""
    return red_open and not overridden


def utc_offset_minutes(timezone: str, at: datetime) -> int:
    """The patient's current offset (daylight saving moves it; the matcher re-reads it per run)."""
    offset = at.astimezone(ZoneInfo(timezone)).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)


def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return "/" in name or name == "UTC"


_ADJECTIVES = (
    "Calm", "Steady", "Brave", "Gentle", "Bright", "Quiet", "Patient", "Kind", "Hopeful", "Warm",
    "Clear", "Sunny", "Willow", "Amber", "Cedar", "Misty", "Golden", "Silver", "Mellow", "True",
)  # fmt: skip
_NOUNS = (
    "Otter", "Heron", "Maple", "River", "Harbor", "Meadow", "Lark", "Fern", "Birch", "Robin",
    "Cove", "Pine", "Wren", "Brook", "Aspen", "Finch", "Juniper", "Sparrow", "Tide", "Vale",
)  # fmt: skip


def new_handle() -> str:
    """A display handle other members see: random, never derived from the patient's identity."""
    number = secrets.randbelow(9000) + 1000
    return f"{secrets.choice(_ADJECTIVES)} {secrets.choice(_NOUNS)} {number}"


def next_sessions(
    weekday: int, utc_minute: int, timezone: str, now: datetime, count: int = 4
) -> list[datetime]:
    """The next weekly sessions (weekday and minute in UTC), in the patient's timezone."""
    start_of_day = now.astimezone(ZoneInfo("UTC")).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    first = start_of_day + timedelta(
        days=(weekday - start_of_day.weekday()) % 7, minutes=utc_minute
    )
    if first <= now:
        first += timedelta(days=7)
    zone = ZoneInfo(timezone)
    return [(first + timedelta(days=7 * k)).astimezone(zone) for k in range(count)]


# Languages cohorts can run in (⚠ the programme's moderators decide; ISO 639-1 primary tags).
LANGUAGES = frozenset({"en", "es", "fr", "de", "pt", "it", "nl", "pl", "sv", "da", "nb", "fi"})
