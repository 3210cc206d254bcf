"""Live updates (issue 18, part 9): the clinician's and the patient's event streams over the
durable feed, on the real bootstrap (SQLite, recording channels, a pinned clock).

A stream here ends after ``events_stream_max_s`` (short in these tests), so the in-process client
gets its whole body; the gateway test (tests/integration/gateway/test_live_events.py) reads a
stream while it is open."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from contracts import DoseRestored
from contracts.events.scheduler import DrugDose, TaperStage
from services.chassis.auth import Role
from services.chassis.runtime import _DrainingServer
from services.notifications.adapters.orm import event_feed
from services.notifications.service_layer import patient_messages
from tests.helpers import dose_reduced, eventually
from tests.unit.notifications.test_escalations import (
    NOW,
    PATIENT,
    Stack,
    auth,
    on_call_setup,
    resolved,
    threshold,
)

OTHER = uuid.uuid4()
CLINICIAN_EVENTS = "/api/notifications/clinicians/me/events"
SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    """The conftest's ``stack`` with a stream that ends soon (ASGITransport returns whole
    bodies)."""
    return {"events_stream_max_s": 0.3, "events_poll_interval_s": 0.02, "events_heartbeat_s": 0.1}


def parse(body: str) -> list[dict[str, Any]]:
    """The events of an SSE body: each with its id, event and data (comments dropped)."""
    events = []
    for block in body.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = json.loads(value) if name == "data" else value
        if "event" in fields:
            events.append(fields)
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] if "event" in e else e["type"] for e in events]


async def stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    r = await client.get(url, headers={**headers, **SSE}, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-accel-buffering"] == "no"
    return parse(r.text)


async def red_walk(stack: Stack, client: httpx.AsyncClient) -> uuid.UUID:
    """A RED escalation for PATIENT: opened, level 1 paged, level 2 paged, acknowledged."""
    await on_call_setup(client, stack)
    event = threshold("RED")
    await stack.deliver(event)
    await stack.advance(5)
    [row] = await stack.rows("escalations")
    r = await client.post(
        f"/api/notifications/escalations/{row['id']}/acknowledge",
        headers=auth(stack, "dr-bo", panel=[PATIENT]),
    )
    assert r.status_code == 200, r.text
    return event.episode_id


async def test_a_panel_clinician_gets_the_escalations_events_in_order(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    episode = await red_walk(stack, client)
    await stack.deliver(resolved(episode))
    events = await stream(client, CLINICIAN_EVENTS, auth(stack, "dr-zed", panel=[PATIENT]),
                          last_event_id=0)  # fmt: skip
    assert kinds(events) == [
        "feed.ready",
        "escalation.opened",
        "escalation.raised",
        "escalation.raised",
        "escalation.acknowledged",
        "escalation.resolved",
    ]
    ids = [int(e["id"]) for e in events[1:]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e["data"]["data"]["level"] for e in events[1:4]] == [0, 1, 2]
    assert events[4]["data"]["data"]["status"] == "acknowledged"
    assert {e["data"]["patient_id"] for e in events[1:]} == {str(PATIENT)}
    # PHI-minimal: ids, status, severity, position; no reasons, no names, no addresses
    assert set(events[1]["data"]["data"]) == {
        "escalation_id", "episode_id", "status", "severity", "level", "loop", "cycle",
    }  # fmt: skip


async def test_resuming_after_last_event_id_gets_exactly_the_missed_ones(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await red_walk(stack, client)
    me = auth(stack, "dr-zed", panel=[PATIENT])
    first = await stream(client, CLINICIAN_EVENTS, me, last_event_id=0)
    seen = first[-1]["id"]
    assert kinds(first)[-1] == "escalation.acknowledged"
    [row] = await stack.rows("escalations")
    await stack.deliver(resolved(row["episode_id"]))

    by_header = await stream(client, CLINICIAN_EVENTS, {**me, "Last-Event-ID": seen})
    assert kinds(by_header) == ["feed.ready", "escalation.resolved"]
    assert by_header[0]["id"] == seen  # the stream is live after the id it was given
    by_query = await stream(client, CLINICIAN_EVENTS, me, last_event_id=seen)
    assert kinds(by_query) == kinds(by_header)
    # the header wins over the query (EventSource sends the newest id; the URL keeps the first)
    both = await stream(client, CLINICIAN_EVENTS, {**me, "Last-Event-ID": seen}, last_event_id=0)
    assert kinds(both) == kinds(by_header)
    # without an id: only what is new from now on
    fresh = await stream(client, CLINICIAN_EVENTS, me)
    assert kinds(fresh) == ["feed.ready"]
    assert int(fresh[0]["id"]) == int(by_header[-1]["id"])


async def test_the_json_page_is_the_same_events_paged_oldest_first(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await red_walk(stack, client)
    me = auth(stack, "dr-zed", panel=[PATIENT])
    r = await client.get(CLINICIAN_EVENTS, headers=me, params={"limit": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    page = r.json()
    assert kinds(page) == ["escalation.opened", "escalation.raised", "escalation.raised"]
    r = await client.get(
        CLINICIAN_EVENTS, headers=me, params={"cursor": r.headers["x-next-cursor"]}
    )
    assert kinds(r.json()) == ["escalation.acknowledged"] and "x-next-cursor" not in r.headers
    streamed = await stream(client, CLINICIAN_EVENTS, me, last_event_id=0)
    assert [e["data"] for e in streamed[1:]] == page + r.json()
    bad = await client.get(CLINICIAN_EVENTS, headers={**me, "Last-Event-ID": "abc"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]


async def test_another_patients_events_are_never_in_a_stream(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await red_walk(stack, client)  # PATIENT's escalation
    await deliver_dose(stack, dose_reduced(PATIENT))
    await deliver_dose(stack, dose_reduced(OTHER))
    other_clinician = auth(stack, "dr-other", panel=[OTHER])
    assert kinds(await stream(client, CLINICIAN_EVENTS, other_clinician, last_event_id=0)) == [
        "feed.ready"
    ]
    # dr-bo was paged for it without PATIENT on their panel: the escalation is theirs to see
    paged = await stream(client, CLINICIAN_EVENTS, auth(stack, "dr-bo"), last_event_id=0)
    assert "escalation.acknowledged" in kinds(paged)
    admin = auth(stack, "dr-admin", panel=[OTHER], scopes=["notifications:admin"])
    assert "escalation.opened" in kinds(
        await stream(client, CLINICIAN_EVENTS, admin, last_event_id=0)
    )

    own = auth(stack, "p-1", Role.PATIENT, patient_id=PATIENT)
    mine = await stream(client, f"/api/notifications/patients/{PATIENT}/events", own,
                        last_event_id=0)  # fmt: skip
    assert kinds(mine) == ["feed.ready", "dose.changed"]
    assert {e["data"]["patient_id"] for e in mine[1:]} == {str(PATIENT)}
    # a patient never gets another's stream (refused and audited), nor escalations in theirs
    r = await client.get(f"/api/notifications/patients/{OTHER}/events", headers={**own, **SSE})
    assert r.status_code == 403
    denied = await stack.rows("audit_log", resource="event-stream", outcome="denied")
    assert [a["patient_id"] for a in denied] == [OTHER]
    patient_token = auth(stack, "p-1", Role.PATIENT, patient_id=PATIENT)
    r = await client.get(CLINICIAN_EVENTS, headers={**patient_token, **SSE})
    assert r.status_code == 403


async def deliver_dose(stack: Stack, event: Any) -> None:
    async with stack.runtime.uow() as uow:
        await patient_messages.on_patient_event(event, uow)
        await uow.commit()


async def test_a_patient_sees_their_dose_change_and_the_message_sent(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    own = auth(stack, "p-1", Role.PATIENT, patient_id=PATIENT)
    prefs = {"timezone": "UTC", "channels": ["sms"], "phone": "+15551234567",
             "quiet_hours": {"start": "00:00", "end": "00:00"}}  # fmt: skip
    r = await client.put(
        f"/api/notifications/patients/{PATIENT}/notification-preferences", json=prefs, headers=own
    )
    assert r.status_code in (200, 204), r.text
    await deliver_dose(stack, dose_reduced(PATIENT))
    restored = DoseRestored.create(
        patient_id=PATIENT, occurred_at=NOW, plan_id=uuid.uuid4(), step_number=3,
        drug="diazepam", previous_daily_dose_mg=Decimal("7.5"),
        restored_daily_dose_mg=Decimal("10"),
        regimen=[DrugDose(drug="diazepam", daily_dose_mg=Decimal("10"))],
        effective_on=NOW.date(), decision_id=uuid.uuid4(), half_life_class="long",
        taper_stage=TaperStage.HELD,
    )  # fmt: skip
    await deliver_dose(stack, restored)
    await stack.fire()  # the messages' deliveries
    url = f"/api/notifications/patients/{PATIENT}/events"
    events = await stream(client, url, own, last_event_id=0)
    assert kinds(events) == [
        "feed.ready", "dose.changed", "dose.changed", "message.sent", "message.sent",
    ]  # fmt: skip
    assert [e["data"]["data"]["change"] for e in events[1:3]] == ["reduced", "restored"]
    assert events[3]["data"]["data"]["kind"] == "dose_changed"
    assert not any("mg" in json.dumps(e["data"]) for e in events)  # no dose in the feed
    clinician = await stream(client, url, auth(stack, "dr-zed", panel=[PATIENT]), last_event_id=0)
    assert kinds(clinician) == kinds(events)  # the panel's clinician reads it too


class DrainsAfter(asyncio.Event):
    """The runtime's draining event, set once a stream has waited on it ``polls`` times."""

    def __init__(self, polls: int) -> None:
        super().__init__()
        self.polls = polls

    async def wait(self) -> Literal[True]:
        self.polls -= 1
        if self.polls <= 0:
            self.set()
        return await super().wait()


