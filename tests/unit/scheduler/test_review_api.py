"""Issue 13 items 7, 11, 11a over the real app: implausible input is a 422 naming the field,
never a 500 and never a plan (before: 9999-12-20 raised OverflowError; clonazepam 6 x 166 mg
and an override of 0.0001 mg were planned; alprazolam 2 mg x 3 at 72 crossed over to 120 mg)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.notifications.entrypoints.api import OverrideIn, RotationIn
from tests.plans import PLAN_BODY
from tests.unit.scheduler.support import auth

PATIENT = uuid.uuid4()
PREVIEW = "/api/scheduler/plans/preview"
BODY = PLAN_BODY
FAR = "9999-12-20"


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, panel=[PATIENT])


def body(**changes: Any) -> dict[str, Any]:
    return {**BODY, **changes}


async def refused(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], headers: dict[str, str]
) -> list[list[Any]]:
    r = await client.post(url, json=payload, headers=headers)
    assert r.status_code == 422, r.text
    return [e["loc"] for e in r.json()["detail"]]


# --- 11: dates ---------------------------------------------------------------------------------
async def test_a_far_future_start_is_422_naming_start_on(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    assert ["body", "start_on"] in await refused(client, PREVIEW, body(start_on=FAR), clinician)
    r = await client.post(
        f"/api/scheduler/patients/{PATIENT}/plans", json=body(), headers=clinician
    )
    assert r.status_code == 201, r.text
    adjust = f"/api/scheduler/patients/{PATIENT}/plans/{r.json()['id']}/adjust"
    payload = {"reason_code": "replan", "start_on": FAR}
    assert ["body", "start_on"] in await refused(client, adjust, payload, clinician)


async def test_a_far_future_dose_reduction_is_422_naming_effective_on(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    url = f"/api/scheduler/patients/{PATIENT}/dose-reductions"
    payload = {"new_daily_dose_mg": "8", "effective_on": FAR, "reason_code": "scheduled"}
    assert ["body", "effective_on"] in await refused(client, url, payload, clinician)


def test_notification_rotations_and_overrides_refuse_far_dates() -> None:
    far = "9999-12-31T10:00:00+00:00"
    with pytest.raises(ValidationError) as err:
        RotationIn.model_validate(
            {"timezone": "UTC", "participants": ["c1"], "starts_at": far, "shift_hours": 12}
        )
    assert ("starts_at",) in [e["loc"] for e in err.value.errors()]
    with pytest.raises(ValidationError) as err:
        OverrideIn.model_validate(
            {"clinician": "c1", "starts_at": "2026-01-05T00:00:00+00:00", "ends_at": far}
        )
    assert ("ends_at",) in [e["loc"] for e in err.value.errors()]


# --- 11a: plausible doses and overrides -------------------------------------------------------
CLONAZEPAM_6X166 = body(
    drug="clonazepam",
    administrations_mg=["166"] * 6,
    formulations=["clonazepam_tab_2mg", "diazepam_tab_10mg"],
    crossover_wanted=True,
)


async def test_clonazepam_6_x_166_mg_is_refused_naming_the_doses(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    assert ["body", "administrations_mg"] in await refused(
        client, PREVIEW, CLONAZEPAM_6X166, clinician
    )


async def test_a_day_above_the_label_maximum_is_planned_only_with_a_confirmation(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    day = body(drug="clonazepam", administrations_mg=["8", "8", "8"])
    day["formulations"] = ["clonazepam_tab_2mg", "clonazepam_tab_0_5mg"]
    assert ["body", "administrations_mg"] in await refused(client, PREVIEW, day, clinician)
    confirmed = {**day, "dose_above_maximum_reason_code": "clinician_confirmed_high_dose"}
    r = await client.post(PREVIEW, json=confirmed, headers=clinician)
    assert r.status_code == 200, r.text


async def test_an_override_far_outside_the_published_range_needs_a_confirmation(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    tiny = {"mg_equal_to_10mg_diazepam": "0.0001", "reason_code": "clinician_judgement"}
    locs = await refused(client, PREVIEW, body(equivalence_override=tiny), clinician)
    assert ["body", "equivalence_override"] in locs
    inside = {**tiny, "mg_equal_to_10mg_diazepam": "2.5"}  # diazepam 5-10, widened x2
    r = await client.post(PREVIEW, json=body(equivalence_override=inside), headers=clinician)
    assert r.status_code == 200, r.text
    confirmed = {**tiny, "mg_equal_to_10mg_diazepam": "40", "outside_range_reason_code": "lab"}
    r = await client.post(PREVIEW, json=body(equivalence_override=confirmed), headers=clinician)
    assert r.status_code == 200, r.text


# --- 7: the crossover ceiling -----------------------------------------------------------------
async def test_a_crossover_above_the_ceiling_is_refused_naming_crossover_wanted(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    alprazolam = body(
        drug="alprazolam",
        administrations_mg=["2", "2", "2"],
        age=72,
        formulations=["alprazolam_tab_2mg", "diazepam_tab_10mg", "diazepam_tab_2mg"],
        crossover_wanted=True,
    )
    assert ["body", "crossover_wanted"] in await refused(client, PREVIEW, alprazolam, clinician)
    at_40 = {**alprazolam, "age": 40, "administrations_mg": ["1", "1"]}  # 40 mg
    r = await client.post(PREVIEW, json=at_40, headers=clinician)
    assert r.status_code == 200, r.text
    crossover = [s for s in r.json()["steps"] if s["kind"] == "crossover"]
    assert crossover[-1]["diazepam_eq_mg"] == "40"
