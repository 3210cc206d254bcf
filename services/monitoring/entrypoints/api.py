"""Monitoring's HTTP API, under ``/api/monitoring``."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from services.chassis.auth import CurrentPrincipal, authorize_patient_access
from services.chassis.runtime import ServiceRuntime
from services.monitoring.adapters.trend_chart import trend_to_svg
from services.monitoring.domain.model import InvalidReport
from services.monitoring.entrypoints import episodes_api
from services.monitoring.entrypoints.episodes_api import ReasonOut
from services.monitoring.entrypoints.fhir_views import FHIR_RESPONSE, fhir_reports
from services.monitoring.service_layer import handlers, report_rows

RedFlag = Literal["seizure", "delirium", "hallucinations", "self_harm_thoughts", "fall_or_injury"]


Instrument = Literal["ciwa-b", "bwsq", "phq-9", "gad-7"]
ItemCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]


class SymptomReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instrument: Instrument
    instrument_version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}$")] = "1"
    oriented: bool | None = Field(
        default=None,
        description="CIWA-B only (required there): alert, oriented, obeys commands? If not, the "
        "report is not scored and escalates at once.",
    )
    answers: dict[ItemCode, StrictInt] = Field(
        default_factory=dict, max_length=40, description="Item code -> answer; ranges per item."
    )
    red_flags: list[RedFlag] = Field(default_factory=list, max_length=10)
    pulse_bpm: int | None = Field(default=None, ge=20, le=250, description="Optional vitals.")


class SymptomReportOut(BaseModel):
    report_id: uuid.UUID
    total_score: int
    band: str
    method: str
    severity: Literal["RED", "AMBER"] | None
    reasons: list[ReasonOut]
    replayed: bool


class TrendPointOut(BaseModel):
    at: datetime
    total: int
    band: str
    severity: str | None


class TrendOut(BaseModel):
    instrument: str
    points: list[TrendPointOut]
    dose_steps: list[date] = Field(description="Dates dose steps took effect.")
    thresholds: dict[str, int] = Field(description="AMBER/RED totals for this patient.")


class ReportSummary(BaseModel):
    id: uuid.UUID
    instrument: str
    total_score: int
    band: str
    severity: str | None
    reported_at: datetime


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["symptom reports"])

    @router.post(
        "/patients/{patient_id}/symptom-reports",
        status_code=status.HTTP_201_CREATED,
        response_model=SymptomReportOut,
    )
    async def submit(
        patient_id: uuid.UUID,
        body: SymptomReportIn,
        principal: CurrentPrincipal,
        request: Request,
        idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
    ) -> SymptomReportOut:
        async with runtime.uow() as uow:
            await authorize_patient_access(
                uow,
                principal,
                patient_id,
                action="create",
                resource="symptom_report",
                request=request,
            )
            try:
                result = await handlers.submit_report(
                    handlers.SubmitReport(
                        patient_id=patient_id,
                        instrument=body.instrument,
                        instrument_version=body.instrument_version,
                        answers=body.answers,
                        red_flags=tuple(body.red_flags),
                        oriented=body.oriented,
                        submitted_by=principal.subject,
                        idempotency_key=idempotency_key,
                        pulse_bpm=body.pulse_bpm,
                    ),
                    uow,
                )
            except InvalidReport as exc:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    detail=[
                        {
                            "loc": ["body", *exc.field.split(".")],
                            "msg": exc.problem,
                            "type": "invalid_report",
                        }
                    ],
                ) from None
        return SymptomReportOut(
            report_id=result.report_id,
            total_score=result.total_score,
            band=result.band,
            method=result.method,
            severity=result.severity,
            reasons=[ReasonOut(**r) for r in result.reasons],
            replayed=result.replayed,
        )

    @router.get(
        "/patients/{patient_id}/symptom-reports",
        response_model=list[ReportSummary],
        responses=FHIR_RESPONSE,
    )
    async def list_reports(
        patient_id: uuid.UUID,
        principal: CurrentPrincipal,
        request: Request,
        fmt: Annotated[Literal["json", "fhir"], Query(alias="format")] = "json",
    ) -> Any:
        async with runtime.uow() as uow:
            await authorize_patient_access(
                uow,
                principal,
                patient_id,
                action="read",
                resource="symptom_report",
                request=request,
            )
            if fmt == "fhir":  # QuestionnaireResponses and score Observations (searchset)
                return fhir_reports(patient_id, await report_rows.full_reports(uow, patient_id))
            rows = await handlers.list_reports(uow, patient_id)
        return [ReportSummary(**r) for r in rows]

    @router.get(
        "/patients/{patient_id}/trends",
        response_model=TrendOut,
        summary="Scores over time with dose steps marked (JSON, or an SVG chart)",
        responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}},
    )
    async def trends(
        patient_id: uuid.UUID,
        principal: CurrentPrincipal,
        request: Request,
        instrument: Instrument = "ciwa-b",
        fmt: Annotated[Literal["json", "svg"], Query(alias="format")] = "json",
    ) -> Any:
        async with runtime.uow() as uow:
            await authorize_patient_access(
                uow,
                principal,
                patient_id,
                action="read",
                resource="symptom_report",
                request=request,
            )
            found = await handlers.trend(uow, patient_id, instrument)
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

    router.include_router(episodes_api.router(runtime))
    return [router]
