"""The pure routing rules (issue 17): which policy, which problems, which channels when."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.notifications.domain.escalation import PolicyDefinition
from services.notifications.domain.routing import (
    NotificationRules,
    channel_plan,
    problems_of,
    route,
)

SHIPPED = {"RED": "red-default", "AMBER": "amber-default"}
CHANNELS = ["webhook", "email", "sms"]


def test_the_team_then_the_default_team_then_the_shipped_routes() -> None:
    assert route("RED", team={"RED": "north"}, default_team={"RED": "main"}, shipped=SHIPPED) == (
        "north"
    )
    assert route(
        "AMBER", team={"RED": "north"}, default_team={"AMBER": "main"}, shipped=SHIPPED
    ) == ("main")
    assert route("AMBER", team={"RED": "north"}, default_team=None, shipped=SHIPPED) == (
        "amber-default"
    )


def test_problems_name_each_unreachable_target() -> None:
    policy = PolicyDefinition.model_validate(
        {
            "levels": [
                {
                    "targets": [
                        {"kind": "schedule", "ref": "on-call"},
                        {"kind": "clinician", "ref": "dr-ada"},
                    ],
                    "ack_timeout_minutes": 5,
                },
                {"targets": [{"kind": "clinician", "ref": "dr-bo"}], "ack_timeout_minutes": 5},
            ],
            "loops": 0,
        }
    )
    found = problems_of(policy, schedules={"on-call"}, reachable={"dr-ada"})
    assert [(p.loc, p.type) for p in found] == [
        (("levels", 1, "targets", 0, "ref"), "no_contact_method")
    ]
    found = problems_of(policy, schedules=set(), reachable={"dr-bo"})
    assert [(p.loc, p.type) for p in found] == [
        (("levels", 0, "targets", 0, "ref"), "missing_schedule"),
        (("levels", 0, "targets", 1, "ref"), "no_contact_method"),
    ]


def test_one_rule_per_channel() -> None:
    with pytest.raises(ValidationError):
        NotificationRules.model_validate(
            {
                "rules": [
                    {"channel": "sms", "delay_minutes": 0},
                    {"channel": "sms", "delay_minutes": 2},
                ]
            }
        )


rules_strategy = st.lists(
    st.tuples(st.sampled_from(CHANNELS), st.integers(0, 60)), max_size=3, unique_by=lambda r: r[0]
)


@given(
    rules=st.one_of(st.none(), rules_strategy.filter(bool)),
    methods=st.lists(st.sampled_from(CHANNELS), max_size=4),
)
def test_each_available_channel_at_most_once_in_delay_order_never_nothing(
    rules: list[tuple[str, int]] | None, methods: list[str]
) -> None:
    parsed = (
        None
        if rules is None
        else NotificationRules.model_validate(
            {"rules": [{"channel": c, "delay_minutes": d} for c, d in rules]}
        )
    )
    plan = channel_plan(parsed, methods)
    channels = [c for c, _ in plan]
    assert len(channels) == len(set(channels))  # exactly once per channel
    assert set(channels) <= set(methods)  # only where there is an address
    assert bool(plan) == bool(methods)  # someone with a contact method is always paged
    assert [d for _, d in plan] == sorted(d for _, d in plan)
    if parsed is not None and any(c in methods for c, _ in rules or []):
        assert dict(plan) == {c: d for c, d in rules or [] if c in methods}
