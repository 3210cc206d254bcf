"""GET .../plans/{plan_id}/dispensing: JSON fills and FHIR dispenseRequest, clinician only,
audited, fill period validated naming the field."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest

from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from tests.unit.scheduler.support import auth, rows
from tests.unit.scheduler.test_plan_lifecycle import BASE, BODY, PATIENT, approve, draft


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, panel=[PATIENT])


async def test_fills_cover_the_plan_and_count_every_tablet(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    r = await client.get(f"{BASE}/plans/{plan['id']}/dispensing?fill_days=14", headers=clinician)
    assert r.status_code == 200, r.text
    body = r.json()
    fills = body["fills"]
    steps = plan["steps"]
    assert body["fill_days"] == 14 and fills[0]["fill_number"] == 1
    assert fills[0]["covers_from"] == steps[0]["effective_on"]
    # the plan ends at 0 mg: the last fill covers up to the day before that step
    last_day = date.fromisoformat(steps[-1]["effective_on"]) - timedelta(days=1)
    assert fills[-1]["covers_to"] == last_day.isoformat()
    for a, b in pairwise(fills):
        assert date.fromisoformat(b["covers_from"]) == date.fromisoformat(a["covers_to"]) + (
            timedelta(days=1)
        )
    # the mg dispensed over the plan = the mg its days consume (daily dose x days per step)
    consumed = Decimal(0)
    for s, nxt in pairwise(steps):
        days = (
            date.fromisoformat(nxt["effective_on"]) - date.fromisoformat(s["effective_on"])
        ).days
        consumed += Decimal(s["daily_dose_mg"]) * days
    taken = sum(Decimal(i["mg_taken"]) for f in fills for i in f["items"])
    assert taken == consumed
    first = fills[0]["items"]
    assert {i["unit"] for i in first} <= {"tablet", "mL"}
    assert all(Decimal(i["quantity"]) > 0 for i in first)
    audit = [a for a in await rows(runtime, "audit_log") if a["resource"] == "plan"]
    assert audit[-1]["outcome"] == "allowed" and audit[-1]["action"] == "read"


async def test_fhir_dispense_requests_validate_and_state_quantity_and_supply(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    await approve(client, clinician, plan["id"])
    r = await client.get(
        f"{BASE}/plans/{plan['id']}/dispensing?fill_days=28&format=fhir", headers=clinician
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    bundle: dict[str, Any] = r.json()
    Bundle.model_validate(bundle)
    entries = [e["resource"] for e in bundle["entry"]]
    for resource in entries:  # each one a valid R4 MedicationRequest on its own
        MedicationRequest.model_validate(resource)
    assert entries and all(m["status"] == "active" for m in entries)
    first = entries[0]
    assert first["subject"]["reference"] == f"Patient/{PATIENT}"
    assert first["groupIdentifier"]["value"] == f"urn:uuid:{plan['id']}"
    dr = first["dispenseRequest"]
    assert dr["expectedSupplyDuration"] == {
        "value": 28,
        "unit": "days",
        "system": "http://unitsofmeasure.org",
        "code": "d",
    }
    assert dr["quantity"]["system"] == "http://unitsofmeasure.org"
    assert dr["quantity"]["code"] in {"{tbl}", "mL"} and dr["quantity"]["value"] > 0
    assert dr["numberOfRepeatsAllowed"] == 0
    # the JSON view's first fill says the same quantities
    j = (await client.get(f"{BASE}/plans/{plan['id']}/dispensing", headers=clinician)).json()
    first_fill = [
        e for e in bundle["entry"] if "Fill 1," in e["resource"]["dosageInstruction"][0]["text"]
    ]
    assert sorted(
        Decimal(str(e["resource"]["dispenseRequest"]["quantity"]["value"])) for e in first_fill
    ) == sorted(Decimal(i["quantity"]) for i in j["fills"][0]["items"])


@pytest.mark.parametrize("days", ["6", "91", "x"])
async def test_a_fill_period_outside_7_to_90_days_is_a_422_naming_fill_days(
    client: httpx.AsyncClient, clinician: dict[str, str], days: str
) -> None:
    plan = await draft(client, clinician)
    r = await client.get(
        f"{BASE}/plans/{plan['id']}/dispensing?fill_days={days}", headers=clinician
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "fill_days"]
    assert days not in r.text.replace("fill_days", "")


async def test_only_a_clinician_on_the_panel_gets_the_pharmacy_order(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    url = f"{BASE}/plans/{plan['id']}/dispensing"
    patient = auth(runtime, Role.PATIENT, patient_id=PATIENT)
    other = auth(runtime, Role.CLINICIAN, panel=[])
    assert (await client.get(url, headers=patient)).status_code == 403
    assert (await client.get(url, headers=other)).status_code == 403
    denied = [a for a in await rows(runtime, "audit_log") if a["outcome"] == "denied"]
    assert len(denied) == 2


async def test_a_preview_has_the_same_fills_as_the_plan_it_becomes(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    stored = await client.get(f"{BASE}/plans/{plan['id']}/dispensing", headers=clinician)
    r = await client.post("/api/scheduler/plans/preview/dispensing", json=BODY, headers=clinician)
    assert r.status_code == 200, r.text
    assert r.json()["plan_id"] is None
    assert r.json()["fills"] == stored.json()["fills"]
    fhir = await client.post(
        "/api/scheduler/plans/preview/dispensing?format=fhir&fill_days=7",
        json=BODY,
        headers=clinician,
    )
    assert fhir.status_code == 200
    Bundle.model_validate(fhir.json())
    patient = auth(runtime, Role.PATIENT, patient_id=PATIENT)
    r = await client.post("/api/scheduler/plans/preview/dispensing", json=BODY, headers=patient)
    assert r.status_code == 403
    r = await client.post(
        "/api/scheduler/plans/preview/dispensing",
        json={**BODY, "start_on": "2020-01-01"},
        headers=clinician,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "start_on"]
