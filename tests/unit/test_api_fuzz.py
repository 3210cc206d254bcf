"""Fuzzing every service's OpenAPI operations with schemathesis (issue 7, part): generated
requests — valid and invalid bodies, parameters and path ids — from a clinician with the patient
on their panel, straight to each app (ASGI, SQLite, no broker): never a 5xx, and every error is
JSON. Running it through the gateway, for every role, and checking responses against their own
schemas is the rest of issue 7."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from services.chassis.auth import Role, issue_dev_token
from services.chassis.migrations import upgrade_to_head
from tests.all_services import SERVICES, sqlite_runtime

PATIENT = uuid.uuid4()


class App:
    """One service's app on its own event loop (schemathesis drives it synchronously)."""

    def __init__(self, name: str, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.runtime = sqlite_runtime(name, directory)
        self.loop.run_until_complete(upgrade_to_head(self.runtime.engine, name))
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.runtime.app), base_url="http://test"
        )
        token = issue_dev_token(
            self.runtime.settings, subject="c-1", role=Role.CLINICIAN, panel=[PATIENT]
        )
        self.auth = {"Authorization": f"Bearer {token}"}
        self.sent = 0

    def send(self, case: Any) -> httpx.Response:
        self.sent += 1
        kwargs = case.as_transport_kwargs(base_url="http://test")
        headers = {**(kwargs.get("headers") or {}), **self.auth}
        passed = {k: kwargs[k] for k in ("params", "json", "content") if k in kwargs}
        request = self.client.request(kwargs["method"], kwargs["url"], headers=headers, **passed)
        return self.loop.run_until_complete(request)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.runtime.engine.dispose())
        self.loop.close()


@pytest.fixture(scope="module", params=list(SERVICES))
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    served = App(request.param, tmp_path_factory.mktemp(request.param))
    yield served
    served.close()


def test_no_generated_request_gets_a_5xx_and_errors_are_json(app: App) -> None:
    schema = schemathesis.openapi.from_dict(app.runtime.app.openapi())
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, schemathesis.core.result.Err):
            failures.append(f"operation not loadable: {result.err()}")
            continue
        operation = result.ok()
        if operation.path.endswith("/ready"):
            continue  # 503 by design here: no broker
        operations += 1

        strategy = operation.as_strategy()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def probe(case: Any) -> None:
            if case.path_parameters and "patient_id" in case.path_parameters:
                case.path_parameters["patient_id"] = str(PATIENT)
            response = app.send(case)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} -> {response.status_code}")
            elif response.status_code >= 400 and "json" not in response.headers.get(
                "content-type", ""
            ):
                failures.append(f"{case.method} {case.path} -> non-JSON {response.status_code}")

        probe()
    assert operations >= 5
    assert app.sent > 5 * operations  # hypothesis really generated requests for each
    assert failures == []
