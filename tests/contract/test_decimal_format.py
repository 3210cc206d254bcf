"""One decimal format in every HTTP body the four services send (issue 18, part 8).

Every decimal a response carries is ``services.chassis.decimals.DecimalStr``: a canonical plain
string (``"9"``, ``"0.375"``, ``"12.5"``) documented as ``format: decimal`` with its pattern.
Checked three ways, so a new field cannot slip past:

- the response models: every ``Decimal`` reachable from a route's response model (nested
  models, lists, dicts, optionals) is annotated ``DecimalStr``;
- the OpenAPI documents: every decimal-shaped property (a dose, a quantity, a fraction) reachable
  from a response body uses the shared schema, and every example value of one matches its pattern;
- the serializer: the three shapes the services used to send come out the same way.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from deploy.openapi_stats import documents
from services.chassis.decimals import (
    DECIMAL_FORMAT,
    DECIMAL_PATTERN,
    DECIMAL_SCHEMA,
    DecimalStr,
    canonical,
    canonical_json,
    is_decimal_str,
)
from tests.all_services import SERVICES, sqlite_runtime

# A property named like one of these is a decimal (doses, volumes, fractions, quantities).
DECIMAL_NAME = re.compile(r"(^|_)(mg|ml|fraction|quantity)(_|$)")


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return documents()


# --- the serializer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("9.0000", "9"),  # a NUMERIC(…, 4) column
        ("9.0", "9"),  # arithmetic
        ("9", "9"),
        ("0.375", "0.375"),
        ("12.50", "12.5"),
        ("1E+1", "10"),  # normalize() alone would send an exponent
        ("0.0000", "0"),
        ("-0", "0"),
        ("0.0001000", "0.0001"),
    ],
)
def test_every_shape_of_a_value_is_sent_the_same_way(given: str, sent: str) -> None:
    class Out(BaseModel):
        value: DecimalStr

    assert Out(value=Decimal(given)).model_dump_json() == f'{{"value":"{sent}"}}'
    assert re.fullmatch(DECIMAL_PATTERN, sent)


def test_the_three_shapes_of_the_issue_now_agree() -> None:
    assert {canonical(Decimal(v)) for v in ("9.0000", "9.0", "9")} == {"9"}
    assert canonical(Decimal("0.375")) == "0.375"


@pytest.mark.parametrize("bad", ["9.0", "09", "1E+1", "-0", "+1", "1.", ".5", "0.50"])
def test_the_pattern_refuses_what_is_not_canonical(bad: str) -> None:
    assert not re.fullmatch(DECIMAL_PATTERN, bad)


def test_a_non_finite_value_is_never_sent() -> None:
    with pytest.raises(ValueError, match="finite"):
        canonical(Decimal("NaN"))


# --- the response models --------------------------------------------------------------------


def _decimals(
    tp: Any, metadata: list[Any], where: str, seen: set[type]
) -> Iterator[tuple[str, bool]]:
    """Where ``tp`` holds a ``Decimal``, and whether it is annotated ``DecimalStr``."""
    if get_origin(tp) is Annotated:
        inner, *extra = get_args(tp)
        yield from _decimals(inner, [*metadata, *extra], where, seen)
    elif tp is Decimal:
        yield where, is_decimal_str(metadata)
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return
        seen.add(tp)
        for name, info in tp.model_fields.items():
            yield from _decimals(
                info.annotation, list(info.metadata), f"{tp.__name__}.{name}", seen
            )
    elif get_origin(tp) in (typing.Union, types.UnionType, list, dict, tuple, set, frozenset):
        for arg in get_args(tp):
            yield from _decimals(arg, metadata, where, seen)


def _plain_decimals(tp: Any, where: str = "") -> set[str]:
    return {w for w, shared in _decimals(tp, [], where, set()) if not shared}


def _api_routes(app: Any) -> Iterator[APIRoute]:
    """Every API route of ``app``, those under included routers too (FastAPI >= 0.16x keeps
    them nested; as tests/unit/test_authorization_matrix.py finds them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: flat
        routes: Any = app.routes
    else:
        routes = iter_route_contexts(app.routes)
    for route in routes:
        original = getattr(route, "original_route", route)
        if isinstance(original, APIRoute):
            yield original


def _response_models(route: APIRoute) -> Iterator[Any]:
    if route.response_model is not None:
        yield route.response_model
    for extra in (route.responses or {}).values():
        if "model" in extra:
            yield extra["model"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_decimal_of_a_response_model_is_sent_canonically(
    service: str, tmp_path: Path
) -> None:
    app = sqlite_runtime(service, tmp_path).app
    found = {
        hit
        for route in _api_routes(app)
        for model in _response_models(route)
        for hit in _decimals(model, [], route.path, set())
    }
    assert {where for where, shared in found if not shared} == set(), "use DecimalStr"
    if service == "scheduler":  # doses: the check sees them (it is not vacuous)
        assert {"DrugDoseOut.daily_dose_mg", "FillItemOut.mg_taken"} <= {w for w, _ in found}


def test_the_model_check_can_fail() -> None:
    class Loose(BaseModel):
        dose_mg: Decimal
        per_drug: dict[str, Decimal | None]
        fine: DecimalStr

    assert _plain_decimals(Loose) == {"Loose.dose_mg", "Loose.per_drug"}


# --- the OpenAPI documents ------------------------------------------------------------------


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _leaves(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The value schemas of a property: through optionals, arrays and maps."""
    if "anyOf" in schema:
        for branch in schema["anyOf"]:
            if branch.get("type") != "null":
                yield from _leaves(branch)
    elif schema.get("type") == "array" and "items" in schema:
        yield from _leaves(schema["items"])
    elif schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        yield from _leaves(schema["additionalProperties"])
    else:
        yield schema


def _is_shared(schema: dict[str, Any]) -> bool:
    return {k: schema.get(k) for k in ("type", "format", "pattern")} == {
        k: DECIMAL_SCHEMA[k] for k in ("type", "format", "pattern")
    }


def _is_decimal(name: str, leaf: dict[str, Any]) -> bool:
    return leaf.get("format") == DECIMAL_FORMAT or bool(
        DECIMAL_NAME.search(name) and leaf.get("type") in ("string", "number", "integer")
    )


def _reachable(doc: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The component schemas ``schema`` refers to, directly or not."""
    found: set[str] = set()
    todo = [schema]
    while todo:
        for ref in re.findall(r"#/components/schemas/([^\"']+)", repr(todo.pop())):
            if ref not in found:
                found.add(ref)
                todo.append(doc["components"]["schemas"][ref])
    return found


def _schema_problems(doc: dict[str, Any], name: str) -> Iterator[str]:
    """Decimal-shaped properties of a component schema not using the shared schema."""
    for prop_name, prop in (doc["components"]["schemas"][name].get("properties") or {}).items():
        for leaf in _leaves(prop):
            if _is_decimal(prop_name, leaf) and not _is_shared(leaf):
                yield f"{name}.{prop_name}: not the shared decimal schema"


def _example_problems(
    doc: dict[str, Any], schema: dict[str, Any], example: Any, where: str
) -> Iterator[str]:
    """Example values of decimal properties in ``example`` (an instance of ``schema``) that are
    not canonical."""
    schema = _resolve(doc, schema)
    if isinstance(example, list) and schema.get("type") == "array":
        for item in example:
            yield from _example_problems(doc, schema.get("items", {}), item, where)
        return
    if not isinstance(example, dict):
        return
    for name, prop in (schema.get("properties") or {}).items():
        if name not in example:
            continue
        for leaf in _leaves(prop):
            leaf = _resolve(doc, leaf)
            if _is_decimal(name, leaf):
                for text in _strings(example[name]):
                    if not re.fullmatch(DECIMAL_PATTERN, text):
                        yield f"{where}.{name}: example {text!r} is not canonical"
            elif "properties" in leaf:
                value = example[name]
                for item in value if isinstance(value, list) else [value]:
                    yield from _example_problems(doc, leaf, item, f"{where}.{name}")


def _problems(doc: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    names: set[str] = set()
    for where, media in _response_media(doc):
        names |= _reachable(doc, media["schema"])
        for example in [media.get("example"), *(media.get("examples") or {}).values()]:
            if isinstance(example, dict) and "value" in example and "examples" in media:
                example = example["value"]
            problems += _example_problems(doc, media["schema"], example, where)
    for name in sorted(names):
        problems += _schema_problems(doc, name)
        schema = doc["components"]["schemas"][name]
        for example in schema.get("examples") or []:
            problems += _example_problems(doc, schema, example, name)
    return problems


def _example_of(schema: dict[str, Any]) -> Any:
    examples = schema.get("examples")
    return examples[0] if isinstance(examples, list) and examples else None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _response_media(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                if not status.startswith("2"):
                    continue
                for media in (response.get("content") or {}).values():
                    if "schema" in media:
                        yield f"{method.upper()} {path}", media


@pytest.mark.parametrize("service", SERVICES)
def test_every_decimal_in_a_response_body_uses_the_shared_schema(
    docs: dict[str, dict[str, Any]], service: str
) -> None:
    assert _problems(docs[service]) == []


def test_the_document_check_can_fail() -> None:
    doc: dict[str, Any] = {
        "paths": {
            "/x": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Out"}}
                            }
                        }
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "Out": {
                    "type": "object",
                    "examples": [{"dose_mg": "9.0000", "ok_mg": "9"}],
                    "properties": {
                        "dose_mg": {"type": "string"},  # decimal-shaped, not the shared schema
                        "ok_mg": {"anyOf": [DECIMAL_SCHEMA, {"type": "null"}]},
                        "ratio": DECIMAL_SCHEMA,
                    },
                }
            }
        },
    }
    doc["components"]["schemas"]["Out"]["examples"][0]["ratio"] = "0.50"
    assert sorted(_problems(doc)) == [
        "Out.dose_mg: example '9.0000' is not canonical",
        "Out.dose_mg: not the shared decimal schema",
        "Out.ratio: example '0.50' is not canonical",
    ]


def test_a_stored_plans_free_form_decimals_follow_the_format() -> None:
    stored = {
        "administrations_mg": ["4.50", "4.0"],
        "equivalence": {"diazepam": "10.0000"},
        "pace": {"code": "standard", "step_fraction": "0.250"},
        "formulations": ["diazepam_tab_2mg"],
        "reason_code": "0",  # not under a decimal key: as it is
    }
    assert canonical_json(stored) == {
        "administrations_mg": ["4.5", "4"],
        "equivalence": {"diazepam": "10"},
        "pace": {"code": "standard", "step_fraction": "0.25"},
        "formulations": ["diazepam_tab_2mg"],
        "reason_code": "0",
    }
