"""``GET /api/scheduler/reference/drugs`` (issue 18 part 8): every drug code the request
validators accept is listed with its products, and only those; the list is built from the
domain data, so a drug added there is served (and accepted) without touching the endpoint."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.scheduler.domain.planning import (
    equivalence_v1,
    formulations_v1,
    makeable,
    planning_reference_v1,
)
from services.scheduler.domain.planning import reference as planning_data
from services.scheduler.entrypoints.plans_api import PlanPreviewIn
from tests.unit.scheduler.support import auth
from tests.unit.scheduler.test_plan_lifecycle import BODY

URL = "/api/scheduler/reference/drugs"


def accepted_by_the_validator(drug: str) -> bool:
    """Whether a plan's body naming ``drug`` passes the drug check (other fields aside)."""
    try:
        PlanPreviewIn.model_validate({**BODY, "drug": drug})
    except ValidationError as exc:
        return not any(e["loc"] == ("drug",) for e in exc.errors())
    return True


async def catalogue(runtime: ServiceRuntime, client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get(URL, headers=auth(runtime, Role.PATIENT, patient_id=str(uuid.uuid4())))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def clear_caches() -> None:
    for cached in (equivalence_v1, formulations_v1, planning_reference_v1):
        cached.cache_clear()


@pytest.fixture
def extra_drug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The domain data with one more drug and product, as a new data version would ship it."""
    load: Callable[[str], dict[str, Any]] = planning_data._load

    def with_extra(name: str) -> dict[str, Any]:
        raw = copy.deepcopy(load(name))
        if name == "equivalence.v1.json":
            raw["drugs"]["newazepam"] = {**raw["drugs"]["diazepam"], "half_life_class": "short"}
        if name == "formulations.v1.json":
            product = {"code": "newazepam_tab_3mg", "drug": "newazepam", "kind": "tablet"}
            raw["formulations"].append({**product, "strength_mg": "3", "scored": False})
        return raw

    monkeypatch.setattr(planning_data, "_load", with_extra)
    clear_caches()
    yield
    monkeypatch.undo()
    clear_caches()


async def test_every_accepted_drug_is_listed_and_only_those(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    body = await catalogue(runtime, client)
    listed = [d["code"] for d in body["drugs"]]
    assert listed == sorted(listed)
    candidates = {*listed, *equivalence_v1().drug_codes, "not_a_drug", "diazepam2"}
    assert {c for c in candidates if accepted_by_the_validator(c)} == set(listed)
    assert set(body["equivalence_columns"]) >= {body["default_equivalence_column"]}


async def test_every_product_the_planner_knows_is_listed_under_its_drug(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    body = await catalogue(runtime, client)
    listed = {p["code"]: d["code"] for d in body["drugs"] for p in d["products"]}
    known = formulations_v1()
    assert listed == {f.code: f.drug for f in known.formulations}
    diazepam = next(d for d in body["drugs"] if d["code"] == "diazepam")
    tab_2mg = next(p for p in diazepam["products"] if p["code"] == "diazepam_tab_2mg")
    assert tab_2mg["units_mg"] == ["2", "1"]  # scored: a whole or a half, never a quarter
    for drug in body["drugs"]:
        for p in drug["products"]:
            product = known.get(p["code"])
            assert product is not None
            for unit in p["units_mg"]:  # each amount is makeable from the product alone
                assert makeable(Decimal(unit), [product])


async def test_a_drug_added_to_the_domain_is_listed_and_accepted(
    runtime: ServiceRuntime, client: httpx.AsyncClient, extra_drug: None
) -> None:
    body = await catalogue(runtime, client)
    [new] = [d for d in body["drugs"] if d["code"] == "newazepam"]
    assert new["half_life_class"] == "short"
    assert [p["code"] for p in new["products"]] == ["newazepam_tab_3mg"]
    assert accepted_by_the_validator("newazepam")


async def test_anyone_signed_in_reads_it_nobody_else(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    assert (await client.get(URL)).status_code == 401
    ops = await client.get(URL, headers=auth(runtime, Role.OPS))
    assert ops.status_code == 200
    again = await client.get(
        URL, headers={**auth(runtime, Role.OPS), "If-None-Match": ops.headers["etag"]}
    )
    assert again.status_code == 304
