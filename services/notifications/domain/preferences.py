"""Whether and when: a patient's preferences (channels, quiet hours, opt-outs) and the decision
to send a draft now, after their quiet hours, or not at all. Pure.

Contact details are PHI: never log them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from functools import cache

from services.notifications.domain.calendar import DailyWindow, QuietHours, load_zone, next_allowed
from services.notifications.domain.catalogue import (
    CHANNELS,
    DEFAULT_LANGUAGE,
    LANGUAGES,
    MessageChannel,
    catalogue,
)
from services.notifications.domain.drafts import VERSION, Draft, Kind

ALL = "all"  # opted_out: every kind

# Conservative on purpose (no quoted local parts, no IP literals, no IDN): an address we cannot
# be sure of is refused when it is entered, not bounced when a message is due.
EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
E164 = re.compile(r"\+[1-9][0-9]{1,14}")


class Status(StrEnum):
    SCHEDULED = "scheduled"
    DEFERRED = "deferred"  # waiting for quiet hours to end
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


class SkipReason(StrEnum):
    OPTED_OUT = "opted_out"
    NO_CHANNEL = "no_channel"
    WINDOW_CLOSED = "window_closed"  # a check-in reminder that could only arrive too late
    CANCELLED = "cancelled"  # not wanted any more at send time, for another reason
    # Parked before the patient had a profile, and a newer change of the same kind was too.
    SUPERSEDED = "superseded"


class InvalidPreferences(ValueError):
    """A preference that cannot be stored; ``field`` names it (for a 422 pointing at it)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class QuietDefault:
    window: DailyWindow
    source: str
    configurable: bool


@dataclass(frozen=True)
class Defaults:
    language: str
    include_dose_details: bool
    quiet_hours: QuietDefault


@cache
def defaults(version: str = VERSION) -> Defaults:
    raw = catalogue(version).raw["defaults"]
    quiet = raw["quiet_hours"]
    return Defaults(
        language=raw["language"],
        include_dose_details=bool(raw["include_dose_details"]),
        quiet_hours=QuietDefault(
            DailyWindow(time.fromisoformat(quiet["start"]), time.fromisoformat(quiet["end"])),
            quiet["source"],
            bool(quiet["configurable"]),
        ),
    )


def _default_quiet() -> DailyWindow:
    return defaults().quiet_hours.window


@dataclass(frozen=True)
class Preferences:
    """How and when a patient wants to hear from us. Contact details are PHI: never log them."""

    timezone: str  # IANA
    channels: tuple[MessageChannel, ...]  # in order of preference; may be empty
    email: str | None = None
    phone: str | None = None  # E.164
    language: str = DEFAULT_LANGUAGE
    quiet: DailyWindow = field(default_factory=_default_quiet)
    opted_out: frozenset[str] = frozenset()  # Kind values, or "all"
    include_dose_details: bool = False

    def __post_init__(self) -> None:
        try:
            load_zone(self.timezone)
        except ValueError:
            raise InvalidPreferences("timezone", "unknown IANA timezone") from None
        if self.language not in LANGUAGES:
            raise InvalidPreferences("language", f"supported: {', '.join(sorted(LANGUAGES))}")
        if any(c not in CHANNELS for c in self.channels):
            raise InvalidPreferences("channels", "each channel is sms or email")
        if len(set(self.channels)) != len(self.channels):
            raise InvalidPreferences("channels", "a channel is listed twice")
        if self.email is not None and not EMAIL.fullmatch(self.email):
            raise InvalidPreferences("email", "not an email address we can send to")
        if self.phone is not None and not E164.fullmatch(self.phone):
            raise InvalidPreferences("phone", "not an E.164 number (+ and up to 15 digits)")
        if unknown := set(self.opted_out) - {ALL, *Kind}:
            raise InvalidPreferences("opted_out", f"unknown kinds: {', '.join(sorted(unknown))}")
        for channel in self.channels:
            if self.address_for(channel) is None:
                address = _ADDRESS_FIELD[channel]
                raise InvalidPreferences(address, f"required when channels includes {channel}")

    def address_for(self, channel: str) -> str | None:
        return self.phone if channel == "sms" else self.email if channel == "email" else None

    def reachable(self, channel: str) -> str | None:
        """The address to use on ``channel`` now, if the patient still wants that channel."""
        return self.address_for(channel) if channel in self.channels else None

    def first_reachable(self) -> MessageChannel | None:
        return next((c for c in self.channels if self.address_for(c)), None)

    def opted_out_of(self, kind: Kind | str) -> bool:
        return ALL in self.opted_out or str(kind) in self.opted_out

    @property
    def quiet_hours(self) -> QuietHours:
        return QuietHours(self.timezone, self.quiet)


_ADDRESS_FIELD: dict[str, str] = {"sms": "phone", "email": "email"}


@dataclass(frozen=True)
class Decision:
    status: Status
    send_at: datetime
    channel: MessageChannel | None = None
    skip_reason: SkipReason | None = None


def decide(prefs: Preferences, draft: Draft, now: datetime) -> Decision:
    """Skip (opted out, nowhere to send, too late to be useful) or schedule: now, or when the
    patient's quiet hours end (then ``deferred``)."""
    if prefs.opted_out_of(draft.kind):
        return Decision(Status.SKIPPED, now, skip_reason=SkipReason.OPTED_OUT)
    channel = prefs.first_reachable()
    if channel is None:
        return Decision(Status.SKIPPED, now, skip_reason=SkipReason.NO_CHANNEL)
    send_at = now if draft.urgent else next_allowed(now, prefs.quiet_hours)
    closes = draft.expires_at
    if closes is not None and send_at >= closes:
        return Decision(Status.SKIPPED, send_at, skip_reason=SkipReason.WINDOW_CLOSED)
    status = Status.SCHEDULED if send_at == now else Status.DEFERRED
    return Decision(status, send_at, channel)
