"""Care teams, personal notification rules, a patient's escalations and ops views of paging.

Care teams and routing are configuration (no patient data) for administrators; which team a
patient belongs to and their escalations are the patient's data, for clinicians with the patient
on their panel (and clinical administrators); a clinician's rules are theirs or an
administrator's; the ops views carry counts, keys and field paths only. Every access audited.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.types import Subject
from services.chassis.auth import CurrentPrincipal, Role, require_role
from services.chassis.dates import PlausibleAwareDatetime
from services.chassis.entrypoint import CLINICIAN, PatientAccess, patient_access
from services.chassis.openapi import name_operations
from services.chassis.pagination import PageQuery, link_next, paginated
from services.chassis.runtime import ServiceRuntime
from services.notifications.domain.escalation import PolicyKey
from services.notifications.domain.routing import CareTeamDefinition, NotificationRules
from services.notifications.entrypoints.api import (
    ADMIN_SCOPE,
    SINCE,
    UNTIL,
    StatusFilter,
    _audit_admin,
    _require_admin,
    _require_self_or_admin,
    check,
    typed,
)
from services.notifications.entrypoints.read_bodies import (
    DeliveryHealthOut,
    EscalationOut,
    RoutingReportOut,
)
from services.notifications.service_layer import notification_rules, teams, views


class CareTeamOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "night",
                    "routes": {"RED": "red-default", "AMBER": "amber-default"},
                    "default": True,
                }
            ]
        }
    )

    key: str = Field(description="The team's key.")
    routes: dict[str, str] = Field(description="Severity -> escalation policy key.")
    default: bool = Field(description="Whether patients without a team use it.")


class MembershipIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"team": "night"}]})

    team: PolicyKey = Field(description="A care team's key.")


class MembershipOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"team": "night"}]})

    team: str | None = Field(
        description="The patient's care team key; null: the default team's routes."
    )


# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "PUT /care-teams/{key}": "putCareTeam",
    "GET /care-teams": "listCareTeams",
    "PUT /patients/{patient_id}/care-team": "putCareTeamMembership",
    "GET /patients/{patient_id}/care-team": "getCareTeamMembership",
    "GET /patients/{patient_id}/escalations": "listPatientEscalations",
    "PUT /clinicians/{subject}/notification-rules": "putNotificationRules",
    "GET /clinicians/{subject}/notification-rules": "getNotificationRules",
    "GET /ops/routing": "getRoutingReport",
    "GET /ops/delivery-health": "getDeliveryHealth",
}


# A clinician with the patient on their panel, or a clinical administrator (any patient).
CareTeamWrite = Annotated[
    PatientAccess,
    Depends(
        patient_access("write", "care-team", roles=CLINICIAN, commit=True, admin_scope=ADMIN_SCOPE)
    ),
]
CareTeamRead = Annotated[
    PatientAccess,
    Depends(patient_access("read", "care-team", roles=CLINICIAN, admin_scope=ADMIN_SCOPE)),
]
EscalationsRead = Annotated[
    PatientAccess,
    Depends(patient_access("read", "escalation", roles=CLINICIAN, admin_scope=ADMIN_SCOPE)),
]


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    api = APIRouter(tags=["care teams and routing"])

    @api.put("/care-teams/{key}", response_model=CareTeamOut)
    async def put_team(
        key: PolicyKey, body: CareTeamDefinition, principal: CurrentPrincipal
    ) -> CareTeamOut:
        """Create or replace a care team; each route must name a policy that reaches a person."""
        _require_admin(principal)
        async with runtime.uow() as uow:
            await check(teams.save_team(uow, key, body, principal.subject))
            await teams.routing_report(uow)  # the unroutable gauge
            await _audit_admin(uow, principal, "care_team.write", f"care_team:{key}")
            await uow.commit()
        return CareTeamOut(key=key, routes=dict(body.routes), default=body.default)

    @api.get("/care-teams", response_model=None, responses=paginated(list[CareTeamOut], "By key."))
    async def list_teams(
        principal: CurrentPrincipal, page: PageQuery, request: Request, response: Response
    ) -> list[dict[str, Any]]:
        _require_admin(principal)
        async with runtime.uow() as uow:
            found, following = await teams.team_page(uow, page)
            await _audit_admin(uow, principal, "care_team.list", "care_team")
            await uow.commit()
        link_next(request, response, following)
        return found

    @api.put("/patients/{patient_id}/care-team", response_model=MembershipOut)
    async def put_membership(
        patient_id: uuid.UUID,
        body: MembershipIn,
        principal: CurrentPrincipal,
        access: CareTeamWrite,
    ) -> MembershipOut:
        """Which care team's routes page for this patient (their clinic or panel)."""
        async with access as uow:
            await check(teams.assign(uow, patient_id, body.team, principal.subject))
        return MembershipOut(team=body.team)

    @api.get("/patients/{patient_id}/care-team", response_model=MembershipOut)
    async def get_membership(patient_id: uuid.UUID, access: CareTeamRead) -> MembershipOut:
        """The patient's team; null: the default team's routes (or the shipped ones)."""
        async with access as uow:
            return MembershipOut(team=await teams.team_of(uow, patient_id))

    @api.get(
        "/patients/{patient_id}/escalations",
        response_model=None,
        responses=paginated(list[EscalationOut]),
    )
    async def patient_escalations(
        patient_id: uuid.UUID,
        principal: CurrentPrincipal,
        access: EscalationsRead,
        page: PageQuery,
        request: Request,
        response: Response,
        state: Annotated[StatusFilter, Query(alias="status")] = "all",
        since: Annotated[PlausibleAwareDatetime | None, Query(description=SINCE)] = None,
        until: Annotated[PlausibleAwareDatetime | None, Query(description=UNTIL)] = None,
    ) -> list[dict[str, Any]]:
        """This patient's escalations, newest first (cursor in ``X-Next-Cursor``/``Link``)."""
        wanted = views.EscalationFilter(
            panel=None,  # authorized for this patient: all of theirs
            subject=principal.subject,
            status=state,
            patient_id=patient_id,
            since=since,
            until=until,
        )
        async with access as uow:
            rows, following = await views.escalations_page(uow, wanted, page)
        link_next(request, response, following)
        return rows

    @api.put("/clinicians/{subject}/notification-rules", response_model=NotificationRules)
    async def put_rules(
        subject: Subject, body: NotificationRules, principal: CurrentPrincipal
    ) -> NotificationRules:
        """How I am paged: my channels in order, each after its delay (push now, SMS after 2
        minutes ...); each channel must be one of my contact methods."""
        _require_self_or_admin(principal, subject)
        async with runtime.uow() as uow:
            await check(notification_rules.save(uow, subject, body, principal.subject))
            await _audit_admin(uow, principal, "notification_rules.write", "clinician-rules")
            await uow.commit()
        return body

    @api.get("/clinicians/{subject}/notification-rules", response_model=NotificationRules | None)
    async def get_rules(subject: Subject, principal: CurrentPrincipal) -> NotificationRules | None:
        """Null: no rules, every contact method is paged at once."""
        _require_self_or_admin(principal, subject)
        async with runtime.uow() as uow:
            rules = await notification_rules.rules_of(uow, subject)
            await _audit_admin(uow, principal, "notification_rules.read", "clinician-rules")
            await uow.commit()
        return rules

    # --- ops: no patient data -----------------------------------------------------------------

    @api.get("/ops/routing", response_model=None, responses=typed(RoutingReportOut))
    async def routing(principal: CurrentPrincipal) -> dict[str, Any]:
        """Every policy, who routes to it and why it cannot page a person (alert on
        ``unroutable_in_use`` > 0, also the ``taper.policies.unroutable`` gauge)."""
        require_role(principal, Role.OPS)
        async with runtime.uow() as uow:
            report = await teams.routing_report(uow)
            await _audit_admin(uow, principal, "routing.read", "routing")
            await uow.commit()
        return report

    @api.get("/ops/delivery-health", response_model=None, responses=typed(DeliveryHealthOut))
    async def delivery_health(
        principal: CurrentPrincipal,
        since: Annotated[
            PlausibleAwareDatetime | None, Query(description="Default: the last 24 hours.")
        ] = None,
    ) -> dict[str, Any]:
        """Deliveries counted by kind, channel and outcome (pending, sent, failed, rejected,
        cancelled): no patient, address or message."""
        require_role(principal, Role.OPS)
        async with runtime.uow() as uow:
            start = since or uow.clock.now() - timedelta(hours=24)
            counts = await views.delivery_health(uow, start)
            await _audit_admin(uow, principal, "delivery_health.read", "deliveries")
            await uow.commit()
        return {"since": start, "counts": counts}

    return [name_operations(api, OPERATION_IDS)]
