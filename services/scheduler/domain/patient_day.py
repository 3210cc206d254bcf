"""When a dose step takes effect: at the patient's first dose of its date, in their time zone.
Pure (the IANA database is the standard library's ``zoneinfo``).

A step planned for a date is the patient's date, not UTC's: 2026-03-09 for a patient in New York
starts at their first dose that morning (08:00 EDT = 12:00 UTC), not at 00:00 UTC (7 pm the
evening before). Local times are converted with ``zoneinfo``, so a step on the day clocks change
lands on the right instant. A taper with no time zone on record (created before the patient's
day was known) keeps the old rule, 00:00 UTC of the date.

The default time of the first dose is data (``data/patient_day.v1.json``, ⚠ unconfirmed).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


class UnknownTimeZone(ValueError):
    """Not an IANA time zone name (the message never repeats the value)."""

    def __init__(self) -> None:
        super().__init__("must be an IANA time zone name, e.g. America/New_York")


@cache
def _names() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name`` (one of the database's zone names, not a file of it such
    as ``posixrules``); ``UnknownTimeZone`` for anything else."""
    if name not in _names():
        raise UnknownTimeZone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # pragma: no cover - listed above
        raise UnknownTimeZone() from None


@cache
def default_first_dose_time() -> time:
    text = resources.files(__package__).joinpath("data", "patient_day.v1.json").read_text("utf-8")
    return time.fromisoformat(json.loads(text)["default_first_dose_local_time"])


def step_starts_at(day: date, timezone: str | None, first_dose_time: time | None) -> datetime:
    """The UTC instant a step dated ``day`` takes effect for this patient.

    With neither a time zone nor a first-dose time: 00:00 UTC of ``day`` (tapers from before the
    patient's day was recorded). A first-dose time alone is read in UTC; a time zone alone uses
    the default first-dose time.
    """
    if timezone is None and first_dose_time is None:
        return datetime.combine(day, time.min, tzinfo=UTC)
    local = datetime.combine(
        day, first_dose_time or default_first_dose_time(), tzinfo=zone(timezone or "UTC")
    )
    return local.astimezone(UTC)


def patient_today(now: datetime, timezone: str | None) -> date:
    """The patient's date at ``now`` (the UTC date when their time zone is unknown)."""
    return now.astimezone(zone(timezone)).date() if timezone else now.astimezone(UTC).date()
