"""Issue 18, parts 3 and 6, over the real nginx gateway in front of the four services: the merged
OpenAPI document at /api/openapi.json, the offline docs at /api/docs/, and CORS from an allow-list
(none by default) with preflights answered by the gateway and the security headers kept."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from deploy.localstack.gateway import MERGED_OPENAPI, LocalGateway
from services.chassis.auth import Role, issue_dev_token
from tests.plugins.infra import serving
from tests.support.served import Served

APP = "https://app.example.org"
OTHER_APP = "http://localhost:5173"
PATIENT = uuid.uuid4()
TAPER = f"/api/scheduler/patients/{PATIENT}/taper"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-resource-policy": "same-origin",
}
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, if-match",
}


@pytest.fixture(scope="module")
def cors_gateway(served: Served) -> Iterator[str]:
    """A second gateway over the same services, with an allow-list of two origins."""
    gateway = LocalGateway(
        upstreams=served.apps.ports,
        rate_per_second=100_000,
        burst=100_000,
        cors_origins=[APP, OTHER_APP],
    )
    for running in serving(gateway):
        yield running.url


def _patient(served: Served) -> dict[str, str]:
    settings = served.apps.runtimes["scheduler"].settings
    token = issue_dev_token(settings, subject="p-1", role=Role.PATIENT, patient_id=PATIENT)
    return {"Authorization": f"Bearer {token}"}


def _cors(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def _assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))


# --- the merged document and the docs page ------------------------------------------------------


def test_the_gateway_serves_the_merged_document_of_all_four_services(served: Served) -> None:
    answer = httpx.get(f"{served.url}/api/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert document == json.loads(MERGED_OPENAPI.read_text())
    prefixes = {path.split("/")[2] for path in document["paths"]}
    assert prefixes == {"scheduler", "monitoring", "notifications", "group-matching"}
    assert document["servers"][0]["url"] == "/"
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "ErrorBody" in document["components"]["schemas"]
    # Every path of it is routed by this gateway to a service that serves it.
    live = {
        path
        for service in ("scheduler", "monitoring", "notifications", "group-matching")
        for path in httpx.get(f"{served.url}/api/{service}/openapi.json").json()["paths"]
    }
    assert set(document["paths"]) == live


def test_the_docs_page_works_offline_from_the_gateways_own_files(served: Served) -> None:
    moved = httpx.get(f"{served.url}/api/docs")
    assert moved.status_code == 301 and moved.headers["location"] == "/api/docs/"
    page = httpx.get(f"{served.url}/api/docs/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html"
    _assert_security_headers(page)
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(referenced) == 4, referenced  # icon, CSS, Swagger UI, its initializer
    kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for ref in referenced:
        assert ref.startswith("/api/docs/"), f"{ref}: the page loads only the gateway's own files"
        asset = httpx.get(f"{served.url}{ref}")
        assert asset.status_code == 200, ref
        assert asset.headers["content-type"] == kinds[ref[ref.rfind(".") :]], ref
    initializer = httpx.get(f"{served.url}/api/docs/swagger-initializer.js").text
    assert '"/api/openapi.json"' in initializer and "://" not in initializer
    bundle = httpx.get(f"{served.url}/api/docs/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    # Swagger UI 5 reads OpenAPI 3.1 (what FastAPI writes); 4 shows a blank "unsupported" page.
    assert re.search(r'"5\.\d+\.\d+"', bundle), "Swagger UI 5.x expected"
    missing = httpx.get(f"{served.url}/api/docs/nothing-here.js")
    assert missing.status_code == 404 and missing.json() == {"detail": "not found"}


def test_each_services_docs_page_through_the_gateway_is_the_offline_one(served: Served) -> None:
    """FastAPI's own page loads Swagger UI from a CDN: through the gateway, /api/<service>/docs
    is the gateway's page instead (over that service's document, named by the page's path)."""
    docs_page = httpx.get(f"{served.url}/api/docs/").text
    for service in ("scheduler", "monitoring", "notifications", "group-matching"):
        page = httpx.get(f"{served.url}/api/{service}/docs")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html"
        assert page.text == docs_page
        assert httpx.get(f"{served.url}/api/{service}/openapi.json").status_code == 200


# --- CORS --------------------------------------------------------------------------------------


