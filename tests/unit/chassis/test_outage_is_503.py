"""A request that finds the database down or restarting is a 503 with Retry-After (the client
retries), never a 500; the error's message (it may carry bound parameters) is not echoed."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import exc as sa_exc

from services.chassis.http import create_app
from services.chassis.settings import ServiceSettings

MARKED_PHI = "SYNTHPHI-outage"


def _client(error: BaseException) -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/db")
    async def db() -> None:
        raise error

    app = create_app(
        ServiceSettings(service_name="svc", environment="test"),
        routers=[router],
        readiness_checks={},
        tracer_provider=TracerProvider(),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://svc")


def _cannot_connect_now() -> BaseException:
    import asyncpg.exceptions

    orig = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    return sa_exc.DBAPIError(f"SELECT {MARKED_PHI}", {}, orig)


@pytest.mark.parametrize(
    "error",
    [
        sa_exc.OperationalError(f"SELECT {MARKED_PHI}", {}, ConnectionRefusedError()),
        _cannot_connect_now(),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=["operational", "cannot-connect-now", "refused"],
)
async def test_database_unreachable_is_503_with_retry_after(error: BaseException) -> None:
    async with _client(error) as client:
        response = await client.get("/api/svc/db")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert MARKED_PHI not in response.text


async def test_any_other_error_stays_a_bare_500() -> None:
    async with _client(ValueError(MARKED_PHI)) as client:
        response = await client.get("/api/svc/db")
    assert response.status_code == 500
    assert MARKED_PHI not in response.text
