"""Care-team routing, routability, the fresh-install RED walk, and personal notification rules
(issue 17 items 1 and 2): SQLite, the real bootstrap, durable timers fired by the real poller,
a pinned clock, recording channels and an in-memory metric reader."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.chassis.auth import Role
from services.notifications.adapters.channels import ChannelKind
from services.notifications.settings import NotificationsSettings
from tests.helpers import red_flag_threshold
from tests.unit.chassis.test_metrics import _points
from tests.unit.notifications.test_escalations import (
    NOW,
    PATIENT,
    PHONE,
    Stack,
    auth,
    on_call_setup,
    sms_to,
)

N = "/api/notifications"
FALLBACK_LOG = "escalation pages the fallback pager"


def ops(stack: Stack) -> dict[str, str]:
    return auth(stack, "ops-1", Role.OPS)


def one_level(target: dict[str, str], loops: int = 0) -> dict[str, Any]:
    return {"levels": [{"targets": [target], "ack_timeout_minutes": 5}], "loops": loops}


async def reach(client: httpx.AsyncClient, stack: Stack, who: str, **methods: str) -> None:
    body = {"methods": [{"channel": c, "address": a} for c, a in methods.items()]}
    r = await client.put(f"{N}/clinicians/{who}/contact-methods", json=body, headers=ops(stack))
    assert r.status_code == 204, r.text


async def walk_to_the_end(stack: Stack) -> None:
    """Far past every level, loop and re-page of the shipped RED policy (3 x 5 min x 4)."""
    for _ in range(30):
        await stack.advance(5)


# --- item 1: the fresh-install RED walk --------------------------------------------------------


async def test_fresh_install_red_pages_the_fallback_once_per_level_said_once(
    stack: Stack, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    """Before (main 902faa5): 12 fallback pages for one RED episode (3 levels x 4 passes, each
    its own dedup key). After: 3, one per level, one log line, counted by taper.pages.fallback."""
    caplog.set_level(logging.WARNING)
    event = red_flag_threshold(PATIENT, occurred_at=NOW)
    await stack.deliver(event)
    await stack.deliver(event)  # redelivered: nothing new
    await walk_to_the_end(stack)
    sent = stack.webhook.sent
    assert len(sent) == 3
    assert [m.details["level"] for m in sent] == [1, 2, 3]
    settings = stack.runtime.settings
    assert isinstance(settings, NotificationsSettings)
    assert {m.address for m in sent} == {settings.page_routing_key}
    assert len({m.idempotency_key for m in sent}) == 3
    said = [r for r in caplog.records if r.getMessage().startswith(FALLBACK_LOG)]
    assert len(said) == 1
    assert _points(reader, "taper.pages.fallback") == {
        (("cause", "unroutable"), ("severity", "RED")): 3
    }
    [esc] = await stack.rows("escalations")
    assert esc["status"] == "exhausted"  # the walk itself still ran to its end


async def test_shipped_policies_are_flagged_unroutable_until_their_schedules_exist(
    stack: Stack, client: httpx.AsyncClient, reader: InMemoryMetricReader
) -> None:
    r = await client.get(f"{N}/ops/routing", headers=ops(stack))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["unroutable_in_use"] == 2
    red = next(p for p in report["policies"] if p["key"] == "red-default")
    assert red["used_by"] == ["shipped:RED"] and red["routable"] is False
    assert {tuple(p["loc"]) for p in red["problems"]} == {
        ("levels", i, "targets", 0, "ref") for i in range(3)
    }
    assert _points(reader, "taper.policies.unroutable") == {(): 2}
    await on_call_setup(client, stack)  # the three schedules, everyone reachable by SMS
    assert _points(reader, "taper.policies.unroutable") == {(): 0}
    assert (await client.get(f"{N}/ops/routing", headers=ops(stack))).json()[
        "unroutable_in_use"
    ] == 0
    nurse = auth(stack, "dr-ada", panel=[PATIENT])
    assert (await client.get(f"{N}/ops/routing", headers=nurse)).status_code == 403


# --- item 1: refused when saved, naming the field ----------------------------------------------


async def test_a_policy_that_cannot_reach_a_person_is_refused_naming_the_field(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    url = f"{N}/policies/north-red"
    missing = await client.put(
        url, json=one_level({"kind": "schedule", "ref": "nowhere"}), headers=ops(stack)
    )
    assert missing.status_code == 422
    assert missing.json()["detail"] == [
        {
            "loc": ["body", "levels", 0, "targets", 0, "ref"],
            "msg": "names an on-call schedule that does not exist",
            "type": "missing_schedule",
        }
    ]
    silent = await client.put(
        url, json=one_level({"kind": "clinician", "ref": "dr-nor"}), headers=ops(stack)
    )
    assert silent.status_code == 422
    assert silent.json()["detail"][0]["type"] == "no_contact_method"
    await reach(client, stack, "dr-nor", sms="+15550100009")
    ok = await client.put(
        url, json=one_level({"kind": "clinician", "ref": "dr-nor"}), headers=ops(stack)
    )
    assert ok.status_code == 201, ok.text


async def test_a_team_route_must_name_a_routable_policy_and_a_patient_a_real_team(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    team = f"{N}/care-teams/north"
    unknown = await client.put(team, json={"routes": {"RED": "no-such"}}, headers=ops(stack))
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "routes", "RED"]
    assert unknown.json()["detail"][0]["type"] == "unknown_policy"
    shipped = await client.put(team, json={"routes": {"RED": "red-default"}}, headers=ops(stack))
    assert shipped.status_code == 422  # the shipped policy names schedules that do not exist
    assert {d["type"] for d in shipped.json()["detail"]} == {"unroutable_policy"}
    panel = auth(stack, "dr-ada", panel=[PATIENT])
    member = await client.put(
        f"{N}/patients/{PATIENT}/care-team", json={"team": "north"}, headers=panel
    )
    assert member.status_code == 422
    assert member.json()["detail"][0]["loc"] == ["body", "team"]


# --- item 1: routing per care team -------------------------------------------------------------


async def test_a_patients_care_team_chooses_the_policy_and_the_default_team_the_rest(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await reach(client, stack, "dr-nor", sms="+15550100009")
    await reach(client, stack, "dr-main", sms="+15550100008")
    for key, who in (("north-red", "dr-nor"), ("main-red", "dr-main")):
        r = await client.put(
            f"{N}/policies/{key}",
            json=one_level({"kind": "clinician", "ref": who}),
            headers=ops(stack),
        )
        assert r.status_code == 201, r.text
    r = await client.put(
        f"{N}/care-teams/north", json={"routes": {"RED": "north-red"}}, headers=ops(stack)
    )
    assert r.status_code == 200, r.text
    panel = auth(stack, "dr-nor", panel=[PATIENT])
    r = await client.put(f"{N}/patients/{PATIENT}/care-team", json={"team": "north"}, headers=panel)
    assert r.status_code == 200, r.text
    assert (await client.get(f"{N}/patients/{PATIENT}/care-team", headers=panel)).json() == {
        "team": "north"
    }
    stranger = auth(stack, "dr-zed", panel=[uuid.uuid4()])
    refused = await client.put(
        f"{N}/patients/{PATIENT}/care-team", json={"team": "north"}, headers=stranger
    )
    assert refused.status_code == 403

    await stack.deliver(red_flag_threshold(PATIENT, occurred_at=NOW))
    assert sms_to(stack) == ["+15550100009"]  # the team's policy
    other = uuid.uuid4()
    await stack.deliver(red_flag_threshold(other, occurred_at=NOW))
    assert len(stack.webhook.sent) == 1  # no team, no default team: shipped (fallback)

    r = await client.put(
        f"{N}/care-teams/main",
        json={"routes": {"RED": "main-red"}, "default": True},
        headers=ops(stack),
    )
    assert r.status_code == 200, r.text
    await stack.deliver(red_flag_threshold(uuid.uuid4(), occurred_at=NOW))
    assert sms_to(stack)[-1] == "+15550100008"  # the default team's policy
    teams = (await client.get(f"{N}/care-teams", headers=ops(stack))).json()
    assert teams == [
        {"key": "main", "routes": {"RED": "main-red"}, "default": True},
        {"key": "north", "routes": {"RED": "north-red"}, "default": False},
    ]
    routing = (await client.get(f"{N}/ops/routing", headers=ops(stack))).json()
    used = {p["key"]: p["used_by"] for p in routing["policies"]}
    assert used["main-red"] == ["team:main:RED"] and used["red-default"] == []


# --- item 2: personal notification rules -------------------------------------------------------


async def test_the_persons_rules_choose_channels_and_delays_each_channel_exactly_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    await reach(
        client, stack, "dr-ada", webhook="ada-push-key-0001", sms=PHONE["dr-ada"], email="a@x.org"
    )
    rules = {
        "rules": [
            {"channel": "webhook", "delay_minutes": 0},  # the push to her pager app, now
            {"channel": "sms", "delay_minutes": 2},
            {"channel": "email", "delay_minutes": 5},
        ]
    }
    me = auth(stack, "dr-ada")
    r = await client.put(f"{N}/clinicians/dr-ada/notification-rules", json=rules, headers=me)
    assert r.status_code == 200, r.text
    assert (await client.get(f"{N}/clinicians/dr-ada/notification-rules", headers=me)).json() == (
        rules
    )
    event = red_flag_threshold(PATIENT, occurred_at=NOW)
    await stack.deliver(event)
    assert [m.address for m in stack.webhook.sent] == ["ada-push-key-0001"]
    assert stack.sms.sent == []
    await stack.advance(1.9)
    assert stack.sms.sent == []
    await stack.advance(0.1)
    assert sms_to(stack) == [PHONE["dr-ada"]]
    await stack.deliver(event)  # redelivered: nothing new
    await stack.advance(3)  # 5 min: her e-mail, and level 2 pages dr-bo (no rules: at once)
    assert [m.address for m in stack.channels[ChannelKind.EMAIL].sent] == ["a@x.org"]
    assert sms_to(stack) == [PHONE["dr-ada"], PHONE["dr-bo"]]
    ada = [d for d in await stack.rows("deliveries") if d["idempotency_key"].endswith("dr-ada-sms")]
    assert len(ada) == 1  # exactly once per channel


async def test_a_delayed_channel_is_cancelled_once_acknowledged(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    await reach(client, stack, "dr-ada", sms=PHONE["dr-ada"], email="a@x.org")
    rules = {
        "rules": [{"channel": "email", "delay_minutes": 0}, {"channel": "sms", "delay_minutes": 2}]
    }
    me = auth(stack, "dr-ada", panel=[PATIENT])
    r = await client.put(f"{N}/clinicians/dr-ada/notification-rules", json=rules, headers=me)
    assert r.status_code == 200, r.text
    await stack.deliver(red_flag_threshold(PATIENT, occurred_at=NOW))
    assert len(stack.channels[ChannelKind.EMAIL].sent) == 1
    [esc] = await stack.rows("escalations")
    ack = await client.post(f"{N}/escalations/{esc['id']}/acknowledge", headers=me)
    assert ack.status_code == 200
    await stack.advance(3)
    assert stack.sms.sent == []  # the SMS came due after the acknowledgement: not sent
    statuses = {d["channel"]: d["status"] for d in await stack.rows("deliveries")}
    assert statuses == {"email": "sent", "sms": "cancelled"}


async def test_rules_are_refused_naming_the_field(stack: Stack, client: httpx.AsyncClient) -> None:
    await reach(client, stack, "dr-ada", sms=PHONE["dr-ada"])
    me = auth(stack, "dr-ada")
    url = f"{N}/clinicians/dr-ada/notification-rules"
    no_method = {
        "rules": [{"channel": "sms", "delay_minutes": 0}, {"channel": "email", "delay_minutes": 5}]
    }
    r = await client.put(url, json=no_method, headers=me)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "rules", 1, "channel"]
    twice = {
        "rules": [{"channel": "sms", "delay_minutes": 0}, {"channel": "sms", "delay_minutes": 5}]
    }
    r = await client.put(url, json=twice, headers=me)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "rules"]
    late = {"rules": [{"channel": "sms", "delay_minutes": 61}]}
    r = await client.put(url, json=late, headers=me)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "rules", 0, "delay_minutes"]
    other = auth(stack, "dr-bo")
    ok = {"rules": [{"channel": "sms", "delay_minutes": 0}]}
    assert (await client.put(url, json=ok, headers=other)).status_code == 403
    assert (await client.get(url, headers=me)).json() is None  # nothing saved
