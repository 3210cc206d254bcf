"""POST /api/scheduler/plans/preview through the real bootstrap (runtime not started: the
preview touches no database and no broker): auth, field-level 422s, JSON, FHIR and SVG."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from tests.plans import PLAN_BODY
from tests.runtimes import runtime_fixture

URL = "/api/scheduler/plans/preview"
TODAY = date(2026, 1, 5)

BODY: dict[str, Any] = {**PLAN_BODY, "start_on": TODAY.isoformat()}


# the preview touches no database: not migrated (the client comes from conftest.py)
runtime = runtime_fixture(
    "scheduler", migrate=False, settings={"kafka_bootstrap_servers": "127.0.0.1:9"}
)


def auth(runtime: ServiceRuntime, role: Role, **claims: Any) -> dict[str, str]:
    token = issue_dev_token(runtime.settings, subject="c", role=role, **claims)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN)


def body(**changes: Any) -> dict[str, Any]:
    return {**BODY, **changes}


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=BODY)
    assert r.status_code == 401


@pytest.mark.parametrize("role", [Role.PATIENT, Role.OPS])
async def test_patient_and_ops_are_403(
    runtime: ServiceRuntime, client: httpx.AsyncClient, role: Role
) -> None:
    claims = {"patient_id": uuid.uuid4()} if role is Role.PATIENT else {}
    r = await client.post(URL, json=BODY, headers=auth(runtime, role, **claims))
    assert r.status_code == 403


async def test_json_plan(client: httpx.AsyncClient, clinician: dict[str, str]) -> None:
    r = await client.post(URL, json=BODY, headers=clinician)
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["drug"] == plan["final_drug"] == "diazepam"
    assert plan["strategy"] == "proportional"
    assert plan["risk"]["category"] in {"low", "moderate", "high"}
    assert isinstance(plan["risk"]["reasons"], list)
    steps = plan["steps"]
    assert [s["number"] for s in steps] == list(range(1, len(steps) + 1))
    # the first step waits one interval (issue 13: never a cut on the start date unless asked)
    interval = plan["pace"]["interval_weeks"]
    assert steps[0]["effective_on"] == (TODAY + timedelta(weeks=interval)).isoformat()
    expected = (date.fromisoformat(steps[-1]["effective_on"]) - TODAY).days
    assert plan["expected_duration_days"] == expected
    assert len(plan["reference_duration_weeks"]) == 2
    first = steps[0]
    assert set(first) >= {
        "number",
        "effective_on",
        "kind",
        "administrations",
        "daily_dose_mg",
        "diazepam_eq_mg",
        "hold_weeks",
    }
    assert Decimal(first["daily_dose_mg"]) < 10
    doses = [Decimal(s["daily_dose_mg"]) for s in steps]
    assert doses == sorted(doses, reverse=True)
    assert set(plan["reference_versions"]) == {
        "equivalence",
        "formulations",
        "planning_defaults",
        "taper_bounds",
    }
    assert "ends_at_mg" in plan and "formulation_needs" in plan
    assert r.headers["content-type"].startswith("application/json")


async def test_formulation_need_is_reported(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    r = await client.post(
        URL, json=body(formulations=["diazepam_tab_2mg", "diazepam_tab_5mg"]), headers=clinician
    )
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["complete"] is False
    assert plan["formulation_needs"][0]["kind"] == "liquid"


async def test_fhir_format_validates(client: httpx.AsyncClient, clinician: dict[str, str]) -> None:
    r = await client.post(URL, params={"format": "fhir"}, json=BODY, headers=clinician)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    mr = MedicationRequest.model_validate(r.json())
    assert mr.status == "draft" and mr.intent == "order"
    assert mr.dosageInstruction and mr.dosageInstruction[0].sequence == 1


async def test_fhir_crossover_is_a_bundle(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    crossover = body(
        drug="alprazolam",
        administrations_mg=["0.5", "1"],
        formulations=["alprazolam_tab_0_5mg", "diazepam_tab_2mg", "diazepam_tab_5mg"],
        crossover_wanted=True,
    )
    r = await client.post(URL, params={"format": "fhir"}, json=crossover, headers=clinician)
    assert r.status_code == 200, r.text
    assert len(Bundle.model_validate(r.json()).entry or []) == 2


async def test_svg_format_parses(client: httpx.AsyncClient, clinician: dict[str, str]) -> None:
    r = await client.post(URL, params={"format": "svg"}, json=BODY, headers=clinician)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.text)
    assert root.get("role") == "img"


async def test_unknown_format_is_422(client: httpx.AsyncClient, clinician: dict[str, str]) -> None:
    r = await client.post(URL, params={"format": "pdf"}, json=BODY, headers=clinician)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "format"]


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"drug": "aspirin"}, ["body", "drug"]),
        ({"drug": "Not A Code!"}, ["body", "drug"]),
        ({"administrations_mg": ["0"]}, ["body", "administrations_mg", 0]),
        ({"administrations_mg": ["5", "5000"]}, ["body", "administrations_mg", 1]),
        ({"administrations_mg": ["900", "900"]}, ["body", "administrations_mg"]),
        ({"administrations_mg": []}, ["body", "administrations_mg"]),
        (  # formulations that cannot make the current dose
            {"administrations_mg": ["3.3"], "formulations": ["diazepam_tab_2mg"]},
            ["body", "administrations_mg"],
        ),
        ({"administrations_mg": ["2"], "formulations": ["diazepam_tab_10mg"]}, None),
        ({"formulations": ["no_such_product"]}, ["body", "formulations"]),
        ({"formulations": ["alprazolam_tab_0_5mg"]}, ["body", "formulations"]),
        ({"start_on": "2026-01-04"}, ["body", "start_on"]),
        ({"age": 121}, ["body", "age"]),
        ({"duration_weeks": -1}, ["body", "duration_weeks"]),
        ({"maintenance_mg": "20"}, ["body", "maintenance_mg"]),
        ({"pace": "reckless"}, ["body", "pace"]),
        ({"strategy": "cold_turkey"}, ["body", "strategy"]),
        ({"patient_name": "x"}, ["body", "patient_name"]),
        (
            {"equivalence_override": {"mg_equal_to_10mg_diazepam": "5", "reason_code": "Bad!"}},
            ["body", "equivalence_override", "reason_code"],
        ),
        ({"equivalence_column": "nope"}, ["body", "equivalence_column"]),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient,
    clinician: dict[str, str],
    changes: dict[str, Any],
    loc: list[Any] | None,
) -> None:
    r = await client.post(URL, json=body(**changes), headers=clinician)
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json()["detail"]]
    if loc is None:  # 2 mg from a 10 mg scored tablet cannot be made
        loc = ["body", "administrations_mg"]
    assert loc in locs, locs


async def test_override_with_reason_is_applied(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    override = {"mg_equal_to_10mg_diazepam": "10", "reason_code": "clinician_judgement"}
    r = await client.post(URL, json=body(equivalence_override=override), headers=clinician)
    assert r.status_code == 200, r.text
    assert "equivalence_override" in r.json()["notes"]
