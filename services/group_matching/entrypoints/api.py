"""Group matching's HTTP API, under ``/api/group-matching``.

Patients opt in and out of peer support and see their cohort (other members by display handle
only); a clinician on the patient's panel can allow placement despite an open RED episode;
the clinician also reads their patient's placement (waiting or placed, cohort size, next session);
moderators see their rosters (facts of membership, no attendance); administrators (``ops`` or
scope ``group_matching:admin``) register, list, pause (``max_cohorts`` 0), deactivate and remove
moderators. Every access to a patient's data is audited.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from contracts.types import Subject
from services.chassis.auth import CurrentPrincipal, Role, require_admin
from services.chassis.dates import PlausibleAwareDatetime
from services.chassis.entrypoint import CLINICIAN, PatientAccess, patient_access
from services.chassis.idempotency import Idempotent
from services.chassis.openapi import name_operations
from services.chassis.pagination import PageQuery, link_next, paginated
from services.chassis.runtime import ServiceRuntime
from services.group_matching.domain import placement
from services.group_matching.entrypoints.read_bodies import MyCohortOut, RosterCohortOut
from services.group_matching.service_layer import cohorts, moderators, stages, views

ADMIN_SCOPE = "group_matching:admin"
ReasonCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]


class StageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "patient_id": "5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
                    "drug": "diazepam",
                    "stage": "active",
                    "updated_at": "2026-12-14T06:00:00Z",
                }
            ]
        }
    )

    patient_id: uuid.UUID = Field(description="The patient.")
    drug: str = Field(description="The drug being tapered.")
    stage: str = Field(
        description="The taper stage (the events' TaperStage): pre_taper, crossover, active, "
        "final_phase, held, post_taper_early ..."
    )
    updated_at: datetime = Field(description="When the scheduler last reported the stage.")


class ParticipationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"timezone": "America/Chicago", "language": "en"}]},
    )

    timezone: str = Field(examples=["America/Chicago"], description="IANA timezone.")
    language: str = Field(examples=["en"], description="ISO 639-1 language of the sessions.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if not placement.valid_timezone(value):
            raise ValueError("unknown timezone (use an IANA name such as Europe/Paris)")
        return value

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in placement.LANGUAGES:
            raise ValueError(f"unsupported language; one of {sorted(placement.LANGUAGES)}")
        return value


class OverrideIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason_code": "clinician_cleared"}]}
    )

    reason_code: ReasonCode = Field(description="Why the open RED episode may be overridden.")


class ModeratorIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"languages": ["en", "es"], "max_cohorts": 3}]},
    )

    languages: list[str] = Field(
        min_length=1, max_length=12, description="ISO 639-1 languages they moderate in."
    )
    max_cohorts: int = Field(ge=0, le=50, description="0: paused (keeps their cohorts).")

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - placement.LANGUAGES)
        if unknown:
            raise ValueError(f"unsupported languages: {unknown}")
        return value


class PlacementOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "waiting",
                    "waiting_since": "2026-12-01T10:00:00Z",
                    "held_back_by_open_red": True,
                    "red_override": False,
                    "cohort_size": None,
                    "next_session": None,
                }
            ]
        }
    )

    status: Literal["waiting", "placed", "not_taking_part"] = Field(
        description="waiting, placed or not_taking_part."
    )
    waiting_since: datetime | None = Field(None, description="Since when on the waitlist.")
    held_back_by_open_red: bool = Field(
        False, description="An open RED episode keeps the patient from being placed."
    )
    red_override: bool = Field(False, description="A clinician overrode that hold.")
    cohort_size: int | None = Field(None, description="Members of their cohort, when placed.")
    next_session: datetime | None = Field(None, description="In the patient's timezone.")


class ModeratorOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject": "dr-moderator",
                    "languages": ["en", "es"],
                    "max_cohorts": 3,
                    "active": True,
                    "active_cohorts": 2,
                    "updated_by": "ops-1",
                    "updated_at": "2026-12-01T09:00:00Z",
                }
            ]
        }
    )

    subject: str = Field(description="The moderator's (clinician's) subject.")
    languages: list[str] = Field(description="ISO 639-1 languages they moderate in.")
    max_cohorts: int = Field(description="Cohorts they take at most (0: paused).")
    active: bool = Field(description="false: deactivated, no new cohorts.")
    active_cohorts: int = Field(description="Cohorts they moderate now.")
    updated_by: str = Field(description="Who last changed the registration.")
    updated_at: datetime = Field(description="When the registration last changed.")


class RemovedOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"cohorts_handed_over": 2}]})

    cohorts_handed_over: int = Field(description="Their cohorts given to other moderators.")


# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "GET /patients/{patient_id}/stage": "getTaperStage",
    "PUT /patients/{patient_id}/peer-support": "joinPeerSupport",
    "DELETE /patients/{patient_id}/peer-support": "leavePeerSupport",
    "GET /patients/{patient_id}/cohort": "getMyCohort",
    "POST /patients/{patient_id}/placement-override": "overridePlacement",
    "GET /patients/{patient_id}/placement": "getPlacement",
    "GET /moderators": "listModerators",
    "POST /moderators/{subject}/deactivate": "deactivateModerator",
    "POST /moderators/{subject}/activate": "activateModerator",
    "DELETE /moderators/{subject}": "removeModerator",
    "PUT /moderators/{subject}": "putModerator",
    "GET /moderators/{subject}/cohorts": "listModeratorCohorts",
}


# Peer support is the patient's own choice; placement is the clinician's (chassis/entrypoint.py).
_PATIENT = (Role.PATIENT,)
StageRead = Annotated[PatientAccess, Depends(patient_access("read", "stage"))]
PeerSupportWrite = Annotated[
    PatientAccess, Depends(patient_access("write", "peer-support", roles=_PATIENT, commit=True))
]
PeerSupportRead = Annotated[
    PatientAccess, Depends(patient_access("read", "peer-support", roles=_PATIENT))
]
PlacementWrite = Annotated[
    PatientAccess,
    Depends(patient_access("write", "peer-support", roles=CLINICIAN, commit=True, idempotent=True)),
]
PlacementRead = Annotated[
    PatientAccess, Depends(patient_access("read", "peer-support", roles=CLINICIAN))
]


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["peer support"])

    @router.get(
        "/patients/{patient_id}/stage",
        response_model=StageOut,
        summary="The patient's taper stage (the patient, or a clinician on their panel)",
    )
    async def stage(patient_id: uuid.UUID, access: StageRead) -> StageOut:
        async with access as uow:
            row = await stages.get_stage(uow, patient_id)
        return StageOut(**row)

    @router.put(
        "/patients/{patient_id}/peer-support",
        summary="Opt in: join the waitlist",
        response_model=None,  # documented only: read_bodies.py says why
        responses={200: {"model": MyCohortOut}},
    )
    async def join(
        patient_id: uuid.UUID, body: ParticipationIn, access: PeerSupportWrite
    ) -> dict[str, Any]:
        async with access as uow:
            await cohorts.join(uow, patient_id, body.timezone, body.language)
            await uow.commit()  # then read back what the patient joined
            return await views.my_cohort(uow, patient_id)

    @router.delete(
        "/patients/{patient_id}/peer-support",
        status_code=204,
        summary="Opt out: leave the waitlist or the cohort",
    )
    async def leave(patient_id: uuid.UUID, access: PeerSupportWrite) -> None:
        async with access as uow:
            await cohorts.leave(uow, patient_id)

    @router.get(
        "/patients/{patient_id}/cohort",
        summary="My cohort: handles and session times",
        response_model=None,
        responses={200: {"model": MyCohortOut}},
    )
    async def my_cohort(patient_id: uuid.UUID, access: PeerSupportRead) -> dict[str, Any]:
        async with access as uow:
            return await views.my_cohort(uow, patient_id)

    @router.post(
        "/patients/{patient_id}/placement-override",
        status_code=204,
        summary="Allow placement while a RED episode is open (a clinician on the panel)",
    )
    async def override(
        patient_id: uuid.UUID,
        body: OverrideIn,
        principal: CurrentPrincipal,
        access: PlacementWrite,
        idem: Idempotent,
    ) -> None:
        async with access as uow:
            await cohorts.override_red(uow, patient_id, principal.subject, body.reason_code)
            await idem.record(uow, None, status.HTTP_204_NO_CONTENT)

    @router.get(
        "/patients/{patient_id}/placement",
        response_model=PlacementOut,
        summary="The patient's placement: waiting or placed (a clinician on the panel)",
    )
    async def placement_of(patient_id: uuid.UUID, access: PlacementRead) -> PlacementOut:
        async with access as uow:
            found = await views.placement_of(uow, patient_id)
        return PlacementOut(**found)

    @router.get(
        "/moderators",
        response_model=list[ModeratorOut],
        responses=paginated(list[ModeratorOut], "By subject."),
        summary="List moderators",
    )
    async def list_moderators(
        principal: CurrentPrincipal,
        page: PageQuery,
        request: Request,
        response: Response,
        active: Annotated[
            bool | None, Query(description="Only active (true) or deactivated (false) ones.")
        ] = None,
    ) -> list[ModeratorOut]:
        require_admin(principal, ADMIN_SCOPE)
        async with runtime.uow() as uow:
            rows, following = await moderators.moderators_list(uow, page, active=active)
        link_next(request, response, following)
        return [ModeratorOut(**r) for r in rows]

    @router.post(
        "/moderators/{subject}/deactivate",
        status_code=204,
        summary="Deactivate a moderator: keeps their cohorts, is given no new one",
    )
    async def deactivate_moderator(
        subject: Subject, principal: CurrentPrincipal, idem: Idempotent
    ) -> None:
        require_admin(principal, ADMIN_SCOPE)
        async with runtime.uow() as uow:
            await idem.claim(uow)
            await moderators.set_moderator_active(uow, subject, False, principal.subject)
            await idem.record(uow, None, status.HTTP_204_NO_CONTENT)
            await uow.commit()

    @router.post("/moderators/{subject}/activate", status_code=204, summary="Reactivate")
    async def activate_moderator(
        subject: Subject, principal: CurrentPrincipal, idem: Idempotent
    ) -> None:
        require_admin(principal, ADMIN_SCOPE)
        async with runtime.uow() as uow:
            await idem.claim(uow)
            await moderators.set_moderator_active(uow, subject, True, principal.subject)
            await idem.record(uow, None, status.HTTP_204_NO_CONTENT)
            await uow.commit()

    @router.delete(
        "/moderators/{subject}",
        response_model=RemovedOut,
        summary="Remove a moderator; their cohorts go to other active moderators (409 if none)",
    )
    async def remove_moderator(subject: Subject, principal: CurrentPrincipal) -> RemovedOut:
        require_admin(principal, ADMIN_SCOPE)
        async with runtime.uow() as uow:
            moved = await moderators.remove_moderator(uow, subject)
            await uow.commit()
        return RemovedOut(cohorts_handed_over=moved)

    @router.put("/moderators/{subject}", status_code=204, summary="Register a moderator")
    async def put_moderator(
        subject: Subject, body: ModeratorIn, principal: CurrentPrincipal
    ) -> None:
        require_admin(principal, ADMIN_SCOPE)
        async with runtime.uow() as uow:
            await moderators.set_moderator(
                uow, subject, body.languages, body.max_cohorts, principal.subject
            )
            await uow.commit()

    @router.get(
        "/moderators/{subject}/cohorts",
        summary="A moderator's rosters",
        response_model=None,
        responses=paginated(list[RosterCohortOut]),
    )
    async def roster(
        subject: Subject,
        principal: CurrentPrincipal,
        page: PageQuery,
        request: Request,
        response: Response,
        state: Annotated[
            Literal["active", "closed", "all"],
            Query(alias="status", description="active (default), closed, or all."),
        ] = "active",
        since: Annotated[
            PlausibleAwareDatetime | None, Query(description="Formed at or after (ISO 8601).")
        ] = None,
        until: Annotated[
            PlausibleAwareDatetime | None, Query(description="Formed before (ISO 8601).")
        ] = None,
    ) -> list[dict[str, Any]]:
        # The roster names patients and their stage group (clinical): a clinician's, never ops'
        # (not even holding the scope).
        is_self = principal.role is Role.CLINICIAN and principal.subject == subject
        is_admin = principal.role is Role.CLINICIAN and principal.has_scope(ADMIN_SCOPE)
        if not (is_self or is_admin):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the moderator only")
        async with runtime.uow() as uow:
            rows, following = await views.roster(
                uow, subject, page, status=state, since=since, until=until
            )
            await uow.audit(
                actor=principal.subject,
                actor_role=str(principal.role),
                action="read",
                resource="cohort-roster",
                patient_id=None,
            )
            await uow.commit()
        link_next(request, response, following)
        return rows

    return [name_operations(router, OPERATION_IDS)]
