"""Scheduler's reference data, under ``/api/scheduler/reference`` (issue 18 part 8): the drug
codes a taper or plan names, their equivalence, and the products (formulations) a plan's
``formulations`` lists, with the amounts each makes. Built from the planning data
(``domain/data/equivalence.v1.json``, ``formulations.v1.json``) on each request: the same
tables the request validators and the planner read. Caching and who may read: chassis
``reference_data``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.chassis.auth import CurrentPrincipal
from services.chassis.decimals import DecimalStr
from services.chassis.openapi import name_operations
from services.chassis.reference_data import CACHED, cached_reference
from services.chassis.runtime import ServiceRuntime
from services.scheduler.domain.planning import (
    DrugEquivalence,
    Formulation,
    equivalence_v1,
    formulations_v1,
)


class ProductOut(BaseModel):
    code: str = Field(description="The product code a plan's formulations lists.")
    kind: Literal["tablet", "liquid"] = Field(description="tablet (or capsule) or liquid.")
    strength_mg: DecimalStr | None = Field(description="mg per tablet; null for a liquid.")
    scored: bool = Field(description="A scored tablet can be halved (never quartered).")
    concentration_mg_per_ml: DecimalStr | None = Field(description="mg per mL; null for a tablet.")
    increment_ml: DecimalStr | None = Field(
        description="The smallest volume its measuring device measures reliably; null for a tablet."
    )
    units_mg: list[DecimalStr] = Field(
        description="The amounts one piece (a tablet, half a scored one, one increment of a "
        "liquid) gives, largest first: a dose is makeable from this product when it is a sum "
        "of them."
    )


class EquivalenceOut(BaseModel):
    column: str = Field(description="The published source (equivalence_column of a plan).")
    mg_equal_to_10mg_diazepam: DecimalStr | None = Field(
        description="mg of the drug about equal to 10 mg diazepam; null: the source gives none."
    )


class DrugOut(BaseModel):
    code: str = Field(description="The drug code a taper or plan names.")
    half_life_class: Literal["ultra_short", "short", "intermediate", "long"] = Field(
        description="Its half-life class (what a new taper's half_life_class must say)."
    )
    equivalence: list[EquivalenceOut] = Field(description="Its diazepam equivalence per source.")
    max_daily_mg: DecimalStr | None = Field(
        description="A plausible maximum daily dose: a plan above it needs a clinician's "
        "confirmation (dose_above_maximum_reason_code); null: none on file."
    )
    published_range_mg: list[DecimalStr] | None = Field(
        description="[low, high]: the published mg equal to 10 mg diazepam across sources "
        "(an equivalence override far outside it needs a confirmation); null: none on file."
    )
    tapering_strips: bool = Field(
        description="Tapering strips (any daily dose, compounded) exist for it."
    )
    products: list[ProductOut] = Field(description="Its products on the catalogue.")


class DrugCatalogueOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "equivalence_version": "1",
                    "formulations_version": "1",
                    "default_equivalence_column": "ashton",
                    "equivalence_columns": ["ashton", "va_dod"],
                    "drugs": [
                        {
                            "code": "diazepam",
                            "half_life_class": "long",
                            "equivalence": [
                                {"column": "ashton", "mg_equal_to_10mg_diazepam": "10"},
                                {"column": "va_dod", "mg_equal_to_10mg_diazepam": "10"},
                            ],
                            "max_daily_mg": "40",
                            "published_range_mg": ["5", "10"],
                            "tapering_strips": True,
                            "products": [
                                {
                                    "code": "diazepam_tab_2mg",
                                    "kind": "tablet",
                                    "strength_mg": "2",
                                    "scored": True,
                                    "concentration_mg_per_ml": None,
                                    "increment_ml": None,
                                    "units_mg": ["2", "1"],
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )

    equivalence_version: str = Field(description="Version of the equivalence data.")
    formulations_version: str = Field(description="Version of the product catalogue.")
    default_equivalence_column: str = Field(
        description="The source used when a plan names no equivalence_column."
    )
    equivalence_columns: list[str] = Field(description="Every equivalence_column accepted.")
    drugs: list[DrugOut] = Field(description="Every drug code accepted, in code order.")


def _product(f: Formulation) -> ProductOut:
    return ProductOut(
        code=f.code,
        kind="liquid" if f.kind == "liquid" else "tablet",
        strength_mg=f.strength_mg,
        scored=f.scored,
        concentration_mg_per_ml=f.concentration_mg_per_ml,
        increment_ml=f.increment_ml,
        units_mg=sorted(set(f.units_mg), reverse=True),
    )


def _drug(row: DrugEquivalence, strips: frozenset[str]) -> DrugOut:
    products = formulations_v1().for_drug(row.drug)
    return DrugOut(
        code=row.drug,
        half_life_class=row.half_life_class,  # checked by the model
        equivalence=[EquivalenceOut(column=c, mg_equal_to_10mg_diazepam=v) for c, v in row.columns],
        max_daily_mg=row.max_daily_mg,
        published_range_mg=list(row.published_range_mg) if row.published_range_mg else None,
        tapering_strips=row.drug in strips,
        products=[_product(f) for f in products],
    )


def drug_catalogue() -> DrugCatalogueOut:
    table, catalogue = equivalence_v1(), formulations_v1()
    columns = [c for c, _ in table.drugs[0].columns] if table.drugs else []
    return DrugCatalogueOut(
        equivalence_version=table.version,
        formulations_version=catalogue.version,
        default_equivalence_column=table.default_column,
        equivalence_columns=columns,
        drugs=[
            _drug(row, catalogue.tapering_strip_drugs)
            for row in sorted(table.drugs, key=lambda d: d.drug)
        ],
    )


OPERATION_IDS = {"GET /reference/drugs": "listDrugs"}


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["reference data"])

    @router.get(
        "/reference/drugs",
        response_model=DrugCatalogueOut,
        responses=CACHED,
        summary="Drug codes, their diazepam equivalence and products (any signed-in user)",
    )
    async def list_drugs(_: CurrentPrincipal, request: Request) -> Response:
        return cached_reference(request, drug_catalogue())

    return [name_operations(router, OPERATION_IDS)]
