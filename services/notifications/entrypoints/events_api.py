"""Live updates: a clinician's and a patient's event streams (server-sent events).

``GET /clinicians/me/events`` carries the escalations of the caller's panel and those that paged
them (clinical administrators: all), as ``GET /escalations`` shows them; ``GET
/patients/{patient_id}/events`` a patient's dose changes and messages, to the patient and their
panel's clinicians. Both read the durable feed (service_layer/feed.py) by polling it: any replica
serves any client, and a client reconnecting with ``Last-Event-ID`` (the header, or the
``last_event_id`` query parameter for EventSource polyfills that cannot set headers) resumes
exactly after the last event it got.

A request that accepts ``text/event-stream`` gets the stream; any other gets the same events as a
JSON page (catch-up without a stream, and what schema-driven tools exercise). A stream ends after
``NOTIFICATIONS_EVENTS_STREAM_MAX_S`` (the client reconnects and its token is checked again), on
client disconnect and when the server shuts down.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.sse import format_sse_event
from pydantic import BaseModel, ConfigDict, Field

from services.chassis.auth import CurrentPrincipal, Principal, Role
from services.chassis.entrypoint import PatientAccess, patient_access
from services.chassis.openapi import name_operations
from services.chassis.pagination import PageQuery, decode_cursor, encode_cursor, link_next
from services.chassis.runtime import ServiceRuntime
from services.notifications.service_layer import feed
from services.notifications.settings import NotificationsSettings

ADMIN_SCOPE = "notifications:admin"  # as entrypoints/api.py: clinical administrators see all
BATCH = 100  # rows per read of a stream; a backlog is sent without waiting between reads
RETRY_MS = 3000  # what the stream asks EventSource to wait before reconnecting
MAX_ID = 2**63 - 1
READY = "feed.ready"


class FeedData(BaseModel):
    """What changed, PHI-minimal: read the details with the resource's own GET."""

    escalation_id: uuid.UUID | None = Field(None, description="escalation.*: the escalation.")
    episode_id: uuid.UUID | None = Field(None, description="escalation.*: its episode.")
    status: str | None = Field(
        None, description="escalation.*: triggered | acknowledged | exhausted | resolved | …"
    )
    severity: str | None = Field(None, description="escalation.*: AMBER | RED.")
    level: int | None = Field(None, description="escalation.*: the policy level paged (0: none).")
    loop: int | None = Field(None, description="escalation.*: the policy's loop.")
    cycle: int | None = Field(None, description="escalation.*: re-page cycle.")
    change: str | None = Field(None, description="dose.changed: reduced | restored.")
    event_id: uuid.UUID | None = Field(None, description="dose.changed: the scheduler's event.")
    message_id: uuid.UUID | None = Field(None, description="message.sent: the message.")
    kind: str | None = Field(None, description="message.sent: the message's kind.")
    reason: str | None = Field(
        None, description="feed.reset: expired (older than retention) | unknown_id."
    )
    position: int | None = Field(None, description="feed.ready: the stream starts after this id.")


