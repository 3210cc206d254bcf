"""A taper plan as FHIR R4 resources (clinical-reference.md §6.2).

A taper is a **MedicationRequest** with several ``dosageInstruction`` lines, one per planned step,
each bounded by ``timing.repeat.boundsPeriod`` and ordered by ``Dosage.sequence`` (the official
example *medrx0303* "Order for Tapering Dose"). Rules applied here:

- ``sequence`` is the step number; a step whose administrations differ in size has one line per
  administration, all with the step's ``sequence`` (FHIR: equal sequence numbers are taken
  together); equal administrations share one line with ``frequency`` = how many a day.
- ``boundsPeriod.start`` is the step's date, ``end`` the day before the next step; the last line
  is open (no end): the patient stays there until the plan changes.
- A step that stops the drug has a line with only text and a start (no dose).
- The administrations of a day map, in order, to ``when`` codes (morning ... night).
- Doses are ``doseQuantity`` in UCUM ``mg``. No patient information appears in any text.
- One MedicationRequest is for one medication: a crossover plan (two drugs) becomes a FHIR
  ``Bundle`` (type ``collection``) of one MedicationRequest per drug (``plan_to_fhir``).
- ``status`` is ``draft`` (a preview) unless the caller passes a stored plan's status mapped by
  ``medication_request_status``; ``intent`` is always ``order``.

Every resource is validated with ``fhir.resources`` (R4B models: FHIR 4.3, whose MedicationRequest,
Dosage, Timing and Bundle elements used here are the same as in R4) before it is returned, so an
invalid structure raises ``pydantic.ValidationError``.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest

from services.scheduler.domain.planning import PlannedStep, TaperPlan

UCUM = "http://unitsofmeasure.org"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

# FHIR R4 MedicationRequest.status (required binding: medicationrequest-status).
MedicationRequestStatus = Literal[
    "active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"
]

# A stored plan's status (plans.status) -> MedicationRequest.status. An approved plan is in force,
# and so is one held at its maintenance dose.
_PLAN_STATUS: dict[str, MedicationRequestStatus] = {
    "draft": "draft",
    "approved": "active",
    "active": "active",
    "maintenance": "active",
    "completed": "completed",
    "cancelled": "cancelled",
}


def medication_request_status(plan_status: str) -> MedicationRequestStatus:
    """The FHIR status of a stored plan's MedicationRequest(s); ``unknown`` for a status this
    mapping does not know."""
    return _PLAN_STATUS.get(plan_status, "unknown")


# (FHIR event-timing code, plain word) for the k-th administration of a day of n administrations.
_TIMES: dict[int, tuple[tuple[str, str], ...]] = {
    2: (("MORN", "morning"), ("NIGHT", "night")),
    3: (("MORN", "morning"), ("AFT", "afternoon"), ("NIGHT", "night")),
    4: (("MORN", "morning"), ("NOON", "noon"), ("EVE", "evening"), ("NIGHT", "night")),
    5: (
        ("MORN", "morning"),
        ("NOON", "noon"),
        ("AFT", "afternoon"),
        ("EVE", "evening"),
        ("NIGHT", "night"),
    ),
}


def mg(value: Decimal) -> str:
    """``Decimal('2.50')`` -> ``'2.5'``; never an exponent."""
    return format(value.normalize(), "f")


def drug_name(code: str) -> str:
    return code.replace("_", " ").replace("-", " ").capitalize()


def _slot(n: int, k: int) -> tuple[str | None, str]:
    """(``when`` code or None, word) for administration ``k`` (0-based) of ``n`` a day."""
    if n == 1:
        return None, "once a day"
    times = _TIMES.get(n)
    if times is None:
        return None, f"dose {k + 1} of {n}"
    return times[k]


def step_text(step: PlannedStep, drug: str) -> str:
    """Plain words for one drug in one step, e.g. 'Diazepam 4.5 mg a day: 2 mg morning, 2.5 mg
    night'."""
    n, doses = _doses(step, drug)
    total = sum((d for _, d in doses), Decimal(0))
    name = drug_name(drug)
    if total == 0:
        return f"{name}: stop (0 mg a day)"
    if n == 1:
        return f"{name} {mg(total)} mg once a day"
    parts = [f"{mg(d)} mg {_slot(n, k)[1]}" for k, d in doses if d > 0]
    return f"{name} {mg(total)} mg a day: {', '.join(parts)}"


