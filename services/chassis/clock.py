"""The one way services read the time. Domain and handler code never call ``datetime.now()``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ScaledClock:
    """Time that runs ``scale`` times faster than the wall clock from a shared ``anchor``.

    Every process of a local stack gets the same anchor and scale, so they agree on "now" while
    weeks of a taper play out in minutes (demos, load tests, synthetic patients).
    """

    def __init__(self, scale: float, anchor: datetime) -> None:
        if scale <= 0:
            raise ValueError("scale must be positive")
        self._scale = scale
        self._anchor = anchor
        # Wall time of the anchor, read once: monotonic from there on.
        self._anchor_mono = time.monotonic() - (datetime.now(UTC) - anchor).total_seconds()

    @property
    def scale(self) -> float:
        return self._scale

    @property
    def anchor(self) -> datetime:
        """The instant at which scaled time and wall time agreed."""
        return self._anchor

    def now(self) -> datetime:
        elapsed = time.monotonic() - self._anchor_mono
        return self._anchor + timedelta(seconds=elapsed * self._scale)


class FrozenClock:
    """A clock tests set and advance by hand."""

    def __init__(self, at: datetime | None = None, *, scale: float = 1.0) -> None:
        self._now = at or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self.scale = scale  # what ``wall_span`` multiplies by: a scaled clock, frozen

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def wall_span(clock: Clock, wall: timedelta) -> timedelta:
    """A span of real time as ``clock`` counts it.

    For waits bounded by the real world, not by the care plan: a delivery's lease must outlast
    the provider call it guards, a backoff waits for a provider or a database to come back. A
    scaled clock would shrink them with everything else: at 1,440x a 20 s lease is 14 ms, so the
    in-doubt check ran while the SMS it doubted was still being sent, and sent it again.
    """
    return wall * scale_of(clock)


def scale_of(clock: Clock) -> float:
    """How many times faster than the wall clock ``clock`` runs (1.0: real time)."""
    return float(getattr(clock, "scale", 1.0))
