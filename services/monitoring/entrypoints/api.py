"""Monitoring's HTTP API, under ``/api/monitoring``."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from services.chassis.auth import CurrentPrincipal
from services.chassis.dates import PlausibleAwareDatetime
from services.chassis.entrypoint import PatientAccess, patient_access
from services.chassis.errors import FieldRefusal
from services.chassis.openapi import SVG_BODY, name_operations
from services.chassis.pagination import SINCE_DOC, UNTIL_DOC, PageQuery, link_next
from services.chassis.runtime import ServiceRuntime
from services.monitoring.adapters.trend_chart import trend_to_svg
from services.monitoring.domain.model import InvalidReport
from services.monitoring.entrypoints import episodes_api
from services.monitoring.entrypoints.episodes_api import ReasonOut
from services.monitoring.entrypoints.fhir_views import (
    fhir_paginated,
    fhir_reports,
)
from services.monitoring.service_layer import report_rows, reports
from services.monitoring.service_layer.trends import trend

RED_FLAGS = "seizure, delirium, hallucinations, self_harm_thoughts, fall_or_injury"
Instrument = Literal["ciwa-b", "bwsq", "phq-9", "gad-7"]
# Answers, red flags, orientation and pulse are checked one by one in the domain (``intake``), not
# here: a mistyped answer must not refuse the red flag beside it. Any JSON scalar is accepted
# (bounded); what is not valid is refused item by item and named in ``refused_items``.
Scalar = StrictBool | StrictInt | StrictFloat | Annotated[StrictStr, Field(max_length=100)] | None
Key = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class SymptomReportIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "instrument": "gad-7",
                    "instrument_version": "1",
                    "answers": {f"item_{i}": 1 for i in range(1, 8)},
                    "red_flags": [],
                    "pulse_bpm": 84,
                }
            ]
        },
    )

    instrument: Instrument = Field(description="The questionnaire: ciwa-b, gad-7, phq-9 ...")
    instrument_version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}$")] = Field(
        "1", description="The questionnaire's version."
    )
    oriented: Scalar = Field(
        default=None,
        description="Alert, oriented, obeys commands? Required for CIWA-B (without it CIWA-B is "
        "not scored). false, for any instrument, is a failed orientation gate: RED at once, and "
        "CIWA-B is not scored.",
    )
    answers: dict[Key, Scalar] = Field(
        default_factory=dict,
        max_length=40,
        description="Item code -> integer answer; ranges per item. An unknown item, a missing "
        "item or a value that is not an integer in range is refused (refused_items) and the "
        "instrument is not scored, but its red items (PHQ-9 item_9, BWSQ hallucinations) and "
        "the report's red flags still escalate.",
    )
    red_flags: list[Scalar] = Field(
        default_factory=list,
        max_length=10,
        description=f"Red-flag codes ({RED_FLAGS}); an unknown code is refused on its own.",
    )
    pulse_bpm: Scalar = Field(
        default=None,
        description="Optional vitals: an integer in the plausible range (20..250, data); "
        "outside it the pulse is refused on its own.",
    )


class RefusedItemOut(BaseModel):
    instrument: str | None = Field(description="null for red_flags and pulse_bpm")
    item: str = Field(description="The item code, or oriented, answers, red_flags, pulse_bpm")
    reason: str = Field(description="Why it was refused; never the value sent.")


class SymptomReportOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "report_id": "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8",
                    "total_score": 7,
                    "band": "mild",
                    "method": "sum",
                    "severity": None,
                    "reasons": [],
                    "safety_accepted": True,
                    "refused_items": [],
                    "replayed": False,
                }
            ]
        }
    )

    report_id: uuid.UUID = Field(description="The stored report's id.")
    total_score: int = Field(description="0 when the instrument was not scored (band not_scored)")
    band: str = Field(description="The score's band (minimal, mild ...; not_scored).")
    method: str = Field(description="How the total was scored (the instrument's method).")
    severity: Literal["RED", "AMBER"] | None = Field(
        description="RED or AMBER when the report opened or raised an episode; null otherwise."
    )
    reasons: list[ReasonOut] = Field(
        description="Why it escalated (codes with the value and threshold)."
    )
    safety_accepted: bool = Field(
        description="Always true in a 2xx: the red flags, orientation answer, red items and "
        "pulse that were valid are recorded and escalated, whatever else was refused."
    )
    refused_items: list[RefusedItemOut] = Field(
        description="Items refused (not stored, not scored); empty when everything was valid."
    )
    replayed: bool = Field(description="true (status 200) when this is an Idempotency-Key replay.")


class TrendPointOut(BaseModel):
    at: datetime = Field(description="When the report was submitted.")
    total: int = Field(description="Its total score.")
    band: str = Field(description="Its band.")
    severity: str | None = Field(description="RED or AMBER if it escalated.")


class TrendOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "instrument": "ciwa-b",
                    "points": [
                        {
                            "at": "2026-12-01T09:00:00Z",
                            "total": 12,
                            "band": "mild",
                            "severity": None,
                        }
                    ],
                    "dose_steps": ["2026-11-30"],
                    "thresholds": {"AMBER": 25, "RED": 45},
                }
            ]
        }
    )

    instrument: str = Field(description="The instrument charted.")
    points: list[TrendPointOut] = Field(description="Its reports, oldest first.")
    dose_steps: list[date] = Field(description="Dates dose steps took effect.")
    thresholds: dict[str, int] = Field(description="AMBER/RED totals for this patient.")


class ReportSummary(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8",
                    "instrument": "gad-7",
                    "total_score": 7,
                    "band": "mild",
                    "severity": None,
                    "reported_at": "2026-12-01T09:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID = Field(description="The report's id.")
    instrument: str = Field(description="gad-7, phq-9, ciwa-b ...")
    total_score: int = Field(description="The instrument's total (0: not scored).")
    band: str = Field(description="The score's band.")
    severity: str | None = Field(description="RED or AMBER if it escalated; null otherwise.")
    reported_at: datetime = Field(description="When it was submitted.")


# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "POST /patients/{patient_id}/symptom-reports": "submitSymptomReport",
    "GET /patients/{patient_id}/symptom-reports": "listSymptomReports",
    "GET /patients/{patient_id}/trends": "getSymptomTrends",
}


# The submission's use case commits itself (it may replay a key used concurrently).
ReportCreate = Annotated[PatientAccess, Depends(patient_access("create", "symptom_report"))]
ReportRead = Annotated[PatientAccess, Depends(patient_access("read", "symptom_report"))]


def _key_reused(exc: reports.IdempotencyKeyReused) -> FieldRefusal:
    return FieldRefusal(["header", "Idempotency-Key"], exc.problem, "idempotency_key_reused")


def _invalid_report(exc: InvalidReport) -> FieldRefusal:
    return FieldRefusal(["body", *exc.field.split(".")], exc.problem, "invalid_report")


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["symptom reports"])

    @router.post(
        "/patients/{patient_id}/symptom-reports",
        status_code=status.HTTP_201_CREATED,
        response_model=SymptomReportOut,
        responses={
            201: {"description": "A new report: stored, announced and escalated."},
            200: {
                "model": SymptomReportOut,
                "description": "A replay: the Idempotency-Key was already used with the same "
                "body; the first report's result, nothing stored or escalated again.",
            },
            422: {
                "description": "The body cannot be read (no safety part), the instrument or "
                "version is unknown, or the Idempotency-Key was already used with a different "
                "body (loc [header, Idempotency-Key])."
            },
        },
    )
    async def submit(
        patient_id: uuid.UUID,
        body: SymptomReportIn,
        principal: CurrentPrincipal,
        access: ReportCreate,
        response: Response,
        # An empty key is no key (the IETF draft requires one character at least): it would be
        # stored, yet never looked up, and a second empty key then hit the unique index (a 500).
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=100)] = None,
    ) -> SymptomReportOut:
        async with access as uow:
            try:
                result = await reports.submit_report(
                    reports.SubmitReport(
                        patient_id=patient_id,
                        instrument=body.instrument,
                        instrument_version=body.instrument_version,
                        answers=body.answers,
                        red_flags=tuple(body.red_flags),
                        oriented=body.oriented,
                        submitted_by=principal.subject,
                        idempotency_key=idempotency_key,
                        pulse_bpm=body.pulse_bpm,
                        fingerprint=reports.body_fingerprint(body.model_dump(mode="json")),
                    ),
                    uow,
                )
            except reports.IdempotencyKeyReused as exc:
                raise _key_reused(exc) from None
            except InvalidReport as exc:
                raise _invalid_report(exc) from None
        if result.replayed:
            response.status_code = status.HTTP_200_OK
        return SymptomReportOut(
            report_id=result.report_id,
            total_score=result.total_score,
            band=result.band,
            method=result.method,
            severity=result.severity,
            reasons=[ReasonOut(**r) for r in result.reasons],
            safety_accepted=True,
            refused_items=[RefusedItemOut(**r) for r in result.refused_items],
            replayed=result.replayed,
        )

    @router.get(
        "/patients/{patient_id}/symptom-reports",
        response_model=list[ReportSummary],
        responses=fhir_paginated(list[ReportSummary]),
    )
    async def list_reports(
        patient_id: uuid.UUID,
        access: ReportRead,
        page: PageQuery,
        request: Request,
        response: Response,
        fmt: Annotated[Literal["json", "fhir"], Query(alias="format")] = "json",
        since: Annotated[PlausibleAwareDatetime | None, Query(description=SINCE_DOC)] = None,
        until: Annotated[PlausibleAwareDatetime | None, Query(description=UNTIL_DOC)] = None,
    ) -> Any:
        """Newest first; ``format=fhir``: the same page as a searchset Bundle."""
        async with access as uow:
            rows, following = await report_rows.report_page(
                uow, patient_id, page, full=fmt == "fhir", since=since, until=until
            )
        if fmt == "fhir":  # QuestionnaireResponses and score Observations (searchset)
            fhir = fhir_reports(patient_id, rows)
            link_next(request, fhir, following)
            return fhir
        link_next(request, response, following)
        return [ReportSummary(**r) for r in rows]

    @router.get(
        "/patients/{patient_id}/trends",
        response_model=TrendOut,
        summary="Scores over time with dose steps marked (JSON, or an SVG chart)",
        responses={200: {"content": {"image/svg+xml": SVG_BODY}}},
    )
    async def trends(
        patient_id: uuid.UUID,
        access: ReportRead,
        instrument: Instrument = "ciwa-b",
        fmt: Annotated[Literal["json", "svg"], Query(alias="format")] = "json",
    ) -> Any:
        async with access as uow:
            found = await trend(uow, patient_id, instrument)
        if fmt == "svg":
            return Response(trend_to_svg(found), media_type="image/svg+xml")
        return TrendOut(
            instrument=found.instrument,
            points=[
                TrendPointOut(at=p.at, total=p.total, band=p.band, severity=p.severity)
                for p in found.points
            ],
            dose_steps=list(found.dose_steps),
            thresholds={level: at for level, at in found.thresholds},
        )

    name_operations(router, OPERATION_IDS)  # before the episodes' routes, named in their module
    router.include_router(episodes_api.router(runtime))
    return [router]