class FeedEventOut(BaseModel):
    """One event of a stream: in a stream, the ``data:`` of an SSE event whose ``id:`` is
    ``id`` and ``event:`` is ``type``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1042,
                    "type": "escalation.opened",
                    "patient_id": "5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
                    "created_at": "2026-12-04T09:15:00Z",
                    "data": {
                        "escalation_id": "3f1c2b9e-6a7d-4e8f-9b1a-2c3d4e5f6a7b",
                        "episode_id": "9b2e4c1a-7f3d-4a6b-8c9d-0e1f2a3b4c5d",
                        "status": "triggered",
                        "severity": "RED",
                        "level": 0,
                        "loop": 0,
                        "cycle": 0,
                    },
                }
            ]
        }
    )

    id: int = Field(description="The feed's id: pass the last one as Last-Event-ID to resume.")
    type: str = Field(description="What happened (the stream's description lists the types).")
    patient_id: uuid.UUID | None = Field(description="The patient; null on feed.* events.")
    created_at: datetime | None = Field(description="When it happened; null on feed.* events.")
    data: FeedData = Field(description="What changed (ids, status, level …).")


def _types(types: dict[str, str]) -> str:
    lines = [f"- `{name}`: {meaning}" for name, meaning in types.items()]
    lines += [
        f"- `{READY}`: the stream is live after this id (load your lists after it).",
        f"- `{feed.RESET}`: {feed.RESET_DOC}",
    ]
    return "\n".join(lines)


def _responses(types: dict[str, str], example: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "model": list[FeedEventOut],
            "description": (
                "With `Accept: text/event-stream`: a stream of server-sent events (`id:` the "
                "feed id, `event:` the type, `data:` a FeedEventOut as JSON), a `: heartbeat` "
                "comment every ~15 s, ending after a few minutes (reconnect with "
                "Last-Event-ID). Otherwise a JSON page of the same events, oldest first; more "
                "follow while X-Next-Cursor is present.\n\nEvent types:\n" + _types(types)
            ),
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": "SSE events, UTF-8."},
                    "example": example,
                }
            },
            "headers": {
                "X-Next-Cursor": {
                    "description": "JSON page: pass as cursor for the next page.",
                    "schema": {"type": "string"},
                }
            },
        }
    }


_CLINICIAN_EXAMPLE = (
    'retry: 3000\n\nevent: feed.ready\ndata: {"id": 1041, "type": "feed.ready", …}\nid: 1041\n\n'
    'event: escalation.opened\ndata: {"id": 1042, "type": "escalation.opened", …}\nid: 1042\n\n'
    ": heartbeat\n\n"
)
_PATIENT_EXAMPLE = (
    'retry: 3000\n\nevent: feed.ready\ndata: {"id": 1041, "type": "feed.ready", …}\nid: 1041\n\n'
    'event: dose.changed\ndata: {"id": 1043, "type": "dose.changed", …}\nid: 1043\n\n'
)

LastEventHeader = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=MAX_ID,
        description="The last event's id (EventSource sends it on reconnecting).",
    ),
]
LastEventQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_ID,
        description="As Last-Event-ID, for clients that cannot set headers; the header wins.",
    ),
]

OPERATION_IDS = {
    "GET /clinicians/me/events": "listClinicianEvents",
    "GET /patients/{patient_id}/events": "listPatientEvents",
}


EventStreamRead = Annotated[PatientAccess, Depends(patient_access("read", "event-stream"))]


def routers(runtime: ServiceRuntime, settings: NotificationsSettings) -> list[APIRouter]:
    router = APIRouter(tags=["live updates"])

    @router.get(
        "/clinicians/me/events",
        response_model=None,
        responses=_responses(feed.CLINICIAN_TYPES, _CLINICIAN_EXAMPLE),
        summary="My panel's escalations as they open, rise, are acknowledged and resolved",
    )
    async def clinician_events(
        principal: CurrentPrincipal,
        request: Request,
        page: PageQuery,
        last_event_header: LastEventHeader = None,
        last_event_id: LastEventQuery = None,
    ) -> Response:
        """The caller's panel and the escalations that paged them (clinical administrators:
        every patient's), like ``listEscalations``."""
        if principal.role is not Role.CLINICIAN:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="clinicians only")
        admin = principal.has_scope(ADMIN_SCOPE)
        view = feed.ClinicianView(principal.subject, None if admin else principal.panel)
        async with runtime.uow() as uow:
            await _audit(uow, principal)
            await uow.commit()
        start = last_event_header if last_event_header is not None else last_event_id
        return await _answer(runtime, settings, request, view, start, page)

    @router.get(
        "/patients/{patient_id}/events",
        response_model=None,
        responses=_responses(feed.PATIENT_TYPES, _PATIENT_EXAMPLE),
        summary="A patient's dose changes and messages as they happen",
    )
    async def patient_events(
        patient_id: uuid.UUID,
        access: EventStreamRead,
        request: Request,
        page: PageQuery,
        last_event_header: LastEventHeader = None,
        last_event_id: LastEventQuery = None,
    ) -> Response:
        """For the patient and the clinicians with the patient on their panel (audited)."""
        await access.authorize()  # audited; no connection held while streaming
        start = last_event_header if last_event_header is not None else last_event_id
        view = feed.PatientView(patient_id)
        return await _answer(runtime, settings, request, view, start, page)

    return [name_operations(router, OPERATION_IDS)]


