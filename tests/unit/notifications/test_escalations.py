"""Escalation policies end to end inside the service (SQLite, the real bootstrap, durable timers
fired by the real poller, a pinned clock; channels are recording fakes — the real SMTP/HTTP
channels are tested in tests/integration/notifications): timeout → next level, loops, exhaustion,
acknowledgement (API and signed link) stops it, re-page after an unresolved acknowledgement,
resolution stops everything, AMBER business hours, RED superseding AMBER, retries and fallback."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from contracts import (
    EscalationResolved,
    Event,
    PageAcknowledged,
    Severity,
    ThresholdExceeded,
    event_class,
)
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from services.notifications.adapters.channels import ChannelKind, RecordingChannel
from services.notifications.service_layer import escalations
from services.notifications.settings import NotificationsSettings
from tests.helpers import red_flag_threshold

# A Tuesday, 14:00 UTC = 09:00 in New York (the AMBER default's business hours open then).
NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
PATIENT = uuid.uuid4()
ADMIN_SCOPES = ["notifications:admin"]
RED_ROTA = ["dr-ada", "dr-bo"]


class Stack:
    def __init__(self, runtime: ServiceRuntime, clock: FrozenClock) -> None:
        self.runtime = runtime
        self.clock = clock
        self.channels: dict[ChannelKind, RecordingChannel] = {}

    @property
    def settings(self) -> NotificationsSettings:
        """``runtime.settings`` as notifications' own (the runtime types it as the chassis')."""
        settings = self.runtime.settings
        assert isinstance(settings, NotificationsSettings)
        return settings

    @property
    def sms(self) -> RecordingChannel:
        return self.channels[ChannelKind.SMS]

    @property
    def webhook(self) -> RecordingChannel:
        return self.channels[ChannelKind.WEBHOOK]

    async def fire(self) -> int:
        return await self.runtime.timers.fire_due()

    async def advance(self, minutes: float) -> None:
        self.clock.advance(timedelta(minutes=minutes))
        await self.fire()

    async def deliver(self, event: Event) -> None:
        handler = {
            "ThresholdExceeded": escalations.on_threshold_exceeded,
            "EscalationResolved": escalations.on_escalation_resolved,
        }[event.event_type]
        async with self.runtime.uow() as uow:
            await handler(event, uow)  # type: ignore[operator]
            await uow.commit()
        await self.fire()

    async def rows(self, table: str, **where: Any) -> list[dict[str, Any]]:
        async with self.runtime.uow() as uow:
            t = uow.table(table) if table in ("timers", "outbox", "audit_log") else None
            if t is None:
                from services.notifications.adapters import orm

                t = getattr(orm, table)
            query = sa.select(t).where(*(t.c[k] == v for k, v in where.items()))
            return [dict(r) for r in (await uow.session.execute(query)).mappings()]

    async def published(self) -> list[Event]:
        rows = await self.rows("outbox")
        return [event_class(r["event_type"]).model_validate_json(r["payload"]) for r in rows]

    def paged(self) -> list[tuple[str, int, int, str]]:
        """(target, loop, level, channel) of every message the fake channels accepted."""
        out = []
        for channel in self.channels.values():
            for m in channel.sent:
                out.append((m.address, m.idempotency_key, channel.kind.value))
        return out  # type: ignore[return-value]


# The ``stack`` and ``client`` fixtures: conftest.py.


def auth(stack: Stack, subject: str, role: Role = Role.CLINICIAN, **claims: Any) -> dict[str, str]:
    token = issue_dev_token(stack.runtime.settings, subject=subject, role=role, **claims)
    return {"Authorization": f"Bearer {token}"}


def threshold(severity: str = "RED", episode: uuid.UUID | None = None) -> ThresholdExceeded:
    return red_flag_threshold(PATIENT, severity=severity, occurred_at=NOW, episode_id=episode)


def resolved(episode: uuid.UUID, resolution: str = "keep_held") -> EscalationResolved:
    return EscalationResolved.create(
        patient_id=PATIENT,
        occurred_at=NOW,
        episode_id=episode,
        family="safety",
        severity=Severity.RED,
        resolution=resolution,
        resolved_by="dr-ada",
    )


async def on_call_setup(client: httpx.AsyncClient, stack: Stack) -> None:
    """Three schedules of the RED default policy, one person each, each reachable by SMS."""
    admin = auth(stack, "ops-1", Role.OPS)
    people = {"clinician-on-call": "dr-ada", "backup-on-call": "dr-bo", "medical-director": "dr-cy"}
    for n, (schedule, who) in enumerate(people.items()):
        r = await client.put(
            f"/api/notifications/schedules/{schedule}",
            json={
                "timezone": "America/New_York",
                "participants": [who],
                "starts_at": "2026-01-01T08:00:00-05:00",
                "shift_hours": 24,
            },
            headers=admin,
        )
        assert r.status_code == 204, r.text
        r = await client.put(
            f"/api/notifications/clinicians/{who}/contact-methods",
            json={"methods": [{"channel": "sms", "address": f"+1555010000{n}"}]},
            headers=admin,
        )
        assert r.status_code == 204, r.text


def sms_to(stack: Stack) -> list[str]:
    return [m.address for m in stack.sms.sent]


PHONE = {"dr-ada": "+15550100000", "dr-bo": "+15550100001", "dr-cy": "+15550100002"}


async def test_red_with_nothing_configured_pages_the_organisations_pager_at_once(
    stack: Stack,
) -> None:
    event = threshold("RED")
    await stack.deliver(event)
    [page] = stack.webhook.sent
    assert page.address == stack.settings.page_routing_key
    assert page.severity == "RED"
    assert page.details["episode_id"] == str(event.episode_id)
    assert page.details["reasons"] == ["red_flag:seizure"]
    await stack.deliver(event)  # redelivered: nothing new
    assert len(stack.webhook.sent) == 1
    [page_row] = await stack.rows("pages")
    assert page_row["status"] == "delivered" and page_row["target"] == "fallback"


async def test_unacknowledged_red_walks_levels_loops_then_is_exhausted(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    await stack.deliver(threshold("RED"))
    assert sms_to(stack) == [PHONE["dr-ada"]]
    await stack.advance(4.9)
    assert len(stack.sms.sent) == 1  # not before the acknowledgement timeout
    await stack.advance(0.1)
    assert sms_to(stack)[-1] == PHONE["dr-bo"]
    await stack.advance(5)
    assert sms_to(stack)[-1] == PHONE["dr-cy"]
    for _ in range(3 * 3):  # three more loops of three levels
        await stack.advance(5)
    assert sms_to(stack) == [PHONE["dr-ada"], PHONE["dr-bo"], PHONE["dr-cy"]] * 4
    [esc] = await stack.rows("escalations")
    assert esc["status"] == "triggered" and (esc["loop"], esc["level"]) == (3, 3)
    await stack.advance(5)
    [esc] = await stack.rows("escalations")
    assert esc["status"] == "exhausted"
    await stack.advance(60)
    assert len(stack.sms.sent) == 12
    keys = [m.idempotency_key for m in stack.sms.sent]
    assert len(set(keys)) == 12  # every page its own dedup key: one per episode, level and loop


async def test_acknowledgement_stops_escalation_and_an_unresolved_one_is_paged_again(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    event = threshold("RED")
    await stack.deliver(event)
    [esc] = await stack.rows("escalations")
    r = await client.post(
        f"/api/notifications/escalations/{esc['id']}/acknowledge",
        headers=auth(stack, "dr-ada", panel=[PATIENT]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged"
    assert r.json()["repage_at"] == (NOW + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    again = await client.post(
        f"/api/notifications/escalations/{esc['id']}/acknowledge",
        headers=auth(stack, "dr-ada", panel=[PATIENT]),
    )
    assert again.status_code == 200
    acks = [e for e in await stack.published() if isinstance(e, PageAcknowledged)]
    assert len(acks) == 1 and acks[0].episode_id == event.episode_id
    assert acks[0].acknowledged_by == "dr-ada" and acks[0].channel == "api"

    await stack.advance(29)
    assert sms_to(stack) == [PHONE["dr-ada"]]  # nobody else paged after the acknowledgement
    await stack.advance(1)  # 30 min acknowledged, not resolved: the policy starts again
    assert sms_to(stack) == [PHONE["dr-ada"], PHONE["dr-ada"]]
    [esc] = await stack.rows("escalations")
    assert (esc["status"], esc["cycle"], esc["level"]) == ("triggered", 1, 1)
    await stack.advance(5)
    assert sms_to(stack)[-1] == PHONE["dr-bo"]


async def test_resolution_stops_paging_and_cancels_what_was_not_sent(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    event = threshold("RED")
    stack.sms.fail_next = 1  # the first page is still retrying when the episode is resolved
    await stack.deliver(event)
    assert stack.sms.sent == []
    await stack.deliver(resolved(event.episode_id))
    await stack.advance(120)
    assert stack.sms.sent == []
    [esc] = await stack.rows("escalations")
    assert esc["status"] == "resolved" and esc["resolution"] == "keep_held"
    [d] = await stack.rows("deliveries")
    assert d["status"] == "cancelled" and d["attempts"] == 1


async def test_a_resolution_that_overtakes_its_threshold_event_pages_nobody(stack: Stack) -> None:
    event = threshold("RED")
    await stack.deliver(resolved(event.episode_id))
    await stack.deliver(event)
    assert stack.webhook.sent == [] and await stack.rows("escalations") == []


async def test_amber_waits_for_business_hours_and_red_does_not(stack: Stack) -> None:
    stack.clock.set(datetime(2026, 3, 7, 3, tzinfo=UTC))  # Friday 22:00 in New York
    amber = threshold("AMBER")
    await stack.deliver(amber)
    assert stack.webhook.sent == []
    [esc] = await stack.rows("escalations")
    monday_9am = datetime(2026, 3, 9, 13, tzinfo=UTC)  # 09:00 EDT (DST began on the 8th)
    assert esc["next_step_at"] == monday_9am
    await stack.deliver(threshold("RED"))  # another episode, RED: at once
    assert [m.severity for m in stack.webhook.sent] == ["RED"]
    stack.clock.set(monday_9am)
    await stack.fire()
    assert [m.severity for m in stack.webhook.sent if m.severity == "AMBER"] == ["AMBER"]
    assert stack.webhook.sent[-1].details["episode_id"] == str(amber.episode_id)


async def test_a_rise_to_red_supersedes_the_amber_escalation(stack: Stack) -> None:
    episode = uuid.uuid4()
    await stack.deliver(threshold("AMBER", episode))
    await stack.deliver(threshold("RED", episode))
    await stack.deliver(threshold("AMBER", episode))  # a late AMBER changes nothing
    statuses = {e["severity"]: e["status"] for e in await stack.rows("escalations")}
    assert statuses == {"AMBER": "superseded", "RED": "triggered"}
    assert [m.severity for m in stack.webhook.sent] == ["AMBER", "RED"]


async def test_failed_deliveries_are_retried_with_backoff_and_visible_then_fall_back(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    stack.sms.fail_next = 2
    await stack.deliver(threshold("RED"))
    [esc] = await stack.rows("escalations")
    detail = await client.get(
        f"/api/notifications/escalations/{esc['id']}",
        headers=auth(stack, "dr-ada", panel=[PATIENT]),
    )
    [page] = detail.json()["pages"]
    [d] = page["deliveries"]
    assert (d["channel"], d["status"], d["attempts"]) == ("sms", "pending", 1)
    assert d["last_error"] == "DeliveryFailed: induced failure"
    await stack.advance(10 / 60)  # 10 s backoff
    await stack.advance(20 / 60)  # then 20 s
    assert sms_to(stack) == [PHONE["dr-ada"]]
    [d] = await stack.rows("deliveries")
    assert (d["status"], d["attempts"]) == ("sent", 3)

    # Every channel of the next level refuses: the organisation's pager gets that level.
    stack.sms.reject_next = 1
    await stack.advance(5)
    assert [m.address for m in stack.webhook.sent] == [stack.settings.page_routing_key]
    pages = {(p["level"], p["target"]): p["status"] for p in await stack.rows("pages")}
    assert pages == {
        (1, "dr-ada"): "delivered",
        (2, "dr-bo"): "undeliverable",
        (2, "fallback"): "delivered",
    }


async def test_the_signed_link_acknowledges_for_its_clinician_and_expires(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    await stack.deliver(threshold("RED"))
    [page] = stack.sms.sent
    [(href, _)] = page.links
    path = href.removeprefix(stack.settings.public_base_url)
    assert path.startswith("/api/notifications/ack/")
    confirm = await client.get(path)  # a mail scanner fetching the link acknowledges nothing
    assert confirm.status_code == 200 and "<form method='post'" in confirm.text
    [esc] = await stack.rows("escalations")
    assert esc["status"] == "triggered"
    tampered = await client.post(path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB"))
    assert tampered.status_code == 410
    done = await client.post(path)
    assert done.status_code == 200 and "acknowledged" in done.text
    [esc] = await stack.rows("escalations")
    assert (esc["acknowledged_by"], esc["acknowledged_via"]) == ("dr-ada", "signed_link")
    [ack] = [e for e in await stack.published() if isinstance(e, PageAcknowledged)]
    assert ack.channel == "signed_link"

    stack.clock.advance(timedelta(days=2))  # past the link's lifetime (24 h by default)
    assert (await client.get(path)).status_code == 410


async def test_who_may_see_and_acknowledge_an_escalation(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    await stack.deliver(threshold("RED"))
    [esc] = await stack.rows("escalations")
    url = f"/api/notifications/escalations/{esc['id']}"
    stranger = await client.post(url + "/acknowledge", headers=auth(stack, "dr-zed"))
    assert stranger.status_code == 403
    patient = auth(stack, "p-1", Role.PATIENT, patient_id=PATIENT)
    assert (await client.get(url, headers=patient)).status_code == 403
    # dr-ada was paged for it though the patient is not on her panel: she may acknowledge.
    assert (
        await client.post(url + "/acknowledge", headers=auth(stack, "dr-ada"))
    ).status_code == 200
    audit = {(a["actor"], a["action"], a["outcome"]) for a in await stack.rows("audit_log")}
    assert ("dr-zed", "acknowledge", "denied") in audit
    assert ("dr-ada", "acknowledge", "allowed") in audit
    assert ("dr-ada", "page.acknowledge", "allowed") in audit
    assert ("notifications", "page.sent", "allowed") in audit
    listed = await client.get("/api/notifications/escalations", headers=auth(stack, "dr-ada"))
    assert [e["id"] for e in listed.json()] == [str(esc["id"])]
    assert (
        await client.get("/api/notifications/escalations", headers=auth(stack, "dr-zed"))
    ).json() == []


async def test_policies_are_validated_versioned_and_pinned_by_escalations_under_way(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    admin = auth(stack, "dr-admin", scopes=ADMIN_SCOPES)
    url = "/api/notifications/policies/red-default"
    bad = await client.put(url, json={"levels": [], "loops": 1}, headers=admin)
    assert bad.status_code == 422
    assert ["body", "levels"] == bad.json()["detail"][0]["loc"]
    negative = {
        "levels": [
            {"targets": [{"kind": "clinician", "ref": "dr-ada"}], "ack_timeout_minutes": -5}
        ],
        "loops": 0,
    }
    bad = await client.put(url, json=negative, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "levels", 0, "ack_timeout_minutes"]
    single = {
        "levels": [{"targets": [{"kind": "clinician", "ref": "dr-ada"}], "ack_timeout_minutes": 1}],
        "loops": 0,
    }
    assert (await client.put(url, json=single, headers=auth(stack, "dr-ada"))).status_code == 403

    current = await client.get(url, headers=admin)
    assert current.json()["version"] == 0 and current.json()["used_for"] == ["RED"]
    await stack.deliver(threshold("RED"))  # starts under version 0 (3 levels, 3 loops)

    unroutable = await client.put(url, json=single, headers=admin)  # dr-ada: no contact yet
    assert unroutable.status_code == 422
    [problem] = unroutable.json()["detail"]
    assert problem["loc"] == ["body", "levels", 0, "targets", 0, "ref"]
    assert problem["type"] == "no_contact_method"
    r = await client.put(
        "/api/notifications/clinicians/dr-ada/contact-methods",
        json={"methods": [{"channel": "sms", "address": "+15550100000"}]},
        headers=admin,
    )
    assert r.status_code == 204
    saved = await client.put(url, json=single, headers=admin)
    assert saved.status_code == 201 and saved.json()["version"] == 1
    await stack.deliver(threshold("RED"))  # a new episode: version 1
    versions = sorted(e["policy_version"] for e in await stack.rows("escalations"))
    assert versions == [0, 1]
    await stack.advance(5)  # v0 pages level 2 at 5 min; v1 (one level, no loop) is spent by then
    by_version = {e["policy_version"]: e["status"] for e in await stack.rows("escalations")}
    assert by_version == {0: "triggered", 1: "exhausted"}


async def test_on_call_follows_rotation_and_overrides(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    admin = auth(stack, "ops-1", Role.OPS)
    url = "/api/notifications/schedules/clinician-on-call"
    body = {
        "timezone": "America/New_York",
        "participants": RED_ROTA,
        "starts_at": "2026-03-02T09:00:00-05:00",  # dr-ada from Monday 09:00, dr-bo from Tuesday
        "shift_hours": 24,
    }
    assert (await client.put(url, json=body, headers=admin)).status_code == 204
    bad = await client.put(url, json={**body, "timezone": "Mars/Olympus"}, headers=admin)
    assert bad.status_code == 422
    for who, n in (("dr-ada", 0), ("dr-bo", 1), ("dr-cy", 2)):
        await client.put(
            f"/api/notifications/clinicians/{who}/contact-methods",
            json={"methods": [{"channel": "sms", "address": f"+1555010000{n}"}]},
            headers=admin,
        )
    await stack.deliver(threshold("RED"))  # Tuesday 09:00 New York: dr-bo's day
    assert sms_to(stack) == [PHONE["dr-bo"]]
    r = await client.post(
        url + "/overrides",
        json={
            "clinician": "dr-cy",
            "starts_at": NOW.isoformat(),
            "ends_at": (NOW + timedelta(hours=2)).isoformat(),
        },
        headers=admin,
    )
    assert r.status_code == 201
    await stack.deliver(threshold("RED"))
    assert sms_to(stack)[-1] == PHONE["dr-cy"]
    shown = await client.get(url, params={"from": NOW.isoformat(), "days": 1}, headers=admin)
    assert [s["clinician"] for s in shown.json()["on_call"]] == ["dr-cy", "dr-bo"]
