"""A plan's fills as FHIR R4 MedicationRequests with ``dispenseRequest`` (issue 13, item 14).

A MedicationRequest names one medication and ``dispenseRequest.quantity`` is the amount of one
fill, but a taper changes what each fill holds (fewer tablets, other strengths). So a plan's
dispensing is a ``Bundle`` (type ``collection``) of one MedicationRequest per fill and product:

- ``medicationCodeableConcept``: the product's code on file (the project's formulation code
  system) and its plain name, e.g. "Diazepam 2 mg tablet";
- ``dispenseRequest.quantity``: whole tablets (UCUM ``{tbl}``) or mL (UCUM ``mL``);
  ``expectedSupplyDuration``: the days the fill covers (UCUM ``d``); ``numberOfRepeatsAllowed``
  0 (the next fill is its own request); ``validityPeriod``: from ``fill_days`` before the first
  day the fill covers to that day (it can be collected during the previous fill, not later);
- ``groupIdentifier``: the plan (``urn:uuid:<plan id>``), shared by every fill;
- ``dosageInstruction[0].text``: what the fill covers, e.g. "Fill 1, 2026-01-12 to 2026-02-08:
  21 whole and 35 half tablets". No patient information in any text.

Validated with ``fhir.resources`` R4B models, like ``adapters.fhir``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest

from services.scheduler.adapters.fhir import UCUM, MedicationRequestStatus, drug_name, mg
from services.scheduler.domain.dispensing import Fill, FillItem

# The project's own code system for products on file (formulations.v1.json codes).
FORMULATION_SYSTEM = "https://taper-program.example.org/fhir/CodeSystem/formulation"


def product_name(item: FillItem) -> str:
    """'Diazepam 2 mg tablet' or 'Diazepam 1 mg/mL oral liquid'."""
    name = drug_name(item.drug)
    if item.form == "tablet":
        assert item.strength_mg is not None
        return f"{name} {mg(item.strength_mg)} mg tablet"
    assert item.concentration_mg_per_ml is not None
    return f"{name} {mg(item.concentration_mg_per_ml)} mg/mL oral liquid"


def taken_text(item: FillItem) -> str:
    if item.form == "liquid":
        return f"{mg(item.ml_taken)} mL"
    parts = []
    if item.whole_tablets_taken:
        parts.append(f"{item.whole_tablets_taken} whole")
    if item.half_tablets_taken:
        parts.append(f"{item.half_tablets_taken} half")
    return " and ".join(parts) + " tablets"


def _quantity(item: FillItem) -> dict[str, Any]:
    if item.form == "tablet":
        return {
            "value": item.dispense_tablets,
            "unit": "tablet",
            "system": UCUM,
            "code": "{tbl}",
        }
    return {"value": item.dispense_ml, "unit": "mL", "system": UCUM, "code": "mL"}


def fill_request(
    fill: Fill,
    item: FillItem,
    *,
    fill_days: int,
    plan_id: uuid.UUID | None,
    patient_ref: str | None,
    status: MedicationRequestStatus,
) -> dict[str, Any]:
    subject: dict[str, Any] = (
        {"reference": patient_ref}
        if patient_ref
        else {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                    "valueCode": "not-applicable",
                }
            ]
        }
    )
    covers = f"{fill.covers_from.isoformat()} to {fill.covers_to.isoformat()}"
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {"system": FORMULATION_SYSTEM, "code": item.code, "display": product_name(item)}
            ],
            "text": product_name(item),
        },
        "subject": subject,
        "dosageInstruction": [{"text": f"Fill {fill.fill_number}, {covers}: {taken_text(item)}"}],
        "dispenseRequest": {
            "validityPeriod": {
                "start": (fill.covers_from - timedelta(days=fill_days)).isoformat(),
                "end": fill.covers_from.isoformat(),
            },
            "numberOfRepeatsAllowed": 0,
            "quantity": _quantity(item),
            "expectedSupplyDuration": {
                "value": fill.days,
                "unit": "days",
                "system": UCUM,
                "code": "d",
            },
        },
    }
    if plan_id is not None:
        resource["groupIdentifier"] = {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:uuid:{plan_id}",
        }
    out: dict[str, Any] = MedicationRequest.model_validate(resource).model_dump(
        mode="json", exclude_none=True
    )
    return out


def fills_to_fhir(
    fills: Sequence[Fill],
    *,
    fill_days: int,
    plan_id: uuid.UUID | None,
    patient_ref: str | None,
    status: MedicationRequestStatus = "draft",
) -> dict[str, Any]:
    """A validated Bundle (collection) of one MedicationRequest per fill and product."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": fill_request(
                    fill,
                    item,
                    fill_days=fill_days,
                    plan_id=plan_id,
                    patient_ref=patient_ref,
                    status=status,
                )
            }
            for fill in fills
            for item in fill.items
        ],
    }
    out: dict[str, Any] = Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
    return out
