"""The plan as FHIR R4 (MedicationRequest per drug, validated with fhir.resources R4B models)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest

from services.scheduler.adapters import fhir
from services.scheduler.adapters.fhir import plan_to_fhir, plan_to_medication_request
from services.scheduler.domain.planning import (
    Administration,
    PlannedStep,
    PlanningInput,
    StepKind,
    plan,
)

D = Decimal
START = date(2026, 1, 5)


def patient(**kw: Any) -> PlanningInput:
    base: dict[str, Any] = dict(
        drug="diazepam",
        administrations_mg=(D(2), D("2.5")),
        duration_weeks=30,
        age=40,
        start_on=START,
        formulations=("diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"),
    )
    base.update(kw)
    return PlanningInput(**base)


def test_one_sequence_per_step_bounded_by_the_next_step() -> None:
    p = plan(patient())
    mr = plan_to_medication_request(p, patient_ref="Patient/123")
    MedicationRequest.model_validate(mr)
    assert mr["resourceType"] == "MedicationRequest"
    assert (mr["status"], mr["intent"]) == ("draft", "order")
    assert mr["medicationCodeableConcept"]["text"] == "Diazepam"
    assert mr["subject"] == {"reference": "Patient/123"}
    lines = mr["dosageInstruction"]
    assert sorted({d["sequence"] for d in lines}) == [s.number for s in p.steps]
    for step, nxt in zip(p.steps, p.steps[1:], strict=False):
        for d in (d for d in lines if d["sequence"] == step.number):
            period = d["timing"]["repeat"]["boundsPeriod"]
            assert period["start"] == step.effective_on.isoformat()
            assert date.fromisoformat(period["end"]).toordinal() == nxt.effective_on.toordinal() - 1
    last = [d for d in lines if d["sequence"] == p.steps[-1].number]
    assert all("end" not in d["timing"]["repeat"]["boundsPeriod"] for d in last)
    # each administration's dose is a UCUM mg quantity; the step's doses add up
    for step in p.steps:
        qty = [
            q["doseQuantity"]
            for d in lines
            if d["sequence"] == step.number
            for q in d.get("doseAndRate", [])
        ]
        for q in qty:
            assert (q["unit"], q["system"], q["code"]) == ("mg", fhir.UCUM, "mg")
        freq = [
            d["timing"]["repeat"].get("frequency", 0)
            for d in lines
            if d["sequence"] == step.number and "doseAndRate" in d
        ]
        total = sum(D(str(q["value"])) * f for q, f in zip(qty, freq, strict=True))
        assert total == step.daily_dose_mg


def test_text_in_plain_words_without_patient_information() -> None:
    p = plan(patient(administrations_mg=(D(2), D("2.5"))))
    mr = plan_to_medication_request(p, patient_ref="Patient/secret-id")
    first = [d for d in mr["dosageInstruction"] if d["sequence"] == 1]
    assert first[0]["text"].startswith("Diazepam ")
    assert " mg a day: " in first[0]["text"]
    assert [d["timing"]["repeat"]["when"] for d in first] in (
        [["MORN"], ["NIGHT"]],
        [["MORN", "NIGHT"]],
    )
    assert all("secret" not in d["text"] for d in mr["dosageInstruction"])


def test_step_text_example() -> None:
    a = (Administration("diazepam", D(2)), Administration("diazepam", D("2.50")))
    step = PlannedStep(1, START, StepKind.REDUCTION, a, D("4.5"), 4)
    assert fhir.step_text(step, "diazepam") == ("Diazepam 4.5 mg a day: 2 mg morning, 2.5 mg night")


def test_final_step_stops_with_an_open_line() -> None:
    p = plan(patient(administrations_mg=(D(1),)))
    assert p.steps[-1].kind is StepKind.FINAL
    mr = plan_to_medication_request(p, patient_ref=None)
    last = mr["dosageInstruction"][-1]
    assert "doseAndRate" not in last and "stop" in last["text"]
    assert last["timing"]["repeat"]["boundsPeriod"] == {
        "start": p.steps[-1].effective_on.isoformat()
    }
    # a preview has no patient: the required subject says so with data-absent-reason
    assert mr["subject"]["extension"][0]["url"] == fhir.DATA_ABSENT_REASON


def test_crossover_is_a_bundle_of_one_request_per_drug() -> None:
    p = plan(
        patient(
            drug="alprazolam",
            administrations_mg=(D("0.5"), D(1)),
            formulations=("alprazolam_tab_0_5mg", "diazepam_tab_2mg", "diazepam_tab_5mg"),
            crossover_wanted=True,
        )
    )
    assert any(s.kind is StepKind.CROSSOVER for s in p.steps)
    out = plan_to_fhir(p, patient_ref=None)
    Bundle.model_validate(out)
    assert out["type"] == "collection"
    names = [e["resource"]["medicationCodeableConcept"]["text"] for e in out["entry"]]
    assert names == ["Alprazolam", "Diazepam"]
    with pytest.raises(ValueError):
        plan_to_medication_request(p, patient_ref=None)


def test_an_invalid_structure_raises() -> None:
    with pytest.raises(pydantic.ValidationError):
        MedicationRequest.model_validate({"resourceType": "MedicationRequest", "status": "draft"})