def _doses(step: PlannedStep, drug: str) -> tuple[int, list[tuple[int, Decimal]]]:
    """(administrations a day, [(position in the day, mg)] of ``drug``): the position counts
    every administration, so a crossover stage keeps each dose at its time of day."""
    n = len(step.administrations)
    return n, [(k, a.dose_mg) for k, a in enumerate(step.administrations) if a.drug == drug]


def _quantity(value: Decimal) -> dict[str, Any]:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def _dosage_lines(plan: TaperPlan, drug: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    steps = [s for s in plan.steps if any(a.drug == drug for a in s.administrations)]
    by_number = {s.number: i for i, s in enumerate(plan.steps)}
    for step in steps:
        i = by_number[step.number]
        nxt = plan.steps[i + 1] if i + 1 < len(plan.steps) else None
        n, doses = _doses(step, drug)
        total = sum((d for _, d in doses), Decimal(0))
        bounds: dict[str, Any] = {"start": step.effective_on.isoformat()}
        if nxt is not None and total > 0:
            bounds["end"] = (nxt.effective_on - timedelta(days=1)).isoformat()
        text = step_text(step, drug)
        base: dict[str, Any] = {"sequence": step.number, "text": text}
        if total == 0:
            lines.append({**base, "timing": {"repeat": {"boundsPeriod": bounds}}})
            continue
        given = [(k, d) for k, d in doses if d > 0]
        if len({d for _, d in given}) == 1:
            whens = [w for k, _ in given if (w := _slot(n, k)[0]) is not None]
            repeat: dict[str, Any] = {
                "boundsPeriod": bounds,
                "frequency": len(given),
                "period": 1,
                "periodUnit": "d",
            }
            if whens and len(whens) == len(given):
                repeat["when"] = whens
            lines.append(
                {
                    **base,
                    "timing": {"repeat": repeat},
                    "doseAndRate": [{"doseQuantity": _quantity(given[0][1])}],
                    "maxDosePerPeriod": {
                        "numerator": _quantity(total),
                        "denominator": {"value": 1, "unit": "d", "system": UCUM, "code": "d"},
                    },
                }
            )
            continue
        for k, dose in given:
            when = _slot(n, k)[0]
            repeat = {"boundsPeriod": bounds, "frequency": 1, "period": 1, "periodUnit": "d"}
            if when is not None:
                repeat["when"] = [when]
            lines.append(
                {
                    **base,
                    "timing": {"repeat": repeat},
                    "doseAndRate": [{"doseQuantity": _quantity(dose)}],
                }
            )
    return lines


def _subject(patient_ref: str | None) -> dict[str, Any]:
    if patient_ref:
        return {"reference": patient_ref}
    # subject is required (1..1); a preview has no patient, said the standard way.
    return {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "not-applicable"}]}


def plan_drugs(plan: TaperPlan) -> tuple[str, ...]:
    """The drugs the plan's steps give, in the order they appear."""
    seen = dict.fromkeys(a.drug for s in plan.steps for a in s.administrations)
    return tuple(seen) or (plan.drug,)


def plan_to_medication_request(
    plan: TaperPlan,
    *,
    patient_ref: str | None,
    drug: str | None = None,
    status: MedicationRequestStatus = "draft",
) -> dict[str, Any]:
    """The plan's lines for ``drug`` (default: the plan's only drug) as a validated
    MedicationRequest (``status``, default ``draft``; intent ``order``), as a JSON-ready dict."""
    drugs = plan_drugs(plan)
    if drug is None:
        if len(drugs) != 1:
            raise ValueError("a plan with a crossover has one MedicationRequest per drug")
        drug = drugs[0]
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"text": drug_name(drug)},
        "subject": _subject(patient_ref),
        "dosageInstruction": _dosage_lines(plan, drug),
    }
    validated = MedicationRequest.model_validate(resource)
    out: dict[str, Any] = validated.model_dump(mode="json", exclude_none=True)
    return out


def plan_to_fhir(
    plan: TaperPlan, *, patient_ref: str | None, status: MedicationRequestStatus = "draft"
) -> dict[str, Any]:
    """One MedicationRequest, or for a crossover a validated Bundle of one per drug, each with
    ``status``."""
    drugs = plan_drugs(plan)
    if len(drugs) == 1:
        return plan_to_medication_request(
            plan, patient_ref=patient_ref, drug=drugs[0], status=status
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": plan_to_medication_request(
                    plan, patient_ref=patient_ref, drug=d, status=status
                )
            }
            for d in drugs
        ],
    }
    out: dict[str, Any] = Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
    return out
