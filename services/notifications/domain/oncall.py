"""Who is on call: a repeating rotation plus one-off overrides. Pure: no I/O.

Participants and override clinicians are opaque subjects (never names); validation messages name
the offending field only. All datetimes are stored and compared as aware UTC instants (aware
datetimes sharing a ``tzinfo`` compare by wall time, which is wrong across a DST fold).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.notifications.domain.calendar import as_utc, load_zone, resolve_wall

MAX_SPANS = 1000
_DAY = timedelta(days=1)
_ZERO = timedelta(0)


def _wall(at: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall time of instant ``at`` in ``zone``."""
    return at.astimezone(zone).replace(tzinfo=None)


@dataclass(frozen=True)
class Rotation:
    """``participants`` take turns, ``shift`` each, from ``starts_at`` (participants[0] first).

    Whole-day shifts hand off at the same LOCAL wall-clock time in ``timezone`` across DST (a
    "daily 08:00" rotation stays at 08:00, so the shift spanning a transition is 23 h or 25 h);
    handoff k is at the wall time ``starts_at`` (local) + k * shift, resolved like the calendar
    does: a nonexistent wall time → the transition instant just after the gap, an ambiguous
    one → its first occurrence. Any other length is absolute elapsed time.
    """

    participants: tuple[str, ...]  # opaque clinician subjects, in turn order
    starts_at: datetime  # aware; the first handoff (stored as UTC)
    shift: timedelta
    timezone: str  # IANA

    def __post_init__(self) -> None:
        if isinstance(self.participants, str):
            raise ValueError("participants must be a sequence of subjects")
        participants = tuple(self.participants)
        if not participants:
            raise ValueError("participants must not be empty")
        if not all(isinstance(p, str) and p for p in participants):
            raise ValueError("participants must be non-empty strings")
        object.__setattr__(self, "participants", participants)
        object.__setattr__(self, "starts_at", as_utc(self.starts_at, "starts_at"))
        if not isinstance(self.shift, timedelta) or self.shift <= _ZERO:
            raise ValueError("shift must be positive")
        load_zone(self.timezone)

    @property
    def _whole_days(self) -> bool:
        return self.shift % _DAY == _ZERO

    def _handoff(self, k: int) -> datetime:
        """The UTC instant of handoff ``k`` (participants[k % n] is on from here)."""
        if k <= 0:
            return self.starts_at
        if not self._whole_days:
            return self.starts_at + k * self.shift
        zone = load_zone(self.timezone)
        return resolve_wall(zone, _wall(self.starts_at, zone) + k * self.shift)

    def _turn_at(self, at: datetime) -> int | None:
        """The number of the handoff in force at UTC instant ``at`` (None before the start)."""
        if at < self.starts_at:
            return None
        if not self._whole_days:
            return (at - self.starts_at) // self.shift
        zone = load_zone(self.timezone)
        walls = _wall(at, zone) - _wall(self.starts_at, zone)
        k = max(0, walls // self.shift)  # off by at most one around a transition
        while self._handoff(k + 1) <= at:
            k += 1
        while k > 0 and self._handoff(k) > at:
            k -= 1
        return k

    def _next_change(self, at: datetime) -> datetime | None:
        """The first handoff after UTC ``at`` to a different participant (None if there is
        never one, i.e. everyone in the rotation is the same subject)."""
        k = self._turn_at(at)
        if k is None:
            return self.starts_at
        n = len(self.participants)
        current = self.participants[k % n]
        for j in range(k + 1, k + n):
            if self.participants[j % n] != current:
                return self._handoff(j)
        return None

    def on_call_at(self, at: datetime) -> str | None:
        """The participant on call at ``at`` (aware, any tz); None before ``starts_at``."""
        k = self._turn_at(as_utc(at))
        return None if k is None else self.participants[k % len(self.participants)]


@dataclass(frozen=True)
class Override:
    """``clinician`` covers ``[starts_at, ends_at)`` instead of the rotation (stored as UTC)."""

    clinician: str
    starts_at: datetime
    ends_at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.clinician, str) or not self.clinician:
            raise ValueError("clinician must be a non-empty string")
        object.__setattr__(self, "starts_at", as_utc(self.starts_at, "starts_at"))
        object.__setattr__(self, "ends_at", as_utc(self.ends_at, "ends_at"))
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class OnCallSchedule:
    key: str
    rotation: Rotation
    overrides: tuple[Override, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("key must be a non-empty string")
        if not isinstance(self.rotation, Rotation):
            raise ValueError("rotation must be a Rotation")
        overrides = tuple(self.overrides)
        if not all(isinstance(o, Override) for o in overrides):
            raise ValueError("overrides must be Override values")
        object.__setattr__(self, "overrides", overrides)

    def _override_at(self, at: datetime) -> Override | None:
        """The winning override at UTC ``at``: latest start; on a tie, the one listed last."""
        best: Override | None = None
        for o in self.overrides:
            if o.covers(at) and (best is None or o.starts_at >= best.starts_at):
                best = o
        return best

    def on_call_at(self, at: datetime) -> str | None:
        """The override covering ``at`` (the latest-starting one if several overlap) else the
        rotation's participant (None before the rotation starts and outside any override)."""
        t = as_utc(at)
        override = self._override_at(t)
        return override.clinician if override is not None else self.rotation.on_call_at(t)

    def shifts_between(
        self, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime, str]]:
        """Who is on call, as contiguous ``(from, to, clinician)`` UTC spans covering
        ``[start, end)`` (merged when the same clinician continues), overrides applied — for the
        API's "who is on call this week" view. Time when nobody is on call (before the rotation
        starts, outside any override) is left out, so the spans cover ``[start, end)`` exactly
        whenever ``start >= rotation.starts_at``. ValueError beyond 1000 spans.
        """
        t = as_utc(start, "start")
        stop = as_utc(end, "end")
        if stop <= t:
            raise ValueError("end must be after start")
        spans: list[tuple[datetime, datetime, str]] = []
        while t < stop:
            override = self._override_at(t)
            # A later-starting override always wins from its start, whatever covers t now.
            boundaries = [o.starts_at for o in self.overrides if o.starts_at > t]
            who: str | None
            if override is not None:
                who = override.clinician
                boundaries.append(override.ends_at)
            else:
                who = self.rotation.on_call_at(t)
                change = self.rotation._next_change(t)
                if change is not None:
                    boundaries.append(change)
            until = min([stop, *boundaries])
            if until <= t:  # every boundary is after t by construction; never spin
                raise RuntimeError("on-call boundaries must advance")
            if who is not None:
                if spans and spans[-1][1] == t and spans[-1][2] == who:
                    spans[-1] = (spans[-1][0], until, who)
                elif len(spans) >= MAX_SPANS:
                    raise ValueError(f"range holds more than {MAX_SPANS} shifts")
                else:
                    spans.append((t, until, who))
            t = until
        return spans
