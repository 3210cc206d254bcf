"""Stored plans render like previews: ``record_to_plan`` rebuilds the planner's ``TaperPlan`` from
the rows, and GET .../plans/{plan_id}?format=fhir|svg goes through the same adapters (SQLite,
the real app and unit of work; no broker started)."""

from __future__ import annotations

import dataclasses
import uuid
import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from services.scheduler.adapters.chart import plan_to_svg
from services.scheduler.adapters.fhir import medication_request_status, plan_to_fhir
from services.scheduler.adapters.stored_plan import record_to_plan, summary_json
from services.scheduler.domain.planning import (
    PlanningInput,
    Strategy,
    TaperPlan,
    plan,
)
from services.scheduler.service_layer import plans as plan_cases
from tests.plans import PLAN_BODY, draft_plan

D = Decimal
PATIENT = uuid.uuid4()
BASE = f"/api/scheduler/patients/{PATIENT}"
BODY = PLAN_BODY
CROSSOVER: dict[str, Any] = {
    **BODY,
    "drug": "alprazolam",
    "administrations_mg": ["0.5", "1"],
    "formulations": ["alprazolam_tab_0_5mg", "diazepam_tab_2mg", "diazepam_tab_5mg"],
    "crossover_wanted": True,
}

INPUTS = {
    "single": PlanningInput(
        drug="diazepam",
        administrations_mg=(D(5), D(5)),
        duration_weeks=30,
        age=40,
        start_on=date(2026, 1, 12),
        formulations=("diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"),
    ),
    "crossover": PlanningInput(
        drug="alprazolam",
        administrations_mg=(D("0.5"), D(1)),
        duration_weeks=30,
        age=40,
        start_on=date(2026, 1, 12),
        formulations=("alprazolam_tab_0_5mg", "diazepam_tab_2mg", "diazepam_tab_5mg"),
        crossover_wanted=True,
    ),
    "needs_a_liquid": PlanningInput(  # stops where a product not on file is needed
        drug="diazepam",
        administrations_mg=(D(5), D(5)),
        duration_weeks=30,
        age=40,
        start_on=date(2026, 1, 12),
        formulations=("diazepam_tab_2mg", "diazepam_tab_5mg"),
    ),
}


def auth(runtime: ServiceRuntime, role: Role, subject: str, **claims: Any) -> dict[str, str]:
    token = issue_dev_token(runtime.settings, subject=subject, role=role, **claims)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, "clinician-1", panel=[PATIENT])


draft = partial(draft_plan, patient=PATIENT)


async def store(runtime: ServiceRuntime, result: TaperPlan) -> plan_cases.PlanRecord:
    async with runtime.uow() as uow:
        created = await plan_cases.create_plan(
            plan_cases.CreatePlan(PATIENT, "clinician-1", {"drug": result.drug}, result), uow
        )
        await uow.commit()
    async with runtime.uow() as uow:  # read back in a fresh session: what the database returns
        return await plan_cases.get_plan(uow, PATIENT, created.row["id"])


async def audit_rows(runtime: ServiceRuntime) -> list[dict[str, Any]]:
    async with runtime.uow() as uow:
        t = uow.table("audit_log")
        return [dict(r) for r in (await uow.session.execute(sa.select(t))).mappings()]


def sequences(mr: MedicationRequest) -> list[int]:
    """Each step's ``sequence`` once (unequal administrations share a sequence over lines)."""
    return list(dict.fromkeys(d.sequence for d in mr.dosageInstruction or [] if d.sequence))


# --- record_to_plan -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(INPUTS))
async def test_a_stored_plan_rebuilds_the_planned_value(runtime: ServiceRuntime, case: str) -> None:
    original = plan(INPUTS[case])
    record = await store(runtime, original)
    restored = record_to_plan(record.row, record.steps)

    assert restored.steps == original.steps and len(restored.steps) > 1
    for f in ("drug", "final_drug", "strategy", "risk", "pace", "bound", "baseline"):
        assert getattr(restored, f) == getattr(original, f), f
    for f in ("formulation_needs", "ends_at", "equivalence", "notes", "reference_versions"):
        assert getattr(restored, f) == getattr(original, f), f
    assert restored == original  # every field: nothing is lost in the rows
    assert restored.complete is original.complete
    if case == "needs_a_liquid":
        assert restored.formulation_needs and not restored.complete
    if case == "crossover":
        assert restored.strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL
        assert restored.final_drug == "diazepam" != restored.drug
    # the same renderers give the same output for the stored plan and the preview
    assert plan_to_fhir(restored, patient_ref=None) == plan_to_fhir(original, patient_ref=None)
    assert plan_to_svg(restored) == plan_to_svg(original)


