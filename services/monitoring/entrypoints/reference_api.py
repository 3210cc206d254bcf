"""Monitoring's reference data, under ``/api/monitoring/reference`` (issue 18 part 8): the
questionnaires a symptom report answers (item codes, answer ranges, bands, red items) and the
red-flag codes it may carry. Built on each request from the instrument catalogue
(``domain/instruments``) and the rule set (``domain/rules``): what ``intake`` checks a report
against. Caching and who may read: chassis ``reference_data``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.chassis.auth import CurrentPrincipal
from services.chassis.openapi import name_operations
from services.chassis.reference_data import CACHED, cached_reference
from services.monitoring.domain import instruments
from services.monitoring.domain.instruments import InstrumentDefinition
from services.monitoring.domain.rules import rules_v2


class ItemOut(BaseModel):
    code: str = Field(description="The key of its answer in a report's answers.")
    min: int = Field(description="The lowest answer accepted (an integer).")
    max: int = Field(description="The highest answer accepted (an integer).")
    clinician_observed: bool = Field(
        description="Observed by a clinician, not self-reported: send all of the "
        "instrument's observed items or none."
    )
    text: str | None = Field(description="The item's wording where the reference gives it.")
    loinc: str | None = Field(description="Its LOINC code, where known.")


class BandOut(BaseModel):
    band: str = Field(description="The band a report's total falls in (minimal, mild ...).")
    min: int = Field(description="Lowest total in the band.")
    max: int = Field(description="Highest total in the band.")


class RedItemOut(BaseModel):
    item: str = Field(description="The item code.")
    at_or_above: int = Field(
        description="An answer at or above this is a red flag: RED at once, whatever the total."
    )


class QuestionnaireOut(BaseModel):
    code: str = Field(description="The report's instrument.")
    version: str = Field(description="The report's instrument_version.")
    items: list[ItemOut] = Field(description="Every item, in questionnaire order.")
    orientation_gate: bool = Field(
        description="The report must say oriented (true/false); false: not scored, RED."
    )
    total_min: int = Field(description="The lowest possible total.")
    total_max: int = Field(description="The highest possible total.")
    bands: list[BandOut] = Field(description="Its bands, in order; empty: no validated bands.")
    red_items: list[RedItemOut] = Field(description="Items whose answer is itself a red flag.")


class QuestionnairesOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "questionnaires": [
                        {
                            "code": "phq-9",
                            "version": "1",
                            "items": [
                                {
                                    "code": "item_9",
                                    "min": 0,
                                    "max": 3,
                                    "clinician_observed": False,
                                    "text": None,
                                    "loinc": "44260-8",
                                }
                            ],
                            "orientation_gate": False,
                            "total_min": 0,
                            "total_max": 27,
                            "bands": [{"band": "minimal", "min": 0, "max": 4}],
                            "red_items": [{"item": "item_9", "at_or_above": 1}],
                        }
                    ]
                }
            ]
        }
    )

    questionnaires: list[QuestionnaireOut] = Field(
        description="Every instrument and version a report may use."
    )


class RedFlagOut(BaseModel):
    code: str = Field(description="The code a report's red_flags lists.")
    description: str = Field(description="What it means, with its source (English).")


class RedFlagsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rules_version": "2",
                    "red_flags": [
                        {
                            "code": "seizure",
                            "description": "DSM-5 sedative withdrawal sign: grand mal seizure",
                        }
                    ],
                }
            ]
        }
    )

    rules_version: str = Field(description="Version of the escalation rules.")
    red_flags: list[RedFlagOut] = Field(
        description="Every red-flag code accepted, in code order; each escalates RED at once."
    )


def _questionnaire(d: InstrumentDefinition) -> QuestionnaireOut:
    return QuestionnaireOut(
        code=d.code,
        version=d.version,
        items=[
            ItemOut(
                code=i.code,
                min=i.min,
                max=i.max,
                clinician_observed=i.code in d.observed_items,
                text=i.text,
                loinc=i.loinc,
            )
            for i in d.items
        ],
        orientation_gate=d.orientation_gate,
        total_min=d.total_min,
        total_max=d.total_max,
        bands=[BandOut(band=b.name, min=b.low, max=b.high) for b in d.bands],
        red_items=[RedItemOut(item=r.item, at_or_above=r.at_or_above) for r in d.red_items],
    )


def questionnaires() -> QuestionnairesOut:
    catalogue = instruments.catalogue()
    return QuestionnairesOut(
        questionnaires=[_questionnaire(catalogue[key]) for key in sorted(catalogue)]
    )


def red_flags() -> RedFlagsOut:
    rules = rules_v2()
    return RedFlagsOut(
        rules_version=rules.version,
        red_flags=[
            RedFlagOut(code=code, description=rules.red_flag_notes.get(code, code))
            for code in sorted(rules.red_flags)
        ],
    )


OPERATION_IDS = {
    "GET /reference/questionnaires": "listQuestionnaires",
    "GET /reference/red-flags": "listRedFlags",
}


def router() -> APIRouter:
    api = APIRouter(tags=["reference data"])

    @api.get(
        "/reference/questionnaires",
        response_model=QuestionnairesOut,
        responses=CACHED,
        summary="Questionnaires: item codes, answer ranges, bands (any signed-in user)",
    )
    async def list_questionnaires(_: CurrentPrincipal, request: Request) -> Response:
        return cached_reference(request, questionnaires())

    @api.get(
        "/reference/red-flags",
        response_model=RedFlagsOut,
        responses=CACHED,
        summary="Red-flag codes a symptom report may carry (any signed-in user)",
    )
    async def list_red_flags(_: CurrentPrincipal, request: Request) -> Response:
        return cached_reference(request, red_flags())

    return name_operations(api, OPERATION_IDS)
