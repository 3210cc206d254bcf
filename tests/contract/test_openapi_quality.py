"""The four services' OpenAPI documents stay usable by a frontend team (issue 18, part 1).

Figures come from ``deploy.openapi_stats`` (``python -m deploy.openapi_stats`` prints them): every
2xx typed, operationIds that are lowerCamelCase verbs and unique across the four services, every
operation tagged, every request and response body with an example, every property of every
schema described.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter

from deploy.openapi_stats import Stats, all_stats, documents, is_typed
from services.chassis.openapi import name_operations, without_placeholder_json


@pytest.fixture(scope="module")
def stats() -> dict[str, Stats]:
    return all_stats(documents())


def test_every_2xx_is_typed(stats: dict[str, Stats]) -> None:
    assert stats["total"].untyped == []
    assert stats["total"].typed_operations == stats["total"].operations


def test_operation_ids_are_unique_verbs(stats: dict[str, Stats]) -> None:
    assert stats["total"].non_verb_ids == []
    assert stats["total"].duplicate_ids == []


def test_every_operation_is_tagged(stats: dict[str, Stats]) -> None:
    assert stats["total"].untagged == []


def test_every_body_has_an_example(stats: dict[str, Stats]) -> None:
    assert stats["total"].without_example == []


def test_every_property_is_described(stats: dict[str, Stats]) -> None:
    assert stats["total"].undescribed == []


# --- the checks themselves can fail -------------------------------------------------------------

DOC: dict[str, Any] = {
    "components": {
        "schemas": {
            "Named": {"type": "object", "properties": {"id": {"type": "string"}}},
            "Bag": {"type": "object", "additionalProperties": True},
        }
    }
}


@pytest.mark.parametrize(
    ("schema", "typed"),
    [
        ({"$ref": "#/components/schemas/Named"}, True),
        ({"type": "array", "items": {"$ref": "#/components/schemas/Named"}}, True),
        ({"type": "string"}, True),
        ({}, False),
        ({"$ref": "#/components/schemas/Bag"}, False),
        ({"type": "array", "items": {"type": "object", "additionalProperties": True}}, False),
        ({"type": "object", "additionalProperties": {"type": "string"}}, False),
    ],
)
def test_what_counts_as_typed(schema: dict[str, Any], typed: bool) -> None:
    assert is_typed(DOC, schema) is typed


def test_a_route_without_an_operation_id_fails_the_build() -> None:
    router = APIRouter()

    @router.get("/named")
    async def named() -> None: ...

    @router.get("/forgotten")
    async def forgotten() -> None: ...

    with pytest.raises(ValueError, match="forgotten"):
        name_operations(router, {"GET /named": "getNamed"})
    with pytest.raises(ValueError, match="no route for"):
        name_operations(router, {"GET /named": "a", "GET /forgotten": "b", "GET /gone": "c"})


def test_an_html_only_200_documents_no_json() -> None:
    doc = {
        "paths": {
            "/page": {
                "get": {
                    "responses": {
                        "200": {"content": {"application/json": {"schema": {}}, "text/html": {}}}
                    }
                }
            }
        }
    }
    content = without_placeholder_json(doc)["paths"]["/page"]["get"]["responses"]["200"]
    assert list(content["content"]) == ["text/html"]