def test_cancelled_steps_are_left_out_and_numbers_kept() -> None:
    original = plan(INPUTS["single"])
    row = {
        "strategy": original.strategy.value,
        "reference_versions": dict(original.reference_versions),
        "summary": summary_json(original),
    }

    def step_row(s: Any, status: str, number: int | None = None) -> dict[str, Any]:
        return {
            "number": s.number if number is None else number,
            "effective_on": s.effective_on,
            "kind": s.kind.value,
            "administrations": [
                {"drug": a.drug, "dose_mg": str(a.dose_mg)} for a in s.administrations
            ],
            "daily_dose_mg": float(s.daily_dose_mg),  # SQLite-like: floats, not Decimals
            "diazepam_eq_mg": float(s.diazepam_eq_mg),
            "hold_weeks": s.hold_weeks,
            "status": status,
        }

    first, second, *rest = original.steps
    n = len(original.steps)
    # an adjustment cancelled every step after the first and re-planned them as n+1, n+2, ...
    rows = [step_row(first, "emitted")]
    rows += [step_row(s, "cancelled") for s in (second, *rest)]
    replacement = [dataclasses.replace(s, number=n + i) for i, s in enumerate(rest, start=1)]
    rows += [step_row(s, "planned") for s in reversed(replacement)]  # any order in the rows

    restored = record_to_plan(row, rows)
    # numbered as the plan's JSON shows its schedule in force: 1..n, in stored order
    assert [s.number for s in restored.steps] == list(range(1, len(rest) + 2))
    assert restored.steps == (
        first,
        *(dataclasses.replace(s, number=i) for i, s in enumerate(rest, 2)),
    )
    assert all(isinstance(s.diazepam_eq_mg, Decimal) for s in restored.steps)


@pytest.mark.parametrize(
    ("stored", "fhir"),
    [
        ("draft", "draft"),
        ("active", "active"),
        ("completed", "completed"),
        ("maintenance", "active"),
        ("cancelled", "cancelled"),
        ("something_new", "unknown"),
    ],
)
def test_plan_status_maps_to_medication_request_status(stored: str, fhir: str) -> None:
    assert medication_request_status(stored) == fhir


# --- GET .../plans/{plan_id}?format= ------------------------------------------------------------


