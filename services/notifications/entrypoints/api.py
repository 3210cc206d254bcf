"""Notifications' HTTP API for paging, under ``/api/notifications``.

Administration (escalation policies, on-call schedules, contact methods) is for ``ops`` and for
clinicians holding the ``notifications:admin`` scope. Escalations are for clinicians who have the
patient on their panel or were paged for it. Every access to an escalation is audited.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.config import JsonDict
from sqlalchemy.exc import IntegrityError

from contracts.types import Subject
from services.chassis.auth import (
    CurrentPrincipal,
    Principal,
    Role,
    authorize_patient_access,
    require_admin,
)
from services.chassis.dates import PlausibleAwareDatetime
from services.chassis.entrypoint import PatientAccess, patient_access
from services.chassis.errors import FieldRefusal, NotFound
from services.chassis.idempotency import Idempotent
from services.chassis.openapi import name_all
from services.chassis.pagination import PageQuery, link_next, paginated
from services.chassis.preconditions import IfMatch, check_if_match, conditional, etag, with_etag
from services.chassis.runtime import ServiceRuntime
from services.chassis.uow import UnitOfWork
from services.notifications.adapters import paging_config_repository as config
from services.notifications.adapters.ack_links import AckLinks, InvalidLink
from services.notifications.domain import escalation as policy_rules
from services.notifications.domain.escalation import PolicyDefinition, PolicyKey
from services.notifications.domain.oncall import OnCallSchedule, Rotation
from services.notifications.entrypoints.read_bodies import (
    EscalationDetailOut,
    EscalationOut,
    OverrideCreatedOut,
    PageOut,
)
from services.notifications.service_layer import escalations, teams, views

ADMIN_SCOPE = "notifications:admin"


# --- bodies -----------------------------------------------------------------------------------


class PolicyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "red-default",
                    "version": 0,
                    "definition": {
                        "levels": [
                            {
                                "targets": [{"kind": "schedule", "ref": "clinician-on-call"}],
                                "ack_timeout_minutes": 5,
                            }
                        ],
                        "loops": 3,
                        "repage_unresolved_after_minutes": 30,
                        "business_hours": None,
                    },
                    "used_for": ["RED"],
                }
            ]
        }
    )

    key: str = Field(description="The policy's key.")
    version: int = Field(description="0: the shipped default, not yet edited here.")
    definition: PolicyDefinition = Field(description="Its levels, loops and re-page timing.")
    used_for: list[str] = Field(description="Severities routed to this policy.")


_ROTATION: JsonDict = {
    "timezone": "America/New_York",
    "participants": ["dr-panel", "dr-oncall"],
    "starts_at": "2026-12-07T08:00:00Z",
    "shift_hours": 168.0,
}


class RotationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_ROTATION]})

    timezone: str = Field(description="IANA time zone of the shifts.")
    participants: list[Subject] = Field(
        min_length=1, max_length=100, description="Clinicians' subjects, in turn."
    )
    starts_at: PlausibleAwareDatetime = Field(
        description="When the first shift starts (ISO 8601 with offset)."
    )
    shift_hours: float = Field(gt=0, le=24 * 28, description="Each shift's length.")

    @model_validator(mode="after")
    def _valid_rotation(self) -> RotationIn:
        config.rotation_from(self.model_dump(mode="json"))  # the domain's checks (timezone …)
        return self


class OverrideIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "clinician": "dr-backup",
                    "starts_at": "2026-12-24T18:00:00Z",
                    "ends_at": "2026-12-26T08:00:00Z",
                }
            ]
        },
    )

    clinician: Subject = Field(description="Who is on call instead (a subject).")
    starts_at: PlausibleAwareDatetime = Field(description="From (with offset).")
    ends_at: PlausibleAwareDatetime = Field(description="To (with offset), after starts_at.")

    @model_validator(mode="after")
    def _ends_after_start(self) -> OverrideIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class ScheduleOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "clinician-on-call",
                    "version": 3,
                    "rotation": _ROTATION,
                    "overrides": [],
                    "on_call": [
                        {
                            "from": "2026-12-07T08:00:00Z",
                            "to": "2026-12-14T08:00:00Z",
                            "clinician": "dr-panel",
                        }
                    ],
                }
            ]
        }
    )

    key: str = Field(description="The schedule's key.")
    version: int = Field(description="Increases with every rotation or override change (ETag).")
    rotation: RotationIn = Field(description="Its rotation.")
    overrides: list[dict[str, Any]] = Field(description="Its overrides.")
    on_call: list[dict[str, Any]] = Field(description="Who is on call, span by span.")


class ContactMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal["webhook", "email", "sms"] = Field(
        description="webhook (pager app), email or sms."
    )
    address: str = Field(
        min_length=3, max_length=254, description="The routing key, e-mail address or E.164 number."
    )

    @model_validator(mode="after")
    def _address_fits_channel(self) -> ContactMethod:
        import re

        patterns = {
            "sms": r"^\+[1-9]\d{6,14}$",  # E.164
            "email": r"^[^@\s]{1,64}@[^@\s]{1,185}\.[A-Za-z]{2,}$",
            "webhook": r"^[A-Za-z0-9_-]{8,64}$",  # a PagerDuty integration (routing) key
        }
        if not re.fullmatch(patterns[self.channel], self.address):
            raise ValueError(f"address is not a valid {self.channel} address")
        return self


class ContactIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "methods": [
                        {"channel": "webhook", "address": "R0UT1NGKEYEXAMPLE01"},
                        {"channel": "sms", "address": "+15551234567"},
                    ]
                }
            ]
        },
    )

    methods: list[ContactMethod] = Field(max_length=10, description="In the order they are tried.")


class AcknowledgeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "escalation_id": "3f1c2b9e-6a7d-4e8f-9b1a-2c3d4e5f6a7b",
                    "episode_id": "9b2e4c1a-7f3d-4a6b-8c9d-0e1f2a3b4c5d",
                    "status": "acknowledged",
                    "acknowledged_by": "dr-oncall",
                    "acknowledged_at": "2026-12-04T09:17:30Z",
                    "repage_at": "2026-12-04T09:47:30Z",
                }
            ]
        }
    )

    escalation_id: uuid.UUID = Field(description="The escalation acknowledged.")
    episode_id: uuid.UUID = Field(description="Its episode.")
    status: str = Field(description="acknowledged (or the status it already had).")
    acknowledged_by: str | None = Field(description="Who acknowledged.")
    acknowledged_at: datetime | None = Field(description="When.")
    repage_at: datetime | None = Field(description="When it pages again if still unresolved.")


# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "GET /policies": "listEscalationPolicies",
    "GET /policies/{key}": "getEscalationPolicy",
    "PUT /policies/{key}": "putEscalationPolicy",
    "PUT /schedules/{key}": "putOnCallSchedule",
    "GET /schedules/{key}": "getOnCallSchedule",
    "POST /schedules/{key}/overrides": "addOnCallOverride",
    "DELETE /schedules/{key}/overrides/{override_id}": "removeOnCallOverride",
    "PUT /clinicians/{subject}/contact-methods": "putContactMethods",
    "GET /clinicians/{subject}/contact-methods": "getContactMethods",
    "GET /escalations": "listEscalations",
    "GET /escalations/{escalation_id}": "getEscalation",
    "POST /escalations/{escalation_id}/acknowledge": "acknowledgeEscalation",
    "GET /patients/{patient_id}/pages": "listPatientPages",
}


def routers(runtime: ServiceRuntime, links: AckLinks) -> list[APIRouter]:
    admin = APIRouter(tags=["escalation policies and on-call"])
    paging = APIRouter(tags=["escalations and pages"])

    # --- administration -----------------------------------------------------------------------

    @admin.get(
        "/policies",
        response_model=None,
        responses=paginated(list[PolicyOut], "By key (shipped and stored policies)."),
    )
    async def list_policies(
        principal: CurrentPrincipal, page: PageQuery, request: Request, response: Response
    ) -> list[PolicyOut]:
        _require_admin(principal)
        async with runtime.uow() as uow:
            policies, following = await config.policy_page(uow, page)
        link_next(request, response, following)
        return [_policy_out(p) for p in policies]

    @admin.get("/policies/{key}", response_model=PolicyOut, responses=with_etag())
    async def get_policy(
        key: PolicyKey, principal: CurrentPrincipal, response: Response
    ) -> PolicyOut:
        _require_admin(principal)
        async with runtime.uow() as uow:
            policy = await config.current_policy(uow, key)
        response.headers["ETag"] = etag(policy.version)
        return _policy_out(policy)

    @admin.put(
        "/policies/{key}",
        response_model=PolicyOut,
        status_code=201,
        responses=conditional(code=201),
    )
    async def put_policy(
        key: PolicyKey,
        body: PolicyDefinition,
        principal: CurrentPrincipal,
        response: Response,
        if_match: IfMatch = None,
    ) -> PolicyOut:
        """A new version of the policy; escalations under way keep the version they started with."""
        _require_admin(principal)
        async with runtime.uow() as uow:
            await _check_policy(uow, key, if_match)
            await check(teams.check_policy(uow, body))  # 422: a missing schedule, no contact
            try:
                saved = await config.save_policy(uow, key, body, principal.subject)
            except IntegrityError:  # another writer took this version number first
                await uow.rollback()
                raise _changed_concurrently(if_match) from None
            await teams.routing_report(uow)  # the unroutable gauge
            await _audit_admin(uow, principal, "policy.write", f"policy:{key}")
            await uow.commit()
        response.headers["ETag"] = etag(saved.version)
        return _policy_out(saved)

    @admin.put("/schedules/{key}", status_code=204, responses=conditional(code=204))
    async def put_schedule(
        key: PolicyKey,
        body: RotationIn,
        principal: CurrentPrincipal,
        response: Response,
        if_match: IfMatch = None,
    ) -> None:
        _require_admin(principal)
        async with runtime.uow() as uow:
            await _check_schedule(uow, key, if_match)
            version = await config.save_schedule(
                uow, key, body.model_dump(mode="json"), principal.subject
            )
            await teams.routing_report(uow)  # the unroutable gauge
            await _audit_admin(uow, principal, "schedule.write", f"schedule:{key}")
            await uow.commit()
        response.headers["ETag"] = etag(version)

    @admin.get("/schedules/{key}", response_model=ScheduleOut, responses=with_etag())
    async def get_schedule(
        key: PolicyKey,
        principal: CurrentPrincipal,
        response: Response,
        start: Annotated[PlausibleAwareDatetime | None, Query(alias="from")] = None,
        days: Annotated[int, Query(ge=1, le=31)] = 7,
    ) -> ScheduleOut:
        """The rotation, its overrides, and who is on call from ``from`` (default: now)."""
        _require_admin(principal)
        async with runtime.uow() as uow:
            schedule = await config.load_schedule(uow, key)
            version = await config.current_schedule_version(uow, key)
            overrides = await config.list_overrides(uow, key)
            begin = start or uow.clock.now()
        spans = schedule.shifts_between(begin, begin + timedelta(days=days))
        response.headers["ETag"] = etag(version)
        return ScheduleOut(
            key=key,
            version=version,
            rotation=_rotation_in(schedule),
            overrides=overrides,
            on_call=[{"from": a, "to": b, "clinician": who} for a, b, who in spans],
        )

    @admin.post(
        "/schedules/{key}/overrides",
        status_code=201,
        response_model=OverrideCreatedOut,
        responses=conditional(code=201),
    )
    async def add_override(
        key: PolicyKey,
        body: OverrideIn,
        principal: CurrentPrincipal,
        response: Response,
        idem: Idempotent,
        if_match: IfMatch = None,
    ) -> OverrideCreatedOut:
        """Someone else on call for a while; the ETag answered is the schedule's new one."""
        _require_admin(principal)
        async with runtime.uow() as uow:
            await idem.claim(uow)
            await _check_schedule(uow, key, if_match)
            override_id, version = await config.add_override(
                uow, key, body.clinician, body.starts_at, body.ends_at, principal.subject
            )
            await _audit_admin(uow, principal, "schedule.override", f"schedule:{key}")
            out = OverrideCreatedOut(id=override_id)
            headers = {"ETag": etag(version)}
            await idem.record(uow, out, status.HTTP_201_CREATED, headers)
            await uow.commit()
        response.headers.update(headers)
        return out

    @admin.delete(
        "/schedules/{key}/overrides/{override_id}",
        status_code=204,
        responses=conditional(code=204),
    )
    async def remove_override(
        key: PolicyKey,
        override_id: uuid.UUID,
        principal: CurrentPrincipal,
        response: Response,
        if_match: IfMatch = None,
    ) -> None:
        """The ETag answered is the schedule's new one."""
        _require_admin(principal)
        async with runtime.uow() as uow:
            await _check_schedule(uow, key, if_match)
            version = await config.remove_override(uow, key, override_id)
            await _audit_admin(uow, principal, "schedule.override.remove", f"schedule:{key}")
            await uow.commit()
        response.headers["ETag"] = etag(version)

    @admin.put("/clinicians/{subject}/contact-methods", status_code=204)
    async def put_contact(subject: Subject, body: ContactIn, principal: CurrentPrincipal) -> None:
        """How a clinician is paged, in order; the clinician themselves or an administrator."""
        _require_self_or_admin(principal, subject)
        async with runtime.uow() as uow:
            methods = [m.model_dump() for m in body.methods]
            await config.save_contact(uow, subject, methods, principal.subject)
            await teams.routing_report(uow)  # the unroutable gauge
            await _audit_admin(uow, principal, "contact.write", "clinician-contact")
            await uow.commit()

    @admin.get("/clinicians/{subject}/contact-methods", response_model=ContactIn)
    async def get_contact(subject: Subject, principal: CurrentPrincipal) -> ContactIn:
        _require_self_or_admin(principal, subject)
        async with runtime.uow() as uow:
            methods = await config.contact_methods(uow, subject)
            await _audit_admin(uow, principal, "contact.read", "clinician-contact")
            await uow.commit()
        return ContactIn.model_validate({"methods": methods})

    # --- escalations --------------------------------------------------------------------------

    @paging.get("/escalations", response_model=None, responses=paginated(list[EscalationOut]))
    async def list_escalations(
        principal: CurrentPrincipal,
        page: PageQuery,
        request: Request,
        response: Response,
        state: Annotated[StatusFilter, Query(alias="status")] = "open",
        patient_id: uuid.UUID | None = None,
        since: Annotated[PlausibleAwareDatetime | None, Query(description=SINCE)] = None,
        until: Annotated[PlausibleAwareDatetime | None, Query(description=UNTIL)] = None,
        mine: Annotated[
            bool, Query(description="Only those paged to or acknowledged by me.")
        ] = False,
    ) -> list[dict[str, Any]]:
        """Escalations for my panel or that paged me (administrators: all), newest first; the
        next page's cursor is in the ``X-Next-Cursor`` and ``Link`` headers."""
        if principal.role is not Role.CLINICIAN:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="clinicians only")
        wanted = views.EscalationFilter(
            panel=None if principal.has_scope(ADMIN_SCOPE) else principal.panel,
            subject=principal.subject,
            status=state,
            patient_id=patient_id,
            since=since,
            until=until,
            mine=mine,
        )
        async with runtime.uow() as uow:
            rows, following = await views.escalations_page(uow, wanted, page)
            await _audit_admin(uow, principal, "escalation.list", "escalation")
            await uow.commit()
        link_next(request, response, following)
        return rows

    @paging.get(
        "/escalations/{escalation_id}", response_model=None, responses=typed(EscalationDetailOut)
    )
    async def get_escalation(
        escalation_id: uuid.UUID, principal: CurrentPrincipal, request: Request
    ) -> dict[str, Any]:
        """The escalation, every page it made and each delivery's status (failures included)."""
        async with runtime.uow() as uow:
            await _authorize_escalation(uow, principal, escalation_id, "read", request)
            return await views.escalation_detail(uow, escalation_id)

    @paging.post("/escalations/{escalation_id}/acknowledge", response_model=AcknowledgeOut)
    async def acknowledge(
        escalation_id: uuid.UUID, principal: CurrentPrincipal, request: Request, idem: Idempotent
    ) -> AcknowledgeOut:
        async with runtime.uow() as uow:
            await _authorize_escalation(uow, principal, escalation_id, "acknowledge", request)
            await idem.claim(uow)
            row = await escalations.acknowledge(uow, escalation_id, principal.subject, "api")
            out = _ack_out(row)
            await idem.record(uow, out)
            await uow.commit()
        return out

    @paging.get(
        "/patients/{patient_id}/pages", response_model=None, responses=paginated(list[PageOut])
    )
    async def page_history(
        patient_id: uuid.UUID,
        access: PageRead,
        page: PageQuery,
        request: Request,
        response: Response,
        state: Annotated[PageStatus | None, Query(alias="status")] = None,
        since: Annotated[PlausibleAwareDatetime | None, Query(description=SINCE)] = None,
        until: Annotated[PlausibleAwareDatetime | None, Query(description=UNTIL)] = None,
    ) -> list[dict[str, Any]]:
        """The pages sent about this patient, newest first, each with its deliveries."""
        wanted = views.PageFilter(status=state, since=since, until=until)
        async with access as uow:
            rows, following = await views.pages_of_patient(uow, patient_id, wanted, page)
        link_next(request, response, following)
        return rows

    # --- signed links (no bearer token: the link is the credential) ----------------------------

    @paging.get("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def ack_link_page(token: str) -> HTMLResponse:
        """A page with a button: a mail scanner that fetches the link must not acknowledge."""
        _verify(links, token, runtime.clock.now())
        return HTMLResponse(_confirm_page(token))

    @paging.post("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def ack_link(token: str) -> HTMLResponse:
        now = runtime.clock.now()
        claim = _verify(links, token, now)
        async with runtime.uow() as uow:
            row = await escalations.acknowledge(
                uow, claim.escalation_id, claim.clinician, "signed_link"
            )
            await uow.commit()
        return HTMLResponse(_done_page(row["status"]))

    return name_all([admin, paging], OPERATION_IDS)


# --- helpers ----------------------------------------------------------------------------------

PageStatus = Literal["pending", "sending", "delivered", "undeliverable"]
PageRead = Annotated[PatientAccess, Depends(patient_access("read", "page"))]
StatusFilter = Literal[
    "open", "all", "triggered", "acknowledged", "exhausted", "resolved", "superseded"
]
SINCE = "Created at or after (ISO 8601 with offset)."
UNTIL = "Created before (ISO 8601 with offset)."


def typed(model: Any) -> dict[int | str, dict[str, Any]]:
    """The 200 body's type, documented only: the endpoint returns its read model's rows as they
    are (read_bodies.py says why)."""
    return {200: {"model": model}}


async def check(awaitable: Awaitable[None]) -> None:
    """Run a service-layer check; its field problems become a 422 like a body's own."""
    try:
        await awaitable
    except teams.Unroutable as exc:
        raise FieldRefusal.of_all((["body", *p.loc], p.msg, p.type) for p in exc.problems) from None


async def _check_schedule(uow: UnitOfWork, key: str, if_match: str | None) -> None:
    """If-Match against the schedule's version (None: it does not exist yet), locked."""
    if if_match is not None:
        version = await config.schedule_version(uow, key)
        check_if_match(if_match, None if version is None else etag(version))


async def _check_policy(uow: UnitOfWork, key: str, if_match: str | None) -> None:
    """If-Match against the policy's latest version (0: the shipped default). Two writers that
    both pass write the same next version: the unique (key, version) refuses the second."""
    if if_match is None:
        return
    try:
        current: str | None = etag((await config.current_policy(uow, key)).version)
    except NotFound:
        current = None
    check_if_match(if_match, current)


def _changed_concurrently(if_match: str | None) -> HTTPException:
    if if_match is not None:
        return HTTPException(
            status.HTTP_412_PRECONDITION_FAILED,
            detail="If-Match does not match: the resource changed since it was read",
        )
    return HTTPException(status.HTTP_409_CONFLICT, detail="changed concurrently: try again")


def _require_admin(principal: Principal) -> None:
    require_admin(principal, ADMIN_SCOPE)


def _require_self_or_admin(principal: Principal, subject: str) -> None:
    if principal.role is Role.CLINICIAN and principal.subject == subject:
        return
    _require_admin(principal)


async def _audit_admin(uow: UnitOfWork, principal: Principal, action: str, resource: str) -> None:
    await uow.audit(
        actor=principal.subject,
        actor_role=str(principal.role),
        action=action,
        resource=resource,
        patient_id=None,
    )


async def _authorize_escalation(
    uow: UnitOfWork,
    principal: Principal,
    escalation_id: uuid.UUID,
    action: str,
    request: Request,
) -> None:
    """A clinician with the patient on their panel, one who was paged for it, or an admin.

    The on-call clinician covering the night may not have the patient on their panel: being paged
    for the escalation is what entitles them to it. Audited either way.
    """
    row = await escalations.escalation(uow, escalation_id)
    granted = principal.has_scope(ADMIN_SCOPE) or await escalations.was_paged(
        uow, escalation_id, principal.subject
    )
    await authorize_patient_access(
        uow,
        principal,
        row["patient_id"],
        action=action,
        resource="escalation",
        request=request,
        roles=(Role.CLINICIAN,),
        granted=granted,
    )


def _verify(links: AckLinks, token: str, now: datetime) -> Any:
    try:
        return links.verify(token, now)
    except InvalidLink as exc:
        raise HTTPException(status.HTTP_410_GONE, detail=str(exc)) from None


def _policy_out(p: config.VersionedPolicy) -> PolicyOut:
    routes = policy_rules.defaults().routes
    return PolicyOut(
        key=p.key,
        version=p.version,
        definition=p.definition,
        used_for=sorted(sev for sev, key in routes.items() if key == p.key),
    )


def _rotation_in(schedule: OnCallSchedule) -> RotationIn:
    r: Rotation = schedule.rotation
    return RotationIn(
        timezone=r.timezone,
        participants=list(r.participants),
        starts_at=r.starts_at.astimezone(UTC),
        shift_hours=r.shift.total_seconds() / 3600,
    )


def _ack_out(row: dict[str, Any]) -> AcknowledgeOut:
    return AcknowledgeOut(
        escalation_id=row["id"],
        episode_id=row["episode_id"],
        status=row["status"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=row["acknowledged_at"],
        repage_at=row["next_step_at"] if row["status"] == "acknowledged" else None,
    )


def _confirm_page(token: str) -> str:
    action = html.escape(token, quote=True)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Acknowledge page</title></head>"
        "<body><h1>Acknowledge this escalation?</h1>"
        "<p>Escalation to the next clinician stops; the episode stays open until resolved.</p>"
        f"<form method='post' action='{action}'><button type='submit'>Acknowledge</button></form>"
        "</body></html>"
    )


def _done_page(state: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Acknowledged</title></head>"
        f"<body><h1>Acknowledged</h1><p>Escalation status: {html.escape(state)}.</p></body></html>"
    )
