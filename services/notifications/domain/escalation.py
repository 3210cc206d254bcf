"""Escalation policies and how an escalation walks through them. Pure: no I/O.

A policy is an ordered list of levels, notified one at a time until someone acknowledges (all
targets of a level together), each with its acknowledgement timeout; after the last level it
starts again ``loops`` times; an acknowledged escalation that is not resolved within
``repage_unresolved_after_minutes`` is re-triggered from the first level (PagerDuty's service
acknowledgement timeout). The numbers are data (``data/escalation.v1.json``, ⚠ clinical defaults).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from contracts.types import SUBJECT_PATTERN
from services.notifications.domain.calendar import BusinessHours

Ref = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,100}$")]
PolicyKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
# A local wall-clock time. Not JSON Schema's `format: time`, which is RFC 3339's and requires an
# offset: business hours are in the policy's own timezone.
WallClock = Annotated[
    time,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
            "description": "Local wall-clock time, HH:MM or HH:MM:SS, no offset.",
        }
    ),
]
MAX_LOOPS = 20  # Atlassian on-call caps repeats at 20 [S18]
MAX_TIMEOUT_MINUTES = 1440  # Opsgenie's legacy API maximum delay [S18]


class Target(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["schedule", "clinician"] = Field(
        description="schedule (whoever is on call) or clinician (one person)."
    )
    ref: Ref = Field(description="An on-call schedule key, or a clinician's subject (opaque).")

    @model_validator(mode="after")
    def _clinician_is_a_subject(self) -> Target:
        # A clinician named any other way could be paged but never acknowledge: their token's
        # subject always has this form (services.chassis.auth refuses any other).
        if self.kind == "clinician" and not re.fullmatch(SUBJECT_PATTERN, self.ref):
            raise ValueError("a clinician target is a subject: lower-case letters, digits, _.:-")
        return self


class Level(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: tuple[Target, ...] = Field(
        min_length=1, max_length=10, description="Paged together at this level."
    )
    ack_timeout_minutes: int = Field(
        gt=0, le=MAX_TIMEOUT_MINUTES, description="Unacknowledged this long: the next level."
    )


class BusinessHoursSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = Field(description="IANA time zone of the hours.")
    weekdays: tuple[int, ...] = Field(min_length=1, description="0 = Monday … 6 = Sunday")
    opens: WallClock
    closes: WallClock

    def to_domain(self) -> BusinessHours:
        return BusinessHours(self.timezone, frozenset(self.weekdays), self.opens, self.closes)

    @field_validator("weekdays")
    @classmethod
    def _weekdays_in_range(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 0 or d > 6 for d in days):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return days

    def model_post_init(self, _: Any) -> None:
        self.to_domain()  # the calendar's own checks: a known timezone, opens before closes


class PolicyDefinition(BaseModel):
    """What an administrator writes; versioned on every change."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "levels": [
                        {
                            "targets": [{"kind": "schedule", "ref": "clinician-on-call"}],
                            "ack_timeout_minutes": 5,
                        },
                        {
                            "targets": [{"kind": "clinician", "ref": "dr-director"}],
                            "ack_timeout_minutes": 5,
                        },
                    ],
                    "loops": 3,
                    "repage_unresolved_after_minutes": 30,
                    "business_hours": None,
                }
            ]
        },
    )

    levels: tuple[Level, ...] = Field(
        min_length=1, max_length=10, description="Paged one after the other until acknowledged."
    )
    loops: int = Field(ge=0, le=MAX_LOOPS, description="Repeats after the last level.")
    repage_unresolved_after_minutes: int | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_MINUTES,
        description="Acknowledged but unresolved this long: paged again.",
    )
    business_hours: BusinessHoursSpec | None = Field(
        default=None, description="When set, the first page waits for business hours (AMBER)."
    )


@dataclass(frozen=True, order=True)
class Step:
    """A place in the policy: ``cycle`` counts re-triggers, ``loop`` repeats, ``level`` from 1."""

    cycle: int
    loop: int
    level: int

    def timer_key(self, escalation_id: object) -> str:
        return f"{escalation_id}:c{self.cycle}:o{self.loop}:l{self.level}"


def first_step(cycle: int = 0) -> Step:
    return Step(cycle=cycle, loop=0, level=1)


def step_after(policy: PolicyDefinition, step: Step) -> Step | None:
    """The step that follows ``step`` if nobody acknowledges it; None when the policy is spent."""
    if step.level < len(policy.levels):
        return Step(step.cycle, step.loop, step.level + 1)
    if step.loop < policy.loops:
        return Step(step.cycle, step.loop + 1, 1)
    return None


def level_of(policy: PolicyDefinition, step: Step) -> Level:
    return policy.levels[step.level - 1]


def ack_timeout(policy: PolicyDefinition, step: Step) -> timedelta:
    return timedelta(minutes=level_of(policy, step).ack_timeout_minutes)


def first_page_at(policy: PolicyDefinition, severity: str, now: datetime) -> datetime:
    """RED pages at once; AMBER waits for business hours when its policy has them."""
    if severity == "RED" or policy.business_hours is None:
        return now
    return policy.business_hours.to_domain().next_opening(now)


def repage_at(policy: PolicyDefinition, acknowledged_at: datetime) -> datetime | None:
    if policy.repage_unresolved_after_minutes is None:
        return None
    return acknowledged_at + timedelta(minutes=policy.repage_unresolved_after_minutes)


def dedup_key(episode_id: object, severity: str, step: Step, target: str) -> str:
    """One page per episode, severity, policy step and person: the provider's idempotency key."""
    return f"taper-{episode_id}-{severity.lower()}-c{step.cycle}o{step.loop}l{step.level}-{target}"


def fallback_dedup_key(episode_id: object, severity: str, step: Step) -> str:
    """The organisation's fallback pager gets one page per level and episode, not one per loop
    and re-page: it is a shared pager with its own acknowledgement, and a policy that reaches
    nobody (a fresh install) would otherwise send it levels x passes pages for one episode."""
    return f"taper-{episode_id}-{severity.lower()}-l{step.level}-fallback"


@dataclass(frozen=True)
class Defaults:
    version: str
    routes: dict[str, str]
    policies: dict[str, PolicyDefinition]


@cache
def defaults() -> Defaults:
    """The shipped policies (version 0 of each key) and which one each severity uses."""
    raw = json.loads((Path(__file__).parent / "data" / "escalation.v1.json").read_text())
    return parse_defaults(raw)


def parse_defaults(raw: dict[str, Any]) -> Defaults:
    """Check the shipped data: every severity routed, every route to a shipped policy (a page
    must never find no policy), every policy valid."""
    policies = {k: PolicyDefinition.model_validate(v) for k, v in raw["policies"].items()}
    routes = dict(raw["routes"])
    if set(routes) != {"RED", "AMBER"}:
        raise ValueError("routes must name a policy for RED and for AMBER")
    unknown = sorted(set(routes.values()) - set(policies))
    if unknown:
        raise ValueError(f"routes name policies that are not shipped: {unknown}")
    return Defaults(version=raw["version"], routes=routes, policies=policies)
