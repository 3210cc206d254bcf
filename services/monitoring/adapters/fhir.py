"""Monitoring in FHIR R4 (issue 13, item 16; clinical-reference.md §6.2).

- A stored symptom report is a **QuestionnaireResponse** (status ``completed``): PHQ-9 and
  GAD-7 against their LOINC panels, each item's ``linkId`` its LOINC code and its answer a LOINC
  answer coding; CIWA-B and BWSQ against the project's own Questionnaire canonicals, items
  linked by the project's item codes with ``valueInteger`` answers.
- Its score is an **Observation** (status ``final``, category ``survey``): LOINC 44261-6 (PHQ-9
  total) / 70274-6 (GAD-7 total), project codes for CIWA-B/BWSQ; ``valueInteger`` the total, the
  band as ``interpretation`` text, ``derivedFrom`` the QuestionnaireResponse. A report that was
  not scored (CIWA-B orientation gate) has no value but ``dataAbsentReason`` ``not-performed``.
- An open RED/AMBER episode is a **Flag** (status ``active``) with the flag-priority extension:
  PH for RED, PM for AMBER.

Every code comes from ``domain/data/fhir_codes.v1.json`` (with its sources and ⚠ marks). The
mapping is tolerant: an instrument without codes there falls back to the project's own canonical
and item codes, and an item not answered (or refused) is left out rather than invented. Bundles
are ``searchset`` (the answer to a read of a patient's reports or episodes); entries have
``urn:uuid`` full URLs so ``derivedFrom`` resolves within the Bundle. No free text from the
patient or clinician (e.g. a resolution note) is ever put in a resource. Every resource is
validated with ``fhir.resources`` (R4B models, as ``services/scheduler/adapters/fhir.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from services.monitoring.domain.episodes import Episode

DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
NOT_SCORED = "not_scored"
# Observation ids are derived from the report id, so the same report always maps to the same id.
_OBSERVATION_NS = uuid.UUID("5b7f8a52-54a3-4a55-9d53-6a1c2f3c9f10")


@cache
def codes() -> dict[str, Any]:
    text = (
        resources.files("services.monitoring.domain")
        .joinpath("data", "fhir_codes.v1.json")
        .read_text(encoding="utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


def _instrument(code: str) -> dict[str, Any]:
    known: dict[str, Any] | None = codes()["instruments"].get(code)
    if known is not None:
        return known
    base = codes()["project_base"]
    return {
        "questionnaire": f"{base}/Questionnaire/{code}",
        "total": {"system": f"{base}/CodeSystem/instrument-score", "code": f"{code}-total"},
        "items": {},
        "answers": {},
    }


def _when(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _items(instrument: Mapping[str, Any], answers: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item, value in answers.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue  # refused, missing or not a score: not an answer
        loinc = instrument["items"].get(item)
        coded = instrument["answers"].get(str(value))
        if loinc and coded:
            answer: dict[str, Any] = {
                "valueCoding": {"system": codes()["loinc"], "code": coded[0], "display": coded[1]}
            }
        else:
            answer = {"valueInteger": value}
        out.append({"linkId": loinc or item, "answer": [answer]})
    return out


def questionnaire_response(report: Mapping[str, Any], patient_ref: str) -> dict[str, Any]:
    """One stored report (a ``symptom_reports`` row) as a validated QuestionnaireResponse."""
    instrument = _instrument(str(report["instrument"]))
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": str(report["id"]),
        "questionnaire": instrument["questionnaire"],
        "status": "completed",
        "subject": {"reference": patient_ref},
        "authored": _when(report["reported_at"]),
    }
    items = _items(instrument, report.get("answers") or {})
    if items:
        resource["item"] = items
    out: dict[str, Any] = QuestionnaireResponse.model_validate(resource).model_dump(
        mode="json", exclude_none=True
    )
    return out


def observation_id(report_id: uuid.UUID | str) -> uuid.UUID:
    return uuid.uuid5(_OBSERVATION_NS, str(report_id))


def score_observation(report: Mapping[str, Any], patient_ref: str) -> dict[str, Any]:
    """The report's total as a validated Observation (category survey)."""
    instrument = _instrument(str(report["instrument"]))
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(observation_id(report["id"])),
        "status": "final",
        "category": [{"coding": [codes()["observation_category"]]}],
        "code": {"coding": [instrument["total"]]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": _when(report["reported_at"]),
        "derivedFrom": [{"reference": f"urn:uuid:{report['id']}"}],
    }
    if report.get("band") == NOT_SCORED:
        resource["dataAbsentReason"] = {
            "coding": [{"system": DATA_ABSENT, "code": "not-performed"}]
        }
    else:
        resource["valueInteger"] = int(report["total_score"])
        resource["interpretation"] = [{"text": str(report["band"])}]
    out: dict[str, Any] = Observation.model_validate(resource).model_dump(
        mode="json", exclude_none=True
    )
    return out


def episode_flag(episode: Episode, patient_ref: str) -> dict[str, Any]:
    """An episode as a validated Flag: active while open, with its priority (PH RED, PM AMBER)."""
    c = codes()
    priority = c["flag_priority"]["by_severity"][episode.severity.value]
    resource: dict[str, Any] = {
        "resourceType": "Flag",
        "id": str(episode.id),
        "extension": [
            {
                "url": c["flag_priority"]["extension"],
                "valueCodeableConcept": {
                    "coding": [{"system": c["flag_priority"]["system"], **priority}]
                },
            }
        ],
        "status": "active" if episode.status.value == "open" else "inactive",
        "category": [{"coding": [c["flag_category"]]}],
        "code": {
            "coding": [{"system": c["episode_family_system"], "code": episode.family}],
            "text": f"{episode.family} escalation ({episode.severity.value})",
        },
        "subject": {"reference": patient_ref},
        "period": {"start": episode.opened_at.isoformat()},
    }
    if episode.resolved_at is not None:
        resource["period"]["end"] = episode.resolved_at.isoformat()
    out: dict[str, Any] = Flag.model_validate(resource).model_dump(mode="json", exclude_none=True)
    return out


def searchset(resources_: Iterable[dict[str, Any]]) -> dict[str, Any]:
    entries = [
        {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in resources_
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "entry": entries,
    }
    out: dict[str, Any] = Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
    return out


def reports_bundle(reports: Sequence[Mapping[str, Any]], patient_ref: str) -> dict[str, Any]:
    """Each report's QuestionnaireResponse followed by its score Observation."""
    out = []
    for r in reports:
        out.append(questionnaire_response(r, patient_ref))
        out.append(score_observation(r, patient_ref))
    return searchset(out)


def episodes_bundle(episodes: Sequence[Episode], patient_ref: str) -> dict[str, Any]:
    return searchset(episode_flag(e, patient_ref) for e in episodes)
