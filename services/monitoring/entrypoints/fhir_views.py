"""``?format=fhir`` of monitoring's patient reads (issue 13, item 16): the same authorized,
audited reads rendered by ``adapters.fhir`` as ``application/fhir+json`` searchset Bundles."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse

from services.chassis.openapi import FHIR_RESOURCE
from services.chassis.pagination import paginated
from services.monitoring.adapters.fhir import episodes_bundle, reports_bundle
from services.monitoring.domain.episodes import Episode

FHIR_JSON = "application/fhir+json"
# The other 200 body of an endpoint that takes ``?format=fhir``.
FHIR_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {FHIR_JSON: {"schema": FHIR_RESOURCE}}}
}


def fhir_paginated(model: Any) -> dict[int | str, dict[str, Any]]:
    """A paged list (chassis headers) that ``format=fhir`` turns into a searchset Bundle."""
    page = paginated(model)[200]
    return {200: {**page, "content": FHIR_RESPONSE[200]["content"]}}


def fhir_reports(patient_id: uuid.UUID, rows: Sequence[Mapping[str, Any]]) -> JSONResponse:
    return JSONResponse(reports_bundle(rows, f"Patient/{patient_id}"), media_type=FHIR_JSON)


def fhir_flags(patient_id: uuid.UUID, found: Sequence[Episode]) -> JSONResponse:
    return JSONResponse(episodes_bundle(found, f"Patient/{patient_id}"), media_type=FHIR_JSON)