async def test_a_stream_beats_and_ends_on_shutdown(stack: Stack, client: httpx.AsyncClient) -> None:
    stack.runtime.settings.events_stream_max_s = 60  # type: ignore[attr-defined]
    # 10 polls of 0.02 s at least: past the 0.1 s heartbeat, then the server shuts down
    stack.runtime.draining = DrainsAfter(10)
    me = auth(stack, "dr-zed", panel=[PATIENT])
    r = await asyncio.wait_for(client.get(CLINICIAN_EVENTS, headers={**me, **SSE}), timeout=20)
    assert r.text.startswith("retry: 3000") and ": heartbeat" in r.text


async def test_an_expired_or_unknown_id_gets_a_reset_then_the_stream(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await red_walk(stack, client)
    me = auth(stack, "dr-zed", panel=[PATIENT])
    newest = (await stream(client, CLINICIAN_EVENTS, me, last_event_id=0))[-1]["id"]
    unknown = await stream(client, CLINICIAN_EVENTS, me, last_event_id=int(newest) + 100)
    assert kinds(unknown) == ["feed.reset", "feed.ready"]
    assert unknown[0]["data"]["data"] == {"reason": "unknown_id"} and unknown[1]["id"] == newest
    # retention (real hours, whatever the clock) prunes the oldest: a client behind them resets
    stack.clock.advance(timedelta(hours=25))
    await deliver_dose(stack, dose_reduced(PATIENT))
    deleted = await stack.runtime.retention.prune()
    assert deleted["event_feed"] == 4
    behind = await stream(client, CLINICIAN_EVENTS, me, last_event_id=1)
    assert kinds(behind) == ["feed.reset", "feed.ready"]
    assert behind[0]["data"]["data"] == {"reason": "expired"}
    async with stack.runtime.uow() as uow:
        left = (await uow.session.execute(sa.select(event_feed.c.type))).scalars().all()
    assert left == ["dose.changed"]


async def test_the_server_shutting_down_ends_an_open_stream(stack: Stack) -> None:
    """uvicorn waits for open connections before it stops: an open stream would hold a rolling
    restart for ever unless the server's shutdown tells it to end (runtime._DrainingServer)."""
    stack.runtime.settings.events_stream_max_s = 600  # type: ignore[attr-defined]
    config = uvicorn.Config(
        stack.runtime.app, host="127.0.0.1", port=0, log_config=None, lifespan="off"
    )
    server = _DrainingServer(config, stack.runtime.draining)
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: _true(server.started), timeout=10)
    port = server.servers[0].sockets[0].getsockname()[1]
    me = auth(stack, "dr-zed", panel=[PATIENT])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        async with client.stream("GET", CLINICIAN_EVENTS, headers={**me, **SSE}) as r:
            lines = r.aiter_lines()
            assert await asyncio.wait_for(anext(lines), timeout=10) == "retry: 3000"
            server.should_exit = True
            await asyncio.wait_for(serving, timeout=10)  # stopped, the stream ended with it
            rest = [line async for line in lines]
    assert "event: feed.ready" in rest


async def _true(value: bool) -> bool:
    return value
