"""Monitoring in FHIR (issue 13, item 16): reports as QuestionnaireResponse + score Observation,
open episodes as Flags, each validated with fhir.resources (R4B); authorized and audited like
the JSON reads; tolerant of an unknown instrument or unanswered items."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.monitoring.adapters.fhir import questionnaire_response, score_observation
from tests.unit.monitoring.test_api import BASE, PATIENT, ciwa, headers, phq9

MODELS: dict[str, Any] = {
    "QuestionnaireResponse": QuestionnaireResponse,
    "Observation": Observation,
    "Flag": Flag,
}


def resources_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == len(bundle["entry"])
    out = [e["resource"] for e in bundle["entry"]]
    for r in out:  # every resource valid on its own
        MODELS[r["resourceType"]].model_validate(r)
    return out


async def submit(client: httpx.AsyncClient, h: dict[str, str], body: dict[str, Any]) -> str:
    r = await client.post(f"{BASE}/symptom-reports", json=body, headers=h)
    assert r.status_code == 201, r.text
    report_id: str = r.json()["report_id"]
    return report_id


async def test_phq9_and_gad7_reports_are_loinc_coded_responses_with_score_observations(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    h = headers(runtime, Role.PATIENT)
    phq_id = await submit(client, h, phq9(item_9=1, total=12))
    gad = {"instrument": "gad-7", "answers": {f"item_{i}": 2 for i in range(1, 8)}}
    await submit(client, h, gad)
    await submit(client, h, ciwa(12))
    r = await client.get(f"{BASE}/symptom-reports?format=fhir", headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    found = resources_of(r.json())
    responses = [x for x in found if x["resourceType"] == "QuestionnaireResponse"]
    observations = [x for x in found if x["resourceType"] == "Observation"]
    assert len(responses) == len(observations) == 3
    phq = next(x for x in responses if x["id"] == phq_id)
    assert phq["questionnaire"] == "http://loinc.org/q/44249-1"
    assert phq["subject"] == {"reference": f"Patient/{PATIENT}"}
    items = {i["linkId"]: i["answer"][0] for i in phq["item"]}
    assert len(items) == 9 and items["44260-8"]["valueCoding"]["code"] == "LA6569-3"  # item 9 = 1
    assert all(a["valueCoding"]["system"] == "http://loinc.org" for a in items.values())
    totals = {o["code"]["coding"][0]["code"]: o for o in observations}
    assert set(totals) == {"44261-6", "70274-6", "ciwa-b-total"}
    assert totals["44261-6"]["valueInteger"] == 12
    assert totals["70274-6"]["valueInteger"] == 14
    assert totals["44261-6"]["category"][0]["coding"][0]["code"] == "survey"
    assert totals["44261-6"]["derivedFrom"] == [{"reference": f"urn:uuid:{phq_id}"}]
    assert f"urn:uuid:{phq_id}" in {e["fullUrl"] for e in r.json()["entry"]}
    ciwa_qr = next(x for x in responses if x["questionnaire"].endswith("/Questionnaire/ciwa-b"))
    assert all("valueInteger" in i["answer"][0] for i in ciwa_qr["item"])
    audit = await client.get(f"{BASE}/symptom-reports", headers=h)  # JSON view still the same
    assert len(audit.json()) == 3


async def test_open_episodes_are_flags_with_priority_by_severity(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    h = headers(runtime, Role.PATIENT)
    await submit(client, h, phq9(item_9=1, total=3))  # safety: RED
    await submit(client, h, ciwa(25))  # withdrawal: AMBER
    r = await client.get(f"{BASE}/episodes?format=fhir", headers=headers(runtime))
    assert r.status_code == 200, r.text
    flags = resources_of(r.json())
    by_family = {f["code"]["coding"][0]["code"]: f for f in flags}
    assert set(by_family) == {"safety", "withdrawal"}
    priority = {
        fam: f["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
        for fam, f in by_family.items()
    }
    assert priority == {"safety": "PH", "withdrawal": "PM"}
    assert all(f["status"] == "active" for f in flags)
    assert all(
        f["extension"][0]["url"] == "http://hl7.org/fhir/StructureDefinition/flag-priority"
        for f in flags
    )


async def test_the_fhir_views_are_authorized_and_audited_like_the_json_reads(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    stranger = headers(runtime, Role.CLINICIAN, panel=[uuid.uuid4()])
    for path in ("symptom-reports", "episodes"):
        r = await client.get(f"{BASE}/{path}?format=fhir", headers=stranger)
        assert r.status_code == 403
    async with runtime.uow() as uow:
        audit = uow.table("audit_log")
        rows = (await uow.session.execute(sa.select(audit))).mappings().all()
    assert [(a["resource"], a["outcome"]) for a in rows] == [
        ("symptom_report", "denied"),
        ("episode", "denied"),
    ]


def test_an_unknown_instrument_or_a_refused_item_still_maps() -> None:
    report = {
        "id": uuid.uuid4(),
        "instrument": "new-scale",
        "answers": {"item_1": 2, "item_2": None},  # item_2 refused: left out
        "total_score": 2,
        "band": "unbanded",
        "reported_at": datetime(2026, 3, 2, 9, tzinfo=UTC),
    }
    qr = questionnaire_response(report, "Patient/x")
    assert qr["questionnaire"].endswith("/Questionnaire/new-scale")
    assert qr["item"] == [{"linkId": "item_1", "answer": [{"valueInteger": 2}]}]
    obs = score_observation(report, "Patient/x")
    assert obs["code"]["coding"][0]["code"] == "new-scale-total"
    not_scored = score_observation({**report, "band": "not_scored"}, "Patient/x")
    assert "valueInteger" not in not_scored
    assert not_scored["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