def test_without_an_allow_list_there_is_no_cors_at_all(served: Served) -> None:
    answer = httpx.get(f"{served.url}{TAPER}", headers={"Origin": APP, **_patient(served)})
    assert answer.status_code == 404  # the service answered (no taper yet)
    assert _cors(answer) == {} and "vary" not in answer.headers
    _assert_security_headers(answer)
    preflight = httpx.options(f"{served.url}{TAPER}", headers=PREFLIGHT)
    assert preflight.status_code == 405  # the service's answer: nginx did not take it
    assert _cors(preflight) == {}


def test_a_listed_origins_preflight_is_answered_by_the_gateway(
    served: Served, cors_gateway: str
) -> None:
    answer = httpx.options(f"{cors_gateway}{TAPER}", headers=PREFLIGHT)
    assert answer.status_code == 204, answer.text
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["access-control-allow-credentials"] == "true"
    methods = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= methods
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {
        "authorization",
        "content-type",
        "idempotency-key",
        "if-match",
        "last-event-id",
    } <= allowed
    assert int(answer.headers["access-control-max-age"]) > 0
    assert answer.headers["vary"] == "Origin"
    _assert_security_headers(answer)
    # The second listed origin too, and a preflight for any path (nginx does not route it).
    other = httpx.options(
        f"{cors_gateway}/api/monitoring/anything", headers={**PREFLIGHT, "Origin": OTHER_APP}
    )
    assert other.status_code == 204 and other.headers["access-control-allow-origin"] == OTHER_APP


def test_a_listed_origin_reads_answers_with_credentials_errors_included(
    served: Served, cors_gateway: str
) -> None:
    for headers, status in (
        ({"Origin": APP, **_patient(served)}, 404),  # the service's own answer
        ({"Origin": APP}, 401),  # no token: the refusal must be readable too
    ):
        answer = httpx.get(f"{cors_gateway}{TAPER}", headers=headers)
        assert answer.status_code == status, answer.text
        assert answer.headers["access-control-allow-origin"] == APP
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
        assert answer.headers["vary"] == "Origin"
        # not a preflight: no preflight headers
        assert "access-control-allow-methods" not in answer.headers
        _assert_security_headers(answer)
    gateway_404 = httpx.get(f"{cors_gateway}/nowhere", headers={"Origin": APP})
    assert gateway_404.status_code == 404
    assert gateway_404.headers["access-control-allow-origin"] == APP


def test_a_listed_origin_can_read_the_paging_and_concurrency_headers(
    served: Served, cors_gateway: str
) -> None:
    """A frontend on another origin pages a list: X-Next-Cursor and Link must be exposed to its
    script (and ETag, Idempotency-Replayed, Retry-After for writes), or it sees one page only."""
    settings = served.apps.runtimes["scheduler"].settings
    ops = {"Authorization": f"Bearer {issue_dev_token(settings, subject='ops-1', role=Role.OPS)}"}
    url = f"{cors_gateway}/api/scheduler/ops/audit"
    for _ in range(5):  # each read is audited: the log grows until it holds more than one page
        answer = httpx.get(url, params={"limit": 1}, headers={"Origin": APP, **ops})
        assert answer.status_code == 200, answer.text
        if "x-next-cursor" in answer.headers:
            break
    assert 'rel="next"' in answer.headers["link"]
    assert answer.headers["access-control-allow-origin"] == APP
    exposed = {
        h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")
    }
    assert {
        "x-next-cursor",
        "link",
        "etag",
        "idempotency-replayed",
        "retry-after",
        "x-request-id",
    } <= exposed
    following = httpx.get(
        url,
        params={"limit": 1, "cursor": answer.headers["x-next-cursor"]},
        headers={"Origin": APP, **ops},
    )
    assert following.status_code == 200 and following.json()[0]["id"] < answer.json()[0]["id"]


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.example.org.evil.example",  # a listed origin as a prefix
        "http://app.example.org",  # another scheme
        "https://app.example.org:8443",  # another port
        "null",  # sandboxed iframes, file:// pages
    ],
)
def test_an_origin_not_listed_gets_no_cors_header(
    served: Served, cors_gateway: str, origin: str
) -> None:
    answer = httpx.get(f"{cors_gateway}{TAPER}", headers={"Origin": origin, **_patient(served)})
    assert answer.status_code == 404
    assert _cors(answer) == {}
    assert answer.headers["vary"] == "Origin"  # the answer depends on Origin: caches must know
    _assert_security_headers(answer)
    preflight = httpx.options(f"{cors_gateway}{TAPER}", headers={**PREFLIGHT, "Origin": origin})
    assert preflight.status_code == 405  # not answered by the gateway: the service refuses it
    assert _cors(preflight) == {}
