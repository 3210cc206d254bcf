"""Explicit operationIds: what a generated client calls each operation (issue 18).

FastAPI derives an id from the function name and path (``read_api_scheduler_patients__…``), which
makes generated clients unreadable and changes whenever a path does. Each router instead names
its operations, verb first, in one table next to its routes; a route left out (or a name for no
route) fails when the app is built, so a new endpoint cannot ship with a derived id.
``tests/contract/test_openapi_quality.py`` checks that the names are verbs and unique across the
four services.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import ConfigDict


def name_operations(router: APIRouter, names: Mapping[str, str]) -> APIRouter:
    """Give every documented route of ``router`` its operationId from ``names``, keyed by
    ``"METHOD /path"`` as the route is declared (before the service's prefix)."""
    name_all([router], names)
    return router


def name_all(routers: Sequence[APIRouter], names: Mapping[str, str]) -> list[APIRouter]:
    """:func:`name_operations` for routers that share one table."""
    unnamed: list[str] = []
    used: set[str] = set()
    for route in (r for router in routers for r in router.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            key = f"{method} {route.path}"
            if key not in names:
                unnamed.append(key)
                continue
            route.operation_id = names[key]
            used.add(key)
    unknown = sorted(set(names) - used)
    if unnamed or unknown:
        raise ValueError(f"operationIds: no name for {unnamed}; no route for {unknown}")
    return list(routers)


def camel(name: str) -> str:
    """``group_matching`` -> ``GroupMatching``: a service's name inside an operationId."""
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


# An ``application/fhir+json`` answer: a FHIR R4 resource (a MedicationRequest, a Bundle ...),
# whose full schema is FHIR's own; clients use a FHIR library, so the type names the resource.
FHIR_RESOURCE: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 resource; its schema is FHIR's (https://hl7.org/fhir/R4/).",
    "properties": {
        "resourceType": {
            "type": "string",
            "description": "The FHIR resource type: Bundle, MedicationRequest ...",
        }
    },
    "required": ["resourceType"],
    "examples": [{"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}],
}


def without_placeholder_json(document: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``application/json: {}`` FastAPI adds to a 2xx that answers in another media
    type only (an HTML page): a client generator would otherwise expect an untyped JSON body."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                content = response.get("content") or {}
                if status.startswith("2") and len(content) > 1:
                    if content.get("application/json", {}).get("schema") == {}:
                        del content["application/json"]
    return document


# The example of a rendered (non-JSON) answer: a chart or a printable page, abridged.
SVG_BODY: dict[str, Any] = {
    "schema": {"type": "string"},
    "example": '<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 640 320">'
    "<title>Daily dose by week</title>…</svg>",
}
HTML_BODY: dict[str, Any] = {
    "schema": {"type": "string"},
    "example": '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    "<title>Your taper schedule</title></head><body>…</body></html>",
}


def stored_examples(
    module_file: str, name: str, *, extra: Literal["forbid"] | None = None
) -> ConfigDict:
    """A model's config (``extra``) with the example stored for ``name`` in
    ``openapi_examples.json`` beside ``module_file``: bodies captured from the real app (lists
    abridged), too long to keep in code."""
    path = Path(module_file).with_name("openapi_examples.json")
    example = json.loads(path.read_text())[name]
    return ConfigDict(extra=extra, json_schema_extra={"examples": [example]})
