"""Local wall-clock calendars: quiet hours and business hours. Pure: no I/O.

Every rule here is stated in a person's *local* wall-clock time (an IANA zone), while every
answer is an aware UTC instant. The two disagree around DST transitions, so the answers are
defined on instants, not on wall times:

* a wall time that does not exist (spring-forward gap) resolves to the first instant after the
  gap, i.e. the transition itself;
* a wall time that occurs twice (fall-back fold) resolves to its first occurrence (``fold=0``),
  unless the question is asked during the second occurrence, in which case "the first instant
  at or after ``at``" is the second one.

Aware datetimes that share a ``tzinfo`` compare and subtract by wall time (PEP 495), which is
wrong across a fold, so all arithmetic and comparison below is done on UTC instants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAY = timedelta(days=1)
_DAY_US = 86_400_000_000
_SCAN = timedelta(hours=1)  # tzdata never changes a zone's offset twice within an hour
_TICK = timedelta(microseconds=1)
_BUSINESS_SEARCH = timedelta(days=14)
_QUIET_SEARCH = timedelta(days=7)


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError("unknown timezone") if it cannot be loaded."""
    if not isinstance(name, str) or not name:
        raise ValueError("unknown timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValueError("unknown timezone") from None


def as_utc(at: datetime, field: str = "at") -> datetime:
    """``at`` as an aware UTC datetime; ValueError naming ``field`` if it is naive."""
    if not isinstance(at, datetime):
        raise ValueError(f"{field} must be a datetime")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware")
    return at.astimezone(UTC)


def _wall_time(value: time, field: str) -> time:
    if not isinstance(value, time):
        raise ValueError(f"{field} must be a time")
    if value.tzinfo is not None:
        raise ValueError(f"{field} must be a naive wall-clock time")
    return value


def _micros(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


def next_offset_change(zone: ZoneInfo, after: datetime, limit: datetime) -> datetime | None:
    """The first UTC instant in ``(after, limit]`` whose UTC offset in ``zone`` differs from the
    offset at ``after`` (the instant of the next transition), or None if there is none."""
    base = _offset(zone, after)
    lo = after
    while lo < limit:
        hi = min(lo + _SCAN, limit)
        if _offset(zone, hi) != base:
            while hi - lo > _TICK:  # invariant: offset(lo) == base != offset(hi)
                mid = lo + (hi - lo) // 2
                if _offset(zone, mid) == base:
                    lo = mid
                else:
                    hi = mid
            return hi
        lo = hi
    return None


def resolve_wall(zone: ZoneInfo, wall: datetime) -> datetime:
    """The UTC instant at which the naive wall time ``wall`` first occurs in ``zone``.

    Ambiguous (fold): the first occurrence. Nonexistent (gap): the first existing instant after
    it, which is the transition instant (the wall clock then reads the end of the gap). Either
    way: the earliest instant whose local wall time is >= ``wall``, near ``wall``.
    """
    naive = wall.replace(tzinfo=None)
    candidates = [naive.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1)]
    existing = [c for c in candidates if c.astimezone(zone).replace(tzinfo=None) == naive]
    if existing:
        return min(existing)
    lo, hi = min(candidates), max(candidates)  # the gap's transition lies in (lo, hi]
    transition = next_offset_change(zone, lo, hi)
    return hi if transition is None else transition


@dataclass(frozen=True)
class DailyWindow:
    """A local wall-clock window, e.g. quiet hours 21:00-08:00 (wraps midnight when
    end <= start; start == end means empty). Half-open: ``start`` is inside, ``end`` is not."""

    start: time
    end: time

    def __post_init__(self) -> None:
        _wall_time(self.start, "start")
        _wall_time(self.end, "end")

    @property
    def wraps(self) -> bool:
        return self.end < self.start

    def contains(self, local: time) -> bool:
        t = local.replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True)
class QuietHours:
    timezone: str  # IANA
    window: DailyWindow

    def __post_init__(self) -> None:
        load_zone(self.timezone)
        if not isinstance(self.window, DailyWindow):
            raise ValueError("window must be a DailyWindow")


