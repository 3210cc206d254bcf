"""Monitoring's reference data (issue 18 part 8): every questionnaire, item, answer range and
red-flag code a symptom report is checked against is listed, and only those; each listed
answer range is exactly what a submitted report may say. Built from the domain data: a red flag
added there is served and accepted without touching the endpoint."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, get_args

import httpx
import pytest

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from services.monitoring.domain import instruments, rules
from services.monitoring.entrypoints.api import Instrument

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
PREFIX = "/api/monitoring"


class Patient:
    """A fresh patient per report (no episode of one report shapes the next)."""

    def __init__(self, runtime: ServiceRuntime, client: httpx.AsyncClient) -> None:
        self.runtime, self.client = runtime, client

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        patient = uuid.uuid4()
        token = issue_dev_token(
            self.runtime.settings, subject="p-1", role=Role.PATIENT, patient_id=patient
        )
        r = await self.client.post(
            f"{PREFIX}/patients/{patient}/symptom-reports",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201, r.text
        result: dict[str, Any] = r.json()
        return result


async def read(runtime: ServiceRuntime, client: httpx.AsyncClient, path: str) -> Any:
    token = issue_dev_token(runtime.settings, subject="ops-1", role=Role.OPS)
    r = await client.get(f"{PREFIX}{path}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def report(q: dict[str, Any], answer: Callable[[dict[str, Any]], int]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "instrument": q["code"],
        "instrument_version": q["version"],
        "answers": {item["code"]: answer(item) for item in q["items"]},
    }
    if q["orientation_gate"]:
        body["oriented"] = True
    return body


async def test_every_questionnaire_a_report_may_use_is_listed(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    listed = (await read(runtime, client, "/reference/questionnaires"))["questionnaires"]
    keys = {(q["code"], q["version"]) for q in listed}
    assert keys == set(instruments.catalogue())  # every (instrument, version) the domain scores
    assert {code for code, _ in keys} == set(get_args(Instrument))  # and the API accepts
    for q in listed:
        items = instruments.definition(q["code"], q["version"]).items
        assert [(i["code"], i["min"], i["max"]) for i in q["items"]] == [
            (i.code, i.min, i.max) for i in items
        ]


async def test_each_listed_range_is_what_a_report_may_answer(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    patient = Patient(runtime, client)
    for q in (await read(runtime, client, "/reference/questionnaires"))["questionnaires"]:
        for edge in ("min", "max"):
            result = await patient.submit(report(q, lambda item, edge=edge: item[edge]))
            assert result["refused_items"] == [], (q["code"], edge, result)
            band = (
                next(b["band"] for b in q["bands"] if b["min"] <= result["total_score"] <= b["max"])
                if q["bands"]
                else "unbanded"
            )
            assert result["band"] == band
        first = q["items"][0]
        beyond = report(q, lambda item, first=first: item["max"] + (item is first))
        refused = (await patient.submit(beyond))["refused_items"]
        assert [r["item"] for r in refused] == [first["code"]], (q["code"], refused)
        for red in q["red_items"]:  # a red item at its level escalates at once
            body = report(q, lambda item: item["min"])
            body["answers"][red["item"]] = red["at_or_above"]
            assert (await patient.submit(body))["severity"] == "RED"


async def test_every_red_flag_a_report_may_carry_is_listed(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    listed = [f["code"] for f in (await read(runtime, client, "/reference/red-flags"))["red_flags"]]
    assert listed == sorted(rules.rules_v2().red_flags)
    patient = Patient(runtime, client)
    gate_failed = {"instrument": "ciwa-b", "oriented": False}  # nothing else needed
    result = await patient.submit({**gate_failed, "red_flags": listed})
    assert result["refused_items"] == []
    assert {r["code"] for r in result["reasons"]} >= {f"red_flag:{f}" for f in listed}
    unknown = await patient.submit({**gate_failed, "red_flags": ["not_a_flag"]})
    assert [r["item"] for r in unknown["refused_items"]] == ["red_flags"]


@pytest.fixture
def extra_red_flag(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The rules data with one more red flag, as a new data version would ship it."""
    load = rules._load

    def with_extra(name: str) -> dict[str, Any]:
        raw = copy.deepcopy(load(name))
        if name == "rules.v2.json":
            raw["red_flags"]["chest_pain"] = "chest pain (a test's addition)"
        return raw

    monkeypatch.setattr(rules, "_load", with_extra)
    rules.rules_v2.cache_clear()
    yield
    monkeypatch.undo()
    rules.rules_v2.cache_clear()


async def test_a_red_flag_added_to_the_domain_is_listed_and_accepted(
    runtime: ServiceRuntime, client: httpx.AsyncClient, extra_red_flag: None
) -> None:
    flags = (await read(runtime, client, "/reference/red-flags"))["red_flags"]
    assert {"code": "chest_pain", "description": "chest pain (a test's addition)"} in flags
    body = {"instrument": "ciwa-b", "oriented": False, "red_flags": ["chest_pain"]}
    result = await Patient(runtime, client).submit(body)
    assert result["refused_items"] == []


async def test_reference_data_need_a_token(client: httpx.AsyncClient) -> None:
    for path in ("/reference/questionnaires", "/reference/red-flags"):
        assert (await client.get(f"{PREFIX}{path}")).status_code == 401
