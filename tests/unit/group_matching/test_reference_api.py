"""Group matching's reference data (issue 18 part 8): exactly the languages and time zones a
participation (and a moderator) may name; built from what the validators check, so a language
added to the domain is served and accepted without touching the endpoint."""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

import httpx
import pytest
from pydantic import ValidationError

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from services.group_matching.domain import placement
from services.group_matching.entrypoints.api import ModeratorIn, ParticipationIn
from tests.runtimes import runtime_fixture

PREFIX = "/api/group-matching/reference"


runtime = runtime_fixture("group_matching", frozen=False, migrate=False)


async def read(runtime: ServiceRuntime, path: str) -> Any:
    token = issue_dev_token(runtime.settings, subject="dr-1", role=Role.CLINICIAN)
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get(f"{PREFIX}{path}")).status_code == 401
        r = await client.get(f"{PREFIX}{path}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def accepted(**fields: Any) -> bool:
    body = {"timezone": "Europe/Paris", "language": "en", **fields}
    try:
        ParticipationIn.model_validate(body)
    except ValidationError:
        return False
    return True


def moderates_in(language: str) -> bool:
    try:
        ModeratorIn.model_validate({"languages": [language], "max_cohorts": 1})
    except ValidationError:
        return False
    return True


async def test_exactly_the_accepted_languages_are_listed(runtime: ServiceRuntime) -> None:
    listed = (await read(runtime, "/languages"))["languages"]
    assert listed == sorted(listed)
    candidates = {*listed, *placement.LANGUAGES, "xx", "EN", "eng", ""}
    assert {c for c in candidates if accepted(language=c)} == set(listed)
    assert {c for c in candidates if moderates_in(c)} == set(listed)


async def test_a_language_added_to_the_domain_is_listed_and_accepted(
    runtime: ServiceRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(placement, "LANGUAGES", placement.LANGUAGES | {"eo"})
    assert "eo" in (await read(runtime, "/languages"))["languages"]
    assert accepted(language="eo") and moderates_in("eo")


async def test_exactly_the_accepted_time_zones_are_listed(runtime: ServiceRuntime) -> None:
    listed = (await read(runtime, "/timezones"))["timezones"]
    assert listed == sorted(listed)
    assert {"America/Chicago", "Europe/Paris", "UTC"} <= set(listed)
    candidates = {*listed, *available_timezones(), "Not/AZone", "EST", "europe/paris"}
    assert {c for c in candidates if accepted(timezone=c)} == set(listed)
