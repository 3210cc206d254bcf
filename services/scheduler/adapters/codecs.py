"""How the taper's values are stored as JSON (regimens, equivalence): one place, both ways."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from services.scheduler.domain import model


def regimen_json(regimen: model.Regimen) -> list[dict[str, str]]:
    return [{"drug": a.drug, "dose_mg": str(a.dose_mg)} for a in regimen]


def regimen_from(data: list[dict[str, Any]] | None) -> model.Regimen:
    return tuple(model.Administration(a["drug"], Decimal(a["dose_mg"])) for a in data or ())


def equivalence_json(equivalence: Mapping[str, Decimal]) -> dict[str, str] | None:
    return {d: str(mg) for d, mg in equivalence.items()} or None


def equivalence_from(data: Mapping[str, Any] | None) -> dict[str, Decimal]:
    return {d: Decimal(mg) for d, mg in (data or {}).items()}