def quiet_until(at: datetime, quiet: QuietHours) -> datetime | None:
    """None when ``at`` (aware, any tz) is outside quiet hours in ``quiet.timezone``; else the
    aware UTC instant quiet hours end (the first instant at/after ``at`` whose local time is
    outside the window). DST: if the end wall time does not exist that day (spring-forward
    gap), the first existing instant after it; if ambiguous (fall-back fold), the first
    occurrence (fold=0), or the second one when ``at`` is already in the repeated hour.

    Computed exactly on instants: between transitions local time advances with UTC, so quiet
    hours end either when the wall clock reaches ``window.end`` or at a transition that makes
    the clock jump outside the window (even a fall-back that jumps back before ``start``).
    """
    zone = load_zone(quiet.timezone)
    window = quiet.window
    s = as_utc(at)
    if _is_outside(zone, window, s):
        return None
    give_up = s + _QUIET_SEARCH
    end_us = _micros(window.end)
    while s < give_up:
        # Inside, so the wall clock must still reach `end` (outside, 0 < delta < 24 h) ...
        wall = s.astimezone(zone).time()
        reach_end = s + timedelta(microseconds=(end_us - _micros(wall)) % _DAY_US)
        transition = next_offset_change(zone, s, reach_end)
        if transition is None:
            return reach_end
        # ... unless the offset changes first: the clock jumps, maybe out of the window.
        s = transition
        if _is_outside(zone, window, s):
            return s
    raise ValueError("quiet hours do not end within 7 days")  # unreachable for a real zone


def _is_outside(zone: ZoneInfo, window: DailyWindow, instant: datetime) -> bool:
    return not window.contains(instant.astimezone(zone).time())


def next_allowed(at: datetime, quiet: QuietHours) -> datetime:
    """``at`` itself (converted to UTC) when not quiet, else ``quiet_until(at)``."""
    until = quiet_until(at, quiet)
    return as_utc(at) if until is None else until


@dataclass(frozen=True)
class BusinessHours:
    timezone: str  # IANA
    weekdays: frozenset[int]  # 0=Monday … 6=Sunday; non-empty
    opens: time  # local wall time, inclusive
    closes: time  # local wall time, exclusive; closes > opens (no overnight business hours)

    def __post_init__(self) -> None:
        load_zone(self.timezone)
        try:
            days = frozenset(self.weekdays)
        except TypeError:
            raise ValueError("weekdays must be a set of 0..6") from None
        if not days:
            raise ValueError("weekdays must not be empty")
        if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days):
            raise ValueError("weekdays must be a set of 0..6")
        object.__setattr__(self, "weekdays", days)
        _wall_time(self.opens, "opens")
        _wall_time(self.closes, "closes")
        if self.closes <= self.opens:
            raise ValueError("closes must be after opens")

    def _open_local(self, local: datetime) -> bool:
        return local.weekday() in self.weekdays and self.opens <= local.time() < self.closes

    def is_open(self, at: datetime) -> bool:
        return self._open_local(as_utc(at).astimezone(load_zone(self.timezone)))

    def _next_opening_wall(self, local: datetime) -> datetime:
        """The first naive wall datetime > ``local`` at ``opens`` on an opening weekday."""
        day: date = local.date()
        if local.time() >= self.opens or day.weekday() not in self.weekdays:
            day += _DAY
            while day.weekday() not in self.weekdays:
                day += _DAY
        return datetime.combine(day, self.opens)

    def next_opening(self, at: datetime) -> datetime:
        """``at`` (as UTC) if open now, else the aware UTC instant business hours next open
        (searching at most 14 days ahead; DST gap at ``opens`` → first existing instant after).

        Exactly: the first instant at/after ``at`` that is open. A DST jump can open business
        hours by itself (a gap that skips over ``opens``, or, for hours opening in the small
        hours, a fall-back into them); a gap that swallows the whole day skips that day.
        """
        zone = load_zone(self.timezone)
        s = as_utc(at)
        give_up = s + _BUSINESS_SEARCH
        while s <= give_up:
            local = s.astimezone(zone)
            if self._open_local(local):
                return s
            wall = self._next_opening_wall(local.replace(tzinfo=None))
            reach_open = s + (wall - local.replace(tzinfo=None))
            transition = next_offset_change(zone, s, min(reach_open, give_up))
            if transition is None:
                if reach_open > give_up:
                    break
                return reach_open
            s = transition
        raise ValueError("business hours do not open within 14 days")