async def test_fhir_of_a_stored_draft(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    stored = await draft(client, clinician)
    r = await client.get(f"{BASE}/plans/{stored['id']}?format=fhir", headers=clinician)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    mr = MedicationRequest.model_validate(r.json())
    assert mr.status == "draft" and mr.intent == "order"
    assert mr.subject.reference == f"Patient/{PATIENT}"
    assert sequences(mr) == [s["number"] for s in stored["steps"]]
    first = r.json()["dosageInstruction"][0]
    assert first["timing"]["repeat"]["boundsPeriod"]["start"] == stored["steps"][0]["effective_on"]
    # the patient reads their own plan in every format
    me = auth(runtime, Role.PATIENT, "patient-1", patient_id=PATIENT)
    r = await client.get(f"{BASE}/plans/{stored['id']}", params={"format": "fhir"}, headers=me)
    assert r.status_code == 200 and r.json() == mr.model_dump(mode="json", exclude_none=True)


async def test_fhir_of_an_approved_plan_is_active(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    stored = await draft(client, clinician)
    r = await client.post(f"{BASE}/plans/{stored['id']}/approve", json={}, headers=clinician)
    assert r.status_code == 200, r.text
    r = await client.get(f"{BASE}/plans/{stored['id']}?format=fhir", headers=clinician)
    assert r.status_code == 200, r.text
    mr = MedicationRequest.model_validate(r.json())
    assert mr.status == "active" and len(sequences(mr)) == len(stored["steps"])


async def test_fhir_of_a_stored_crossover_is_a_bundle(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    stored = await draft(client, clinician, CROSSOVER)
    assert stored["strategy"] == "crossover_then_proportional"
    r = await client.get(f"{BASE}/plans/{stored['id']}?format=fhir", headers=clinician)
    assert r.status_code == 200, r.text
    assert Bundle.model_validate(r.json()).type == "collection"
    entries = [e["resource"] for e in r.json()["entry"]]
    requests = [MedicationRequest.model_validate(e) for e in entries]
    assert [e["medicationCodeableConcept"]["text"] for e in entries] == ["Alprazolam", "Diazepam"]
    assert all(m.subject.reference == f"Patient/{PATIENT}" for m in requests)
    assert all(m.status == "draft" for m in requests)
    # every step appears in at least one of the two requests
    numbers = {n for m in requests for n in sequences(m)}
    assert numbers == {s["number"] for s in stored["steps"]}


async def test_svg_of_a_stored_plan(client: httpx.AsyncClient, clinician: dict[str, str]) -> None:
    stored = await draft(client, clinician)
    r = await client.get(
        f"{BASE}/plans/{stored['id']}", params={"format": "svg"}, headers=clinician
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("role") == "img"
    drawn = root.findall(".//{http://www.w3.org/2000/svg}line[@class='step']")
    assert [int(e.get("data-step", "0")) for e in drawn] == [s["number"] for s in stored["steps"]]


async def test_json_is_unchanged_and_an_unknown_format_is_422(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    stored = await draft(client, clinician)
    r = await client.get(f"{BASE}/plans/{stored['id']}", headers=clinician)
    assert r.status_code == 200 and r.json() == stored
    r = await client.get(f"{BASE}/plans/{stored['id']}?format=json", headers=clinician)
    assert r.status_code == 200 and r.json() == stored
    r = await client.get(f"{BASE}/plans/{stored['id']}?format=pdf", headers=clinician)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "format"]


@pytest.mark.parametrize("fmt", ["fhir", "svg"])
async def test_a_clinician_off_the_panel_is_403_and_audited(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str], fmt: str
) -> None:
    stored = await draft(client, clinician)
    before = len(await audit_rows(runtime))
    other = auth(runtime, Role.CLINICIAN, "clinician-2", panel=[uuid.uuid4()])
    r = await client.get(f"{BASE}/plans/{stored['id']}?format={fmt}", headers=other)
    assert r.status_code == 403
    assert "svg" not in r.text and "MedicationRequest" not in r.text
    [denied] = (await audit_rows(runtime))[before:]
    assert (denied["actor"], denied["action"], denied["resource"]) == (
        "clinician-2",
        "read",
        "plan",
    )
    assert (denied["patient_id"], denied["outcome"]) == (PATIENT, "denied")


async def test_an_allowed_read_in_another_format_is_audited(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    stored = await draft(client, clinician)
    before = len(await audit_rows(runtime))
    r = await client.get(f"{BASE}/plans/{stored['id']}?format=fhir", headers=clinician)
    assert r.status_code == 200
    [allowed] = (await audit_rows(runtime))[before:]
    assert (allowed["actor"], allowed["action"], allowed["outcome"]) == (
        "clinician-1",
        "read",
        "allowed",
    )


@pytest.mark.parametrize("fmt", ["json", "fhir", "svg"])
async def test_an_unknown_plan_is_404(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str], fmt: str
) -> None:
    r = await client.get(f"{BASE}/plans/{uuid.uuid4()}?format={fmt}", headers=clinician)
    assert r.status_code == 404
    # a plan is found only under its own patient (for a clinician with both on the panel)
    stored = await draft(client, clinician)
    elsewhere = uuid.uuid4()
    both = auth(runtime, Role.CLINICIAN, "clinician-1", panel=[PATIENT, elsewhere])
    r = await client.get(
        f"/api/scheduler/patients/{elsewhere}/plans/{stored['id']}?format={fmt}", headers=both
    )
    assert r.status_code == 404
