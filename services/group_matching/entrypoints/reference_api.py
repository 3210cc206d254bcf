"""Group matching's reference data, under ``/api/group-matching/reference`` (issue 18 part 8):
the languages cohorts run in and the time zones a participation may name. Built on each request
from what the request validators check (``placement.LANGUAGES``, ``placement.valid_timezone``
over this host's tz database). Caching and who may read: chassis ``reference_data``."""

from __future__ import annotations

from zoneinfo import available_timezones

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.chassis.auth import CurrentPrincipal
from services.chassis.openapi import name_operations
from services.chassis.reference_data import CACHED, cached_reference
from services.group_matching.domain import placement


class LanguagesOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"languages": ["de", "en", "es"]}]})

    languages: list[str] = Field(
        description="ISO 639-1 codes cohorts run in (a participation's language, a "
        "moderator's languages), sorted. Display names: the browser's Intl.DisplayNames."
    )


class TimezonesOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"timezones": ["America/Chicago", "Europe/Paris", "UTC"]}]}
    )

    timezones: list[str] = Field(
        description="IANA time-zone names a participation may name, sorted (Area/Location "
        "names and UTC; abbreviations such as EST are not accepted)."
    )


def languages() -> LanguagesOut:
    return LanguagesOut(languages=sorted(placement.LANGUAGES))


def timezones() -> TimezonesOut:
    return TimezonesOut(
        timezones=sorted(z for z in available_timezones() if placement.valid_timezone(z))
    )


OPERATION_IDS = {
    "GET /reference/languages": "listLanguages",
    "GET /reference/timezones": "listTimezones",
}


def router() -> APIRouter:
    api = APIRouter(tags=["reference data"])

    @api.get(
        "/reference/languages",
        response_model=LanguagesOut,
        responses=CACHED,
        summary="Languages cohorts run in (any signed-in user)",
    )
    async def list_languages(_: CurrentPrincipal, request: Request) -> Response:
        return cached_reference(request, languages())

    @api.get(
        "/reference/timezones",
        response_model=TimezonesOut,
        responses=CACHED,
        summary="Time zones a participation may name (any signed-in user)",
    )
    async def list_timezones(_: CurrentPrincipal, request: Request) -> Response:
        return cached_reference(request, timezones())

    return name_operations(api, OPERATION_IDS)
