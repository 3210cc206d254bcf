"""Fuzzing every service's OpenAPI operations through the nginx gateway (issue 7).

The four services run as real HTTP servers (uvicorn, SQLite, no broker) behind the real gateway;
schemathesis generates requests from each service's own OpenAPI document — valid ones, and invalid
ones (wrong types, missing or unknown fields, malformed ids and parameters) — for each role: a
patient on their own record, a clinician with the patient on their panel, ops, and no token at
all. Every answer must:

- never be a 5xx;
- have a documented status code and content type, and a body that fits its own schema (errors
  too: every refusal is the documented ``{"detail": ...}``).

Not checked here: that every schema-violating request is refused. Pydantic's lax mode accepts
"5" for 5 and a Unix time for a date-time on purpose (the value is unambiguous); the refusals that
matter — malformed JSON, a body that is not JSON, unknown fields, oversized bodies — are asserted
one by one in test_bad_input.py.

The gateway's rate limit is raised for this run (it is tested on its own); everything else —
body limit, headers, timeouts — is the production configuration. Examples per operation, role
and mode: ``TAPER_FUZZ_EXAMPLES`` (default 10). Each run draws new examples; a failure names the
request (as curl) to reproduce it.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from tests.all_services import SERVICES, api_operations, without_security
from tests.support.served import Served

PATIENT = uuid.uuid4()
EXAMPLES = int(os.environ.get("TAPER_FUZZ_EXAMPLES", "10"))
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ROLES: dict[str, dict[str, Any] | None] = {
    "patient": {"role": Role.PATIENT, "patient_id": PATIENT},
    "clinician": {"role": Role.CLINICIAN, "panel": [PATIENT]},
    "ops": {"role": Role.OPS},
    "anonymous": None,  # no token at all
}


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    unsendable: int = 0

    def summary(self) -> str:
        by_status: Counter[int] = Counter()
        for (_, status), n in self.statuses.items():
            by_status[status] += n
        sent = sum(self.sent.values())
        return (
            f"{sent} requests ({self.unsendable} unsendable), statuses {sorted(by_status.items())}"
        )


def _auth_for(role: str, runtime: ServiceRuntime) -> dict[str, str]:
    claims = ROLES[role]
    if claims is None:
        return {}
    return {"Authorization": "Bearer " + issue_dev_token(runtime.settings, subject=role, **claims)}


def _probe(
    client: httpx.Client,
    auth: dict[str, str],
    tally: Tally,
    label: str,
) -> Callable[[Any], None]:
    def probe(case: Any) -> None:
        case.headers = {**(case.headers or {}), **auth}
        kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
        try:
            response = client.request(
                kwargs["method"],
                kwargs["url"],
                headers=kwargs.get("headers"),
                params=kwargs.get("params"),
                json=kwargs.get("json"),
                content=kwargs.get("content"),
            )
        except httpx.LocalProtocolError:
            tally.unsendable += 1  # e.g. a header value HTTP itself forbids: no client sends it
            return
        tally.sent[label] += 1
        tally.statuses[(label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CONFORMANCE)
        except BaseException as exc:  # schemathesis raises an exception *group* of failures
            if isinstance(exc, KeyboardInterrupt):
                raise
            found = getattr(exc, "exceptions", [exc])
            details = "; ".join(
                f"{getattr(f, 'title', type(f).__name__)} ({getattr(f, 'message', '')[:200]})"
                for f in found
            )
            tally.failures.append(
                f"{label} {case.method} {case.formatted_path} -> {response.status_code}: "
                f"{details} [request: {case.as_curl_command()[:300]}]"
            )

    return probe


@pytest.mark.parametrize("service", list(SERVICES))
@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_every_operation_answers_within_its_own_schema_for_every_role(
    served: Served, service: str, mode: schemathesis.GenerationMode
) -> None:
    runtime = served.apps.runtimes[service]
    tally = Tally()
    # /ready answers its documented 503 here by design (no broker): tested with one elsewhere.
    operations = [
        op for op in api_operations(without_security(runtime.app.openapi()))
        if not op.path.endswith("/ready")
    ]  # fmt: skip
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for role in ROLES:
            auth = _auth_for(role, runtime)
            for operation in operations:
                pin = {"patient_id": str(PATIENT)} if "{patient_id}" in operation.path else None
                strategy = operation.as_strategy(mode, path_parameters=pin)
                run = settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )(given(strategy)(_probe(client, auth, tally, role)))
                try:
                    run()
                except Unsatisfiable:
                    pass  # nothing about this operation can be made invalid (e.g. GET /health)
    print(f"\n{service} {mode}: {len(operations)} operations, {tally.summary()}")
    assert not tally.failures, "\n".join(tally.failures)
    # The run really exercised the service as each role: requests were sent for every role and,
    # with valid data, each role was let through somewhere (not refused everything).
    assert all(tally.sent[role] >= len(operations) for role in ROLES)
    if mode.is_positive:
        for role in ROLES:
            allowed = sum(n for (who, s), n in tally.statuses.items() if who == role and s < 300)
            assert allowed > 0, f"{role} never got a 2xx from {service}"
