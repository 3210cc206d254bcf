"""Escalation episodes and per-patient rule thresholds, under ``/api/monitoring``.

A clinician sees the open episodes of the patients on their panel and resolves them with a
resolution code and an optional note (the note stays in monitoring; events carry codes only).
Every access to a patient's episodes or thresholds is authorized and audited.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.chassis.auth import CurrentPrincipal, Role, authorize_patient_access, require_role
from services.chassis.dates import PlausibleAwareDatetime
from services.chassis.entrypoint import CLINICIAN, PatientAccess, patient_access
from services.chassis.errors import FieldRefusal
from services.chassis.idempotency import Idempotent
from services.chassis.openapi import name_operations
from services.chassis.pagination import SINCE_DOC, UNTIL_DOC, PageQuery, link_next, paginated
from services.chassis.runtime import ServiceRuntime
from services.chassis.text import FreeText
from services.monitoring.domain.episodes import Episode
from services.monitoring.domain.model import InvalidReport
from services.monitoring.entrypoints.fhir_views import fhir_flags, fhir_paginated
from services.monitoring.service_layer import episodes, thresholds

ReasonCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]


class ReasonOut(BaseModel):
    code: str = Field(
        description="What triggered: band:<instrument>, red_flag:<code>, pulse:above ..."
    )
    instrument: str | None = Field(
        None, description="The instrument, if the reason is a score or an item."
    )
    value: float | None = Field(
        None, description="The value seen (a total, an item's answer, a pulse)."
    )
    threshold: float | None = Field(None, description="The threshold it met.")


class EpisodeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9b2e4c1a-7f3d-4a6b-8c9d-0e1f2a3b4c5d",
                    "patient_id": "5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
                    "family": "withdrawal",
                    "severity": "AMBER",
                    "status": "open",
                    "opened_at": "2026-12-01T09:00:00Z",
                    "updated_at": "2026-12-02T09:00:00Z",
                    "reports": 2,
                    "reasons": [
                        {
                            "code": "band:ciwa-b",
                            "instrument": "ciwa-b",
                            "value": 27.0,
                            "threshold": 25.0,
                        }
                    ],
                    "acknowledged_at": None,
                    "resolved_at": None,
                    "resolved_by": None,
                    "resolution": None,
                }
            ]
        }
    )

    id: uuid.UUID = Field(description="The episode's id.")
    patient_id: uuid.UUID = Field(description="The patient.")
    family: str = Field(description="safety | withdrawal | mood | engagement")
    severity: Literal["RED", "AMBER"] = Field(description="RED or AMBER (the highest reached).")
    status: Literal["open", "resolved"] = Field(description="open or resolved.")
    opened_at: datetime = Field(description="When it opened.")
    updated_at: datetime = Field(description="When a report last changed it.")
    reports: int = Field(description="Reports (or missed check-ins) folded into the episode.")
    reasons: list[ReasonOut] = Field(description="The latest report's reasons.")
    acknowledged_at: datetime | None = Field(description="When a clinician acknowledged its page.")
    resolved_at: datetime | None = Field(description="When it was resolved.")
    resolved_by: str | None = Field(description="The resolving clinician's subject.")
    resolution: str | None = Field(
        description="resume_taper | keep_held | referred | no_action_needed."
    )

    @classmethod
    def of(cls, e: Episode) -> EpisodeOut:
        return cls(
            id=e.id,
            patient_id=e.patient_id,
            family=e.family,
            severity=e.severity.value,
            status=e.status.value,
            opened_at=e.opened_at,
            updated_at=e.updated_at,
            reports=e.source_count,
            reasons=[ReasonOut(**r.__dict__) for r in e.reasons],
            acknowledged_at=e.acknowledged_at,
            resolved_at=e.resolved_at,
            resolved_by=e.resolved_by,
            resolution=e.resolution,
        )


class ResolveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"resolution": "resume_taper"}]}
    )

    resolution: Literal["resume_taper", "keep_held", "referred", "no_action_needed"] = Field(
        description="resume_taper also lifts the taper hold monitoring caused (refused while "
        "another episode of the patient is open)."
    )
    note: FreeText | None = Field(
        default=None, max_length=2000, description="Kept in monitoring only."
    )


class ThresholdsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"thresholds": {"band:ciwa-b:amber": 25}, "reason_code": "clinician"}]
        },
    )

    thresholds: dict[str, Annotated[int, Field(ge=0, le=1000)]] = Field(
        max_length=20,
        examples=[{"band:ciwa-b:amber": 25}],
        description="Rule key (band:<instrument>:<level>) -> the patient's threshold.",
    )
    reason_code: ReasonCode = Field(description="Why (a code, never free text).")


class ThresholdsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "thresholds": {"band:ciwa-b:amber": 25},
                    "set_by": "dr-panel",
                    "reason_code": "clinician",
                    "set_at": "2026-12-01T09:00:00Z",
                }
            ]
        }
    )

    thresholds: dict[str, int] = Field(description="Rule key -> the patient's own threshold.")
    set_by: str | None = Field(description="Who set them (null: defaults).")
    reason_code: str | None = Field(description="Why they were set.")
    set_at: datetime | None = Field(description="When.")


def _loc(field: str) -> list[str]:
    return ["body", *field.split(".", 1)]  # "thresholds.<key>": the key may hold dots or colons


# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "GET /episodes": "listPanelEpisodes",
    "GET /patients/{patient_id}/episodes": "listPatientEpisodes",
    "POST /patients/{patient_id}/episodes/{episode_id}/resolve": "resolveEpisode",
    "PUT /patients/{patient_id}/rule-thresholds": "setRuleThresholds",
    "GET /patients/{patient_id}/rule-thresholds": "getRuleThresholds",
}


def _episode_filter(
    state: Annotated[
        Literal["open", "resolved", "all"],
        Query(alias="status", description="open (default), resolved, or all: the history."),
    ] = "open",
    since: Annotated[PlausibleAwareDatetime | None, Query(description=SINCE_DOC)] = None,
    until: Annotated[PlausibleAwareDatetime | None, Query(description=UNTIL_DOC)] = None,
) -> episodes.EpisodeFilter:
    """Opened in [since, until)."""
    return episodes.EpisodeFilter(status=state, since=since, until=until)


EpisodeFilterQuery = Annotated[episodes.EpisodeFilter, Depends(_episode_filter)]

# A patient's episodes and rule thresholds (chassis/entrypoint.py): writes are the clinician's.
EpisodeRead = Annotated[PatientAccess, Depends(patient_access("read", "episode"))]
EpisodeUpdate = Annotated[
    PatientAccess,
    Depends(patient_access("update", "episode", roles=CLINICIAN, commit=True, idempotent=True)),
]
ThresholdsRead = Annotated[PatientAccess, Depends(patient_access("read", "rule_thresholds"))]
ThresholdsUpdate = Annotated[
    PatientAccess,
    Depends(patient_access("update", "rule_thresholds", roles=CLINICIAN, commit=True)),
]


def router(runtime: ServiceRuntime) -> APIRouter:
    r = APIRouter(tags=["episodes"])

    @r.get(
        "/episodes",
        response_model=list[EpisodeOut],
        responses=paginated(list[EpisodeOut]),
        summary="Episodes of the patients on my panel, open ones unless asked (clinician)",
    )
    async def panel(
        principal: CurrentPrincipal,
        page: PageQuery,
        request: Request,
        response: Response,
        wanted: EpisodeFilterQuery,
    ) -> list[EpisodeOut]:
        require_role(principal, Role.CLINICIAN)
        async with runtime.uow() as uow:
            found, following = await episodes.episode_page(
                uow, sorted(principal.panel), wanted, page
            )
            for patient in sorted({e.patient_id for e in found}):  # who saw whose episodes
                await authorize_patient_access(
                    uow, principal, patient, action="read", resource="episode", request=request
                )
        link_next(request, response, following)
        return [EpisodeOut.of(e) for e in found]

    @r.get(
        "/patients/{patient_id}/episodes",
        response_model=list[EpisodeOut],
        summary="A patient's episodes, open ones unless asked (the patient, or a clinician on "
        "their panel)",
        responses=fhir_paginated(list[EpisodeOut]),
    )
    async def of_patient(
        patient_id: uuid.UUID,
        access: EpisodeRead,
        page: PageQuery,
        request: Request,
        response: Response,
        wanted: EpisodeFilterQuery,
        fmt: Annotated[Literal["json", "fhir"], Query(alias="format")] = "json",
    ) -> Any:
        """Newest first; ``format=fhir``: the same page, each episode a Flag (searchset)."""
        async with access as uow:
            found, following = await episodes.episode_page(uow, [patient_id], wanted, page)
        if fmt == "fhir":  # each episode as a Flag (searchset)
            flags = fhir_flags(patient_id, found)
            link_next(request, flags, following)
            return flags
        link_next(request, response, following)
        return [EpisodeOut.of(e) for e in found]

    @r.post(
        "/patients/{patient_id}/episodes/{episode_id}/resolve",
        response_model=EpisodeOut,
        summary="Resolve an episode (clinician): EscalationResolved stops paging",
    )
    async def resolve(
        patient_id: uuid.UUID,
        episode_id: uuid.UUID,
        body: ResolveIn,
        principal: CurrentPrincipal,
        access: EpisodeUpdate,
        idem: Idempotent,
    ) -> EpisodeOut:
        async with access as uow:
            episode = await episodes.resolve(
                episodes.ResolveEpisode(
                    patient_id, episode_id, principal.subject, body.resolution, body.note
                ),
                uow,
            )
            out = EpisodeOut.of(episode)
            await idem.record(uow, out)
        return out

    @r.put(
        "/patients/{patient_id}/rule-thresholds",
        response_model=ThresholdsOut,
        summary="Set this patient's rule thresholds (clinician); safety rules are not overridable",
    )
    async def set_thresholds(
        patient_id: uuid.UUID,
        body: ThresholdsIn,
        principal: CurrentPrincipal,
        access: ThresholdsUpdate,
    ) -> ThresholdsOut:
        async with access as uow:
            try:
                saved = await thresholds.set_thresholds(
                    uow, patient_id, body.thresholds, principal.subject, body.reason_code
                )
            except InvalidReport as exc:
                raise FieldRefusal(
                    ["body", *exc.field.split(".", 1)], exc.problem, "rule"
                ) from None
        return ThresholdsOut(**saved)

    @r.get(
        "/patients/{patient_id}/rule-thresholds",
        response_model=ThresholdsOut,
        summary="This patient's rule thresholds (empty: the defaults apply)",
    )
    async def get_thresholds(patient_id: uuid.UUID, access: ThresholdsRead) -> ThresholdsOut:
        async with access as uow:
            saved = await thresholds.get_thresholds(uow, patient_id)
        return ThresholdsOut(**saved)

    return name_operations(r, OPERATION_IDS)