async def _audit(uow: Any, principal: Principal) -> None:
    await uow.audit(
        actor=principal.subject,
        actor_role=str(principal.role),
        action="events.read",
        resource="event-stream",
        patient_id=None,
    )


async def _answer(
    runtime: ServiceRuntime,
    settings: NotificationsSettings,
    request: Request,
    view: feed.View,
    start: int | None,
    page: Any,
) -> Response:
    if "text/event-stream" in request.headers.get("accept", "").lower():
        return StreamingResponse(
            _stream(runtime, settings, request, view, start),
            media_type="text/event-stream",
            # No proxy may hold events back (nginx also has proxy_buffering off for these).
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    return await _page(runtime, request, view, start, page)


async def _page(
    runtime: ServiceRuntime, request: Request, view: feed.View, start: int | None, page: Any
) -> Response:
    """The JSON page: events after ``start`` (default: the oldest kept), or after the cursor."""
    items: list[dict[str, Any]] = []
    async with runtime.uow() as uow:
        if page.cursor is not None:
            [after] = decode_cursor(page.cursor, [int])
        else:
            after, reason = await feed.resume_point(uow, start if start is not None else 0)
            if reason is not None:
                items.append(_control(feed.RESET, after, reason=reason))
        rows = await feed.after(uow, view, after, page.limit + 1)
    items += [_event(row) for row in rows[: page.limit]]
    response = JSONResponse(items)
    if len(rows) > page.limit:
        link_next(request, response, encode_cursor([rows[page.limit - 1]["id"]]))
    return response


async def _stream(
    runtime: ServiceRuntime,
    settings: NotificationsSettings,
    request: Request,
    view: feed.View,
    start: int | None,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    ends = loop.time() + settings.events_stream_max_s
    async with runtime.uow() as uow:
        position, reason = await feed.resume_point(uow, start)
    yield format_sse_event(retry=RETRY_MS)
    if reason is not None:
        yield _sse(_control(feed.RESET, position, reason=reason))
    yield _sse(_control(READY, position, position=position))
    sent = loop.time()
    while True:  # read at least once: what is already there is sent before the stream ends
        async with runtime.uow() as uow:  # a connection only while reading, not while waiting
            rows = await feed.after(uow, view, position, BATCH)
        for row in rows:
            yield _sse(_event(row))
            position = row["id"]
            sent = loop.time()
        if len(rows) == BATCH:
            continue  # a backlog: read on at once
        if loop.time() >= ends or runtime.draining.is_set() or await request.is_disconnected():
            return
        if loop.time() - sent >= settings.events_heartbeat_s:
            yield format_sse_event(comment="heartbeat")  # keeps proxies from closing it idle
            sent = loop.time()
        with suppress(TimeoutError):
            await asyncio.wait_for(runtime.draining.wait(), settings.events_poll_interval_s)


def _event(row: dict[str, Any]) -> dict[str, Any]:
    data = FeedData.model_validate(row["payload"])
    out = FeedEventOut(
        id=row["id"],
        type=row["type"],
        patient_id=row["patient_id"],
        created_at=row["created_at"],
        data=data,
    ).model_dump(mode="json")
    return out | {"data": data.model_dump(mode="json", exclude_none=True)}  # only what it has


def _control(kind: str, at: int, **data: Any) -> dict[str, Any]:
    return {"id": at, "type": kind, "patient_id": None, "created_at": None, "data": data}


def _sse(item: dict[str, Any]) -> bytes:
    return format_sse_event(
        data_str=json.dumps(item, separators=(",", ":")), event=item["type"], id=str(item["id"])
    )
