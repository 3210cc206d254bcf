"""What to say: the message (kind, template, facts) each taper event calls for. Pure.

Minimum necessary PHI. An SMS or email is read on lock screens and shared devices, so by default
a message names no drug and no dose ("Open the app to see your dose"); the ``detail`` variant
states the dose only for a patient who opted in (``include_dose_details``): a draft's params hold
dose facts only then. Messages never name the patient. A stored message names its template with
the version (``messages.v1:dose_reduced``) so a message written under v1 still renders as v1 after
a v2 ships (``catalogue.py``); it is rendered when it is sent (``rendering.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from services.notifications.domain.formatting import format_mg

VERSION = "messages.v1"


class Kind(StrEnum):
    """What a patient can opt out of, one by one."""

    DOSE_CHANGED = "dose_changed"
    CHECK_IN_DUE = "check_in_due"
    COHORT_ASSIGNED = "cohort_assigned"
    SAFETY_NOTICE = "safety_notice"  # RED escalation: help is coming, and who to call now


@dataclass(frozen=True)
class Draft:
    """A message to store: its kind (for opt-out), template id and the facts it may render.

    ``params`` is JSON-ready and holds dose facts only when the patient had opted in to dose
    details when the event arrived (minimum necessary, in our own database too).
    """

    kind: Kind
    template: str
    params: dict[str, Any]

    @property
    def expires_at(self) -> datetime | None:
        return expires_at(self.params)

    @property
    def urgent(self) -> bool:
        return is_urgent(self.params)


def is_urgent(params: Mapping[str, Any]) -> bool:
    """Sent whatever the hour: a patient in danger at 3 a.m. is told where to call at 3 a.m."""
    return params.get("urgent") is True


def expires_at(params: Mapping[str, Any]) -> datetime | None:
    """A reminder that arrives after its window closed is noise: when it stops being worth it."""
    closes = params.get("closes_at")
    return datetime.fromisoformat(closes) if isinstance(closes, str) else None


def template_id(name: str, version: str = VERSION) -> str:
    return f"{version}:{name}"


Regimen = Sequence[tuple[str, Decimal]]


def _doses(regimen: Regimen) -> list[list[str]]:
    return [[drug, format_mg(mg)] for drug, mg in regimen]


def dose_step(
    *,
    step_kind: str | None,
    drug: str,
    previous_mg: Decimal,
    new_mg: Decimal,
    regimen: Regimen | None,
    effective_on: date,
    with_dose: bool,
) -> Draft:
    """A taper step (``DoseReduced``).

    Final means every drug stops (all doses zero), and never a crossover: a crossover can take
    ``drug`` to 0 mg while diazepam continues, which must not read "your taper is complete".
    A crossover without a regimen (events from before regimens) cannot state every drug's dose,
    so it gets no dose facts at all rather than a misleading half of them.
    """
    params: dict[str, Any] = {"effective_on": effective_on.isoformat()}
    doses = list(regimen) if regimen else [(drug, new_mg)]
    final = step_kind != "crossover" and all(mg == 0 for _, mg in doses)
    if final:
        name = "dose_final"
        facts: dict[str, Any] = {"drugs": [d for d, _ in doses]}
    elif regimen is not None and len(regimen) > 1:
        name = "dose_regimen"
        facts = {"doses": _doses(regimen)}
    elif step_kind == "crossover":
        name, facts = "dose_regimen", {}
    else:
        name = "dose_reduced"
        facts = {"drug": drug, "mg": format_mg(new_mg), "previous_mg": format_mg(previous_mg)}
    if with_dose:
        params |= facts
    return Draft(Kind.DOSE_CHANGED, template_id(name), params)


def dose_restored(
    *,
    drug: str,
    restored_mg: Decimal,
    regimen: Regimen,
    effective_on: date,
    with_dose: bool,
) -> Draft:
    """A clinician returned the patient to the previous dose (``DoseRestored``)."""
    params: dict[str, Any] = {"effective_on": effective_on.isoformat()}
    if len(regimen) > 1:
        name = "dose_restored_regimen"
        facts: dict[str, Any] = {"doses": _doses(regimen)}
    else:
        name = "dose_restored"
        facts = {"drug": drug, "mg": format_mg(restored_mg)}
    if with_dose:
        params |= facts
    return Draft(Kind.DOSE_CHANGED, template_id(name), params)


def check_in_due(*, window_closes_at: datetime) -> Draft:
    closes = window_closes_at.astimezone(UTC).isoformat()
    return Draft(Kind.CHECK_IN_DUE, template_id("check_in_due"), {"closes_at": closes})


def safety_notice() -> Draft:
    """On a RED escalation: the care team has been alerted; emergency numbers (⚠ data, US)."""
    return Draft(Kind.SAFETY_NOTICE, template_id("safety_notice"), {"urgent": True})


def cohort_assigned(*, moved: bool) -> Draft:
    name = "cohort_moved" if moved else "cohort_assigned"
    return Draft(Kind.COHORT_ASSIGNED, template_id(name), {})


def cohort_left() -> Draft:
    """Taken out of a cohort by a change of stage or a cohort closing (not by their own choice)."""
    return Draft(Kind.COHORT_ASSIGNED, template_id("cohort_left"), {})
