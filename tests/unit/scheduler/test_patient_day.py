"""A step takes effect on the patient's own date, at their first dose, in their time zone
(issue 13, item 12a): a New York patient across the 2026 spring-forward (Sunday 8 March)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import pytest

from contracts import DoseReduced, DoseRestored
from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.scheduler.domain.patient_day import UnknownTimeZone, step_starts_at, zone
from tests.unit.scheduler.support import auth, clock, events, live_timers

PATIENT = uuid.uuid4()
BASE = f"/api/scheduler/patients/{PATIENT}"
NEW_YORK = "America/New_York"
# Diazepam 10 mg a day, steps every 2 weeks from Monday 23 February: the second step falls on
# Monday 9 March, the day after the clocks went forward.
BODY: dict[str, Any] = {
    "drug": "diazepam",
    "administrations_mg": ["5", "5"],
    "duration_weeks": 30,
    "age": 40,
    "start_on": "2026-02-23",
    "formulations": ["diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"],
    "timezone": NEW_YORK,
    # The clinician asks for the first step on the start date (by default it waits one interval),
    # so the two steps straddle the spring-forward.
    "first_step_on_start": True,
}


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, panel=[PATIENT])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "first_dose", "expected"),
    [
        (date(2026, 3, 7), time(8), utc(2026, 3, 7, 13)),  # EST, UTC-5
        (date(2026, 3, 8), time(8), utc(2026, 3, 8, 12)),  # the spring-forward day: EDT, UTC-4
        (date(2026, 10, 31), time(8), utc(2026, 10, 31, 12)),  # EDT
        (date(2026, 11, 1), time(8), utc(2026, 11, 1, 13)),  # the fall-back day: EST
        (date(2026, 3, 8), time(23, 30), utc(2026, 3, 9, 3, 30)),  # late: the next UTC date
    ],
)
def test_the_first_dose_of_the_local_date_is_dst_exact(
    day: date, first_dose: time, expected: datetime
) -> None:
    assert step_starts_at(day, NEW_YORK, first_dose) == expected


def test_without_the_patients_day_a_step_starts_at_utc_midnight_as_before() -> None:
    assert step_starts_at(date(2026, 3, 9), None, None) == utc(2026, 3, 9)
    # the time zone alone takes the data's default first dose (08:00 ⚠)
    assert step_starts_at(date(2026, 3, 9), NEW_YORK, None) == utc(2026, 3, 9, 12)


@pytest.mark.parametrize(
    "name",
    ["Mars/Olympus", "../../etc/passwd", "", "x" * 65, "/UTC", "posixrules", "zone.tab", "UTC\x00"],
)
def test_only_iana_names_are_time_zones(name: str) -> None:
    with pytest.raises(UnknownTimeZone):
        zone(name)


async def test_steps_and_dose_reduced_follow_the_patients_day(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    r = await client.post(f"{BASE}/plans", json=BODY, headers=clinician)
    assert r.status_code == 201, r.text
    plan = r.json()
    r = await client.post(f"{BASE}/plans/{plan['id']}/approve", json={}, headers=clinician)
    assert r.status_code == 200, r.text
    first, second = r.json()["steps"][:2]
    assert (first["effective_on"], second["effective_on"]) == ("2026-02-23", "2026-03-09")

    # 08:00 EST on 23 February is 13:00 UTC; at 00:00 UTC (7 pm on the 22nd in New York, the
    # old rule) and one minute before the first dose nothing takes effect.
    [timer] = await live_timers(runtime)
    assert timer["due_at"] == utc(2026, 2, 23, 13)
    for early in (utc(2026, 2, 23), utc(2026, 2, 23, 12, 59)):
        clock(runtime).set(early)
        assert await runtime.timers.fire_due() == 0
    clock(runtime).set(utc(2026, 2, 23, 13))
    assert await runtime.timers.fire_due() == 1
    [reduced] = [e for e in await events(runtime) if isinstance(e, DoseReduced)]
    assert reduced.effective_on == date(2026, 2, 23)
    assert reduced.effective_at == utc(2026, 2, 23, 13)
    assert reduced.timezone == NEW_YORK

    # After the clocks went forward, 08:00 EDT is 12:00 UTC.
    [timer] = await live_timers(runtime)
    assert timer["due_at"] == utc(2026, 3, 9, 12)
    clock(runtime).set(timer["due_at"] - timedelta(seconds=1))
    assert await runtime.timers.fire_due() == 0
    clock(runtime).set(timer["due_at"])
    assert await runtime.timers.fire_due() == 1
    latest = [e for e in await events(runtime) if isinstance(e, DoseReduced)][-1]
    assert (latest.effective_on, latest.effective_at) == (date(2026, 3, 9), utc(2026, 3, 9, 12))

    # 10 pm that Monday in New York (already Tuesday in UTC) the clinician returns the patient
    # to the prior dose: from the patient's today.
    clock(runtime).set(utc(2026, 3, 10, 2))
    r = await client.post(
        f"{BASE}/taper/return-to-prior-dose", json={"reason_code": "withdrawal"}, headers=clinician
    )
    assert r.status_code == 200, r.text
    assert (r.json()["timezone"], r.json()["first_dose_time"]) == (NEW_YORK, None)
    [restored] = [e for e in await events(runtime) if isinstance(e, DoseRestored)]
    assert restored.effective_on == date(2026, 3, 9)


@pytest.mark.parametrize(
    ("field", "value"),
    [("timezone", "Mars/Olympus"), ("timezone", "EST; DROP"), ("first_dose_time", "08:00+02:00")],
)
async def test_a_bad_time_zone_or_dose_time_is_422_naming_the_field(
    client: httpx.AsyncClient, clinician: dict[str, str], field: str, value: str
) -> None:
    r = await client.post(f"{BASE}/plans", json={**BODY, field: value}, headers=clinician)
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", field]]
    assert value not in r.text
    r = await client.post(
        f"{BASE}/taper",
        json={
            "drug": "diazepam",
            "half_life_class": "long",
            "current_daily_dose_mg": "10",
            field: value,
        },
        headers=clinician,
    )
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", field]]
