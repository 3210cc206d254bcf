"""Issue 18 part 8 over the real nginx gateway: reference data keep the service's
Cache-Control (public, revalidated by ETag: 304 through nginx) instead of the gateway's
no-store, while everything else stays no-store; the clock is public through the gateway."""

from __future__ import annotations

import uuid

import httpx

from services.chassis.auth import Role, issue_dev_token
from services.chassis.reference_data import CACHE_CONTROL
from tests.support.served import Served

REFERENCE = (
    "/api/scheduler/reference/drugs",
    "/api/monitoring/reference/questionnaires",
    "/api/monitoring/reference/red-flags",
    "/api/group-matching/reference/languages",
    "/api/group-matching/reference/timezones",
)


def _token(served: Served) -> dict[str, str]:
    settings = served.apps.runtimes["monitoring"].settings
    token = issue_dev_token(settings, subject="p-1", role=Role.PATIENT, patient_id=uuid.uuid4())
    return {"Authorization": f"Bearer {token}"}


def test_reference_data_are_cacheable_through_the_gateway(served: Served) -> None:
    auth = _token(served)
    for path in REFERENCE:
        first = httpx.get(f"{served.url}{path}", headers=auth)
        assert first.status_code == 200, (path, first.text)
        assert first.headers.get_list("cache-control") == [CACHE_CONTROL], path
        assert first.headers["x-frame-options"] == "DENY"  # the security headers stay
        again = httpx.get(
            f"{served.url}{path}", headers={**auth, "If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 304, path
        assert again.content == b""
        refused = httpx.get(f"{served.url}{path}")  # no token
        assert refused.status_code == 401
        assert refused.headers.get_list("cache-control") == ["no-store"]


def test_patient_data_and_the_clock_stay_no_store(served: Served) -> None:
    auth = _token(served)
    patient = uuid.uuid4()
    own = httpx.get(f"{served.url}/api/monitoring/patients/{patient}/check-ins", headers=auth)
    assert own.status_code == 403  # another patient's: refused, and not cacheable either
    assert own.headers.get_list("cache-control") == ["no-store"]
    for service in ("scheduler", "monitoring", "notifications", "group-matching"):
        clock = httpx.get(f"{served.url}/api/{service}/clock")  # public: no token
        assert clock.status_code == 200, clock.text
        assert clock.headers.get_list("cache-control") == ["no-store"]
        assert clock.json()["scaled"] is False
