"""Live updates through the real nginx gateway (issue 18, part 9): a clinician's console holds a
server-sent events stream open through the gateway to the real notifications app (uvicorn,
SQLite); an escalation opened in the service reaches it within seconds, each event as it comes
(nginx buffers nothing for these paths); after a disconnect, reconnecting with Last-Event-ID
gets exactly the events it missed. Every wait is on a condition, bounded."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from contracts import EscalationResolved, Severity, ThresholdExceeded
from services.chassis.auth import Role, issue_dev_token
from services.notifications.service_layer import escalations
from tests.helpers import red_flag_threshold
from tests.support.served import Served

PATIENT = uuid.uuid4()
WITHIN_S = 10.0  # a bound on waiting, not a performance claim (the figure is printed)


async def events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The SSE events of a streaming response as they arrive (comments and retry skipped)."""
    fields: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "event" in fields:
                yield fields
            fields = {}
            continue
        name, _, value = line.partition(": ")
        if name in ("id", "event", "data"):
            fields[name] = json.loads(value) if name == "data" else value


async def next_event(stream: AsyncIterator[dict[str, Any]], kind: str | None) -> dict[str, Any]:
    """The next event of ``kind`` (None: the next event, whatever it is), within WITHIN_S."""

    async def first() -> dict[str, Any]:
        async for event in stream:
            if kind is None or event["event"] == kind:
                return event
        raise AssertionError(f"stream ended before {kind}")

    return await asyncio.wait_for(first(), timeout=WITHIN_S)


def change(served: Served, coroutine: Any) -> Any:
    """Run a state change in the notifications service, on its own event loop, and commit."""
    runtime = served.apps.runtimes["notifications"]

    async def committed() -> None:
        async with runtime.uow() as uow:
            await coroutine(uow)
            await uow.commit()

    return served.apps.call(committed())


async def test_an_escalation_reaches_the_console_through_the_gateway_and_resumes(
    served: Served,
) -> None:
    settings = served.apps.runtimes["notifications"].settings
    token = issue_dev_token(settings, subject="dr-live", role=Role.CLINICIAN, panel=[PATIENT])
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    url = f"{served.url}/api/notifications/clinicians/me/events"
    threshold = red_flag_threshold(PATIENT)
    timeout = httpx.Timeout(WITHIN_S, read=WITHIN_S * 3)
    async with httpx.AsyncClient(timeout=timeout) as client:
        async with client.stream("GET", url, headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for name in ("x-content-type-options", "x-frame-options", "x-request-id"):
                assert name in r.headers  # the gateway's security headers stay
            stream = events(r)
            ready = await next_event(stream, "feed.ready")
            started = time.monotonic()
            await asyncio.to_thread(
                change, served, lambda uow: escalations.on_threshold_exceeded(threshold, uow)
            )
            opened = await next_event(stream, "escalation.opened")
            latency = time.monotonic() - started
        assert int(opened["id"]) > int(ready["id"])
        assert opened["data"]["patient_id"] == str(PATIENT)
        print(f"\nescalation.opened through the gateway {latency:.2f} s after the commit")

        # disconnected; meanwhile the episode is resolved
        resolved = _resolved(threshold)
        await asyncio.to_thread(
            change, served, lambda uow: escalations.on_escalation_resolved(resolved, uow)
        )
        resumed_headers = {**headers, "Last-Event-ID": opened["id"]}
        async with client.stream("GET", url, headers=resumed_headers) as r:
            stream = events(r)
            ready = await next_event(stream, "feed.ready")
            assert ready["id"] == opened["id"]
            missed = await next_event(stream, None)  # the first after the id: no repeat
            assert missed["event"] == "escalation.resolved"
            assert (
                missed["data"]["data"]["escalation_id"] == opened["data"]["data"]["escalation_id"]
            )
        # only the later ones: the JSON page after the same id holds exactly that one
        r = await client.get(
            url,
            headers={"Authorization": headers["Authorization"], "Last-Event-ID": opened["id"]},
        )
        assert [e["type"] for e in r.json()] == ["escalation.resolved"]


def _resolved(threshold: ThresholdExceeded) -> EscalationResolved:
    return EscalationResolved.create(
        patient_id=threshold.patient_id,
        occurred_at=threshold.occurred_at,
        episode_id=threshold.episode_id,
        family="safety",
        severity=Severity.RED,
        resolution="keep_held",
        resolved_by="dr-live",
    )
