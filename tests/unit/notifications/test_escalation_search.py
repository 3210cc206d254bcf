"""Finding an escalation (issue 17 item 5): GET /escalations filters (status, patient, time,
mine), newest first, cursor pagination in headers with the body still a list; a patient's
escalations for their panel; delivery health for ops without patient data."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.chassis.auth import Role
from tests.helpers import red_flag_threshold
from tests.unit.notifications.test_escalations import (
    NOW,
    PATIENT,
    Stack,
    auth,
    on_call_setup,
)

N = "/api/notifications"
OTHER = uuid.uuid4()


@pytest.fixture
async def seven(stack: Stack, client: httpx.AsyncClient) -> AsyncIterator[list[uuid.UUID]]:
    """Seven RED episodes 30 s apart: PATIENT's the even ones, OTHER's the odd ones (dr-ada is
    on call: paged for all of them; nobody reaches level 2 within the 3.5 min)."""
    await on_call_setup(client, stack)
    episodes = []
    for i in range(7):
        episode = uuid.uuid4()
        patient = PATIENT if i % 2 == 0 else OTHER
        await stack.deliver(
            red_flag_threshold(patient, occurred_at=stack.clock.now(), episode_id=episode)
        )
        episodes.append(episode)
        stack.clock.advance(timedelta(seconds=30))
    yield episodes


async def walk(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], **params: Any
) -> tuple[list[list[dict[str, Any]]], list[str]]:
    pages: list[list[dict[str, Any]]] = []
    links: list[str] = []
    cursor = None
    while True:
        r = await client.get(
            url, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert r.status_code == 200, r.text
        assert isinstance(r.json(), list)
        pages.append(r.json())
        cursor = r.headers.get("x-next-cursor")
        if cursor is None:
            assert "link" not in r.headers
            return pages, links
        links.append(r.headers["link"])
        assert len(pages) < 20


async def test_newest_first_in_pages_with_the_cursor_in_headers(
    stack: Stack,
    client: httpx.AsyncClient,
    seven: list[uuid.UUID],
) -> None:
    admin = auth(stack, "dr-admin", scopes=["notifications:admin"])
    pages, links = await walk(client, f"{N}/escalations", admin, limit=3, status="all")
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [uuid.UUID(e["episode_id"]) for p in pages for e in p]
    assert seen == list(reversed(seven))  # newest first, nothing twice, nothing missed
    assert links[0].startswith(f"<{N}/escalations?") and links[0].endswith('>; rel="next"')
    assert "limit=3" in links[0] and "status=all" in links[0]
    # A new escalation arriving mid-walk does not shift the pages already handed out.
    r = await client.get(f"{N}/escalations", params={"limit": 3, "status": "all"}, headers=admin)
    cursor = r.headers["x-next-cursor"]
    await stack.deliver(red_flag_threshold(PATIENT, occurred_at=stack.clock.now()))
    r = await client.get(
        f"{N}/escalations", params={"limit": 3, "status": "all", "cursor": cursor}, headers=admin
    )
    assert [uuid.UUID(e["episode_id"]) for e in r.json()] == list(reversed(seven))[3:6]
    default = await client.get(f"{N}/escalations", headers=admin)
    assert len(default.json()) == 8 and "x-next-cursor" not in default.headers  # limit 50


async def test_filters_patient_time_status_and_mine(
    stack: Stack,
    client: httpx.AsyncClient,
    seven: list[uuid.UUID],
) -> None:
    admin = auth(stack, "dr-admin", scopes=["notifications:admin"])
    url = f"{N}/escalations"
    mine = await client.get(url, params={"patient_id": str(PATIENT)}, headers=admin)
    assert [uuid.UUID(e["episode_id"]) for e in mine.json()] == [
        seven[6],
        seven[4],
        seven[2],
        seven[0],
    ]
    window = {
        "since": (NOW + timedelta(minutes=1)).isoformat(),
        "until": (NOW + timedelta(minutes=2)).isoformat(),
    }
    r = await client.get(url, params=window, headers=admin)
    assert [uuid.UUID(e["episode_id"]) for e in r.json()] == [seven[3], seven[2]]
    [first] = [
        e for e in (await client.get(url, headers=admin)).json() if e["episode_id"] == str(seven[0])
    ]
    ack = await client.post(
        f"{N}/escalations/{first['id']}/acknowledge", headers=auth(stack, "dr-ada")
    )
    assert ack.status_code == 200
    r = await client.get(url, params={"status": "acknowledged"}, headers=admin)
    assert [e["id"] for e in r.json()] == [first["id"]]
    # "mine": paged to me or acknowledged by me. dr-ada was paged for all seven; dr-bo for none
    # yet (level 2 not reached), though PATIENT is on his panel.
    ada = await client.get(
        url, params={"mine": "true", "status": "all"}, headers=auth(stack, "dr-ada")
    )
    assert len(ada.json()) == 7
    bo = auth(stack, "dr-bo", panel=[PATIENT])
    assert len((await client.get(url, headers=bo)).json()) == 4  # his panel's open ones
    assert (await client.get(url, params={"mine": "true"}, headers=bo)).json() == []
    for bad in (
        {"limit": 201},
        {"limit": 0},
        {"cursor": "not-a-cursor"},
        {"status": "nope"},
        {"since": "yesterday"},
    ):
        r = await client.get(url, params=bad, headers=admin)
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["loc"][:2] == ["query", next(iter(bad))]


async def test_a_patients_escalations_for_their_panel_only(
    stack: Stack,
    client: httpx.AsyncClient,
    seven: list[uuid.UUID],
) -> None:
    url = f"{N}/patients/{PATIENT}/escalations"
    panel = auth(stack, "dr-bo", panel=[PATIENT])
    pages, _ = await walk(client, url, panel, limit=3)
    assert [uuid.UUID(e["episode_id"]) for p in pages for e in p] == [
        seven[6],
        seven[4],
        seven[2],
        seven[0],
    ]
    assert (await client.get(url, headers=auth(stack, "dr-zed", panel=[OTHER]))).status_code == 403
    patient = auth(stack, "p-1", Role.PATIENT, patient_id=PATIENT)
    assert (await client.get(url, headers=patient)).status_code == 403
    audit = {
        (a["actor"], a["outcome"])
        for a in await stack.rows("audit_log")
        if a["patient_id"] == PATIENT and a["resource"] == "escalation"
    }
    assert {("dr-bo", "allowed"), ("dr-zed", "denied"), ("p-1", "denied")} <= audit


async def test_delivery_health_counts_by_channel_and_outcome_without_patient_data(
    stack: Stack,
    client: httpx.AsyncClient,
    seven: list[uuid.UUID],
) -> None:
    stack.sms.reject_next = 1
    await stack.deliver(red_flag_threshold(PATIENT, occurred_at=stack.clock.now()))
    r = await client.get(f"{N}/ops/delivery-health", headers=auth(stack, "ops-1", Role.OPS))
    assert r.status_code == 200, r.text
    counts = {(c["kind"], c["channel"], c["outcome"]): c["count"] for c in r.json()["counts"]}
    assert counts == {
        ("page", "sms", "sent"): 7,
        ("page", "sms", "rejected"): 1,
        ("page", "webhook", "sent"): 1,
    }
    assert str(PATIENT) not in r.text and str(OTHER) not in r.text and "+1555" not in r.text
    clinician = auth(stack, "dr-admin", scopes=["notifications:admin"])
    assert (await client.get(f"{N}/ops/delivery-health", headers=clinician)).status_code == 403
    later = (NOW + timedelta(days=2)).isoformat()
    r = await client.get(
        f"{N}/ops/delivery-health", params={"since": later}, headers=auth(stack, "ops-1", Role.OPS)
    )
    assert r.json()["counts"] == []
