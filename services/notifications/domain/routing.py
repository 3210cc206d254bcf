"""Who handles a patient's escalation, and whether a policy can reach anyone. Pure: no I/O.

Care teams (a clinic or panel) route each severity to a policy of their own, as PagerDuty
service routing or Grafana OnCall routes do; a patient outside every team follows the default
team, and with no default team the shipped routes. A policy is *routable* when every schedule it
names exists and every clinician it names has a contact method: anything else pages the
organisation's fallback pager instead of a person, so it is refused when saved (422 naming the
field) and flagged when it is already there (the shipped defaults on a fresh install).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.notifications.domain.escalation import PolicyDefinition, PolicyKey

Severity = Literal["RED", "AMBER"]


class CareTeamDefinition(BaseModel):
    """What an administrator writes for a care team."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [{"routes": {"RED": "red-default", "AMBER": "amber-default"}}]
        },
    )

    routes: dict[Severity, PolicyKey] = Field(
        min_length=1, description="The policy per severity; a severity left out uses the default."
    )
    default: bool = Field(
        default=False, description="Routes patients who belong to no team (at most one team)."
    )


@dataclass(frozen=True)
class Problem:
    """Why a policy cannot page a person: ``loc`` names the field, as a 422 does."""

    loc: tuple[str | int, ...]
    msg: str
    type: str  # missing_schedule | no_contact_method | unknown_policy | unroutable_policy


def problems_of(
    policy: PolicyDefinition, *, schedules: set[str], reachable: set[str]
) -> list[Problem]:
    """Every target the policy names that nobody could be paged through."""
    found: list[Problem] = []
    for i, level in enumerate(policy.levels):
        for j, target in enumerate(level.targets):
            loc: tuple[str | int, ...] = ("levels", i, "targets", j, "ref")
            if target.kind == "schedule" and target.ref not in schedules:
                found.append(Problem(loc, "names an on-call schedule that does not exist",
                                     "missing_schedule"))  # fmt: skip
            elif target.kind == "clinician" and target.ref not in reachable:
                found.append(Problem(loc, "names a clinician without a contact method",
                                     "no_contact_method"))  # fmt: skip
    return found


def route(
    severity: str,
    *,
    team: Mapping[str, str] | None,
    default_team: Mapping[str, str] | None,
    shipped: Mapping[str, str],
) -> str:
    """The policy key for ``severity``: the patient's team, else the default team, else shipped."""
    for routes in (team, default_team):
        if routes is not None and severity in routes:
            return routes[severity]
    return shipped[severity]


# --- personal notification rules --------------------------------------------------------------

Channel = Literal["webhook", "email", "sms"]
MAX_DELAY_MINUTES = 60  # later than this, the escalation's next level is the better page


class NotificationRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel = Field(description="webhook is the push to the clinician's pager app.")
    delay_minutes: int = Field(
        ge=0,
        le=MAX_DELAY_MINUTES,
        description="Minutes after the page before this channel is used.",
    )


class NotificationRules(BaseModel):
    """A clinician's own order of contact methods with delays (push now, SMS after 2 min …)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rules": [
                        {"channel": "webhook", "delay_minutes": 0},
                        {"channel": "sms", "delay_minutes": 2},
                    ]
                }
            ]
        },
    )

    rules: tuple[NotificationRule, ...] = Field(
        min_length=1, max_length=10, description="At most one per channel."
    )

    @field_validator("rules")
    @classmethod
    def _one_rule_per_channel(
        cls, rules: tuple[NotificationRule, ...]
    ) -> tuple[NotificationRule, ...]:
        # Exactly once per channel: a delivery is unique per page and channel anyway; a second
        # rule for the same channel could never fire, so it is refused rather than ignored.
        channels = [r.channel for r in rules]
        if len(set(channels)) != len(channels):
            raise ValueError("each channel at most once")
        return rules


def channel_plan(rules: NotificationRules | None, methods: list[str]) -> list[tuple[str, int]]:
    """(channel, delay in minutes) to page a person on, in order.

    No rules: every contact method at once (as before rules existed). With rules: the rules
    whose channel has a contact method; if none has (a method removed since), every method at
    once, so a person with a contact method is never paged on nothing.
    """
    available = list(dict.fromkeys(methods))
    if rules is not None:
        planned = [(r.channel, r.delay_minutes) for r in rules.rules if r.channel in available]
        if planned:
            return sorted(planned, key=lambda p: p[1])  # stable: the written order on a tie
    return [(c, 0) for c in available]
