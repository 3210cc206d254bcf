"""The HTTP app factory every service uses: routes under ``/api/<service>``, health, readiness,
field-level 4xx errors, no stack traces or echoed input in responses, tracing, metrics.

``/ready`` asks what a request needs: the database. Kafka being away takes no replica out of
service — the outbox accepts writes and the relay publishes them when the broker is back — so the
broker shows in ``/health``'s ``dependencies``, in ``taper_broker_up`` and in an alert instead.
``/metrics`` (Prometheus text) sits at the root, outside ``/api/<service>``: the gateway does not
route it, Prometheus scrapes each service's port directly."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Status, StatusCode, TracerProvider
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.http_api import api_version
from services.chassis import clock_api
from services.chassis.auth import TokenVerifier
from services.chassis.clock import Clock
from services.chassis.errors import Conflict, FieldRefusal, NotFound, PermanentError
from services.chassis.idempotency import Replay
from services.chassis.metrics import NO_METRICS, HttpMetricsMiddleware, ServiceMetrics
from services.chassis.openapi import camel, without_placeholder_json
from services.chassis.outage import is_outage
from services.chassis.pagination import BadCursor
from services.chassis.settings import ServiceSettings
from services.chassis.telemetry import record_request_id, valid_request_id

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]
HealthDetail = Callable[[], Awaitable[dict[str, str]]]
Exposition = Callable[[], Awaitable[bytes]]
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class FieldError(BaseModel):
    """One invalid field: where, what is wrong, the error's type (never the input itself)."""

    loc: list[str | int] = Field(
        description="Where: body, query, path or header, then the field's path."
    )
    msg: str = Field(description="What is wrong, in English.")
    type: str = Field(description="The error's kind (missing, value_error ...).")


class ErrorBody(BaseModel):
    """Every error answer of every service (and of the gateway): ``detail`` is a sentence, or for
    an invalid request the list of field errors."""

    detail: str | list[FieldError] = Field(
        description="A sentence, or for an invalid request the list of field errors."
    )
    request_id: str | None = Field(default=None, description="Only on 500: quote it to ops.")


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "checks": {"database": True}}]}
    )

    status: str = Field(description="ready | not ready.")
    checks: dict[str, bool] = Field(description="Each dependency a request needs: reachable?")


class Health(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "service": "scheduler",
                    "dependencies": {"database": "up", "broker": "up"},
                }
            ]
        }
    )

    status: str = Field(description="Always ok: the process answers.")
    service: str = Field(description="The service's name.")
    dependencies: dict[str, str] | None = Field(
        None,
        description="Detail only: up, down or unknown per dependency; absent if none.",
    )


def _documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


# Documented on every API operation, so clients (and the schema fuzzer) can rely on the shape of
# every refusal: 401/403 from authorization, 404/409/422 from the service, 413/414/429/431 from
# the gateway in front of it. An operation documents other answers (410, 503 ...) itself.
API_ERRORS = _documented(401, 403, 404, 409, 413, 414, 422, 429, 431)


def create_app(
    settings: ServiceSettings,
    *,
    routers: Iterable[APIRouter],
    readiness_checks: dict[str, ReadinessCheck],
    tracer_provider: TracerProvider,
    metrics: ServiceMetrics = NO_METRICS,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    title: str | None = None,
    health_detail: HealthDetail | None = None,
    exposition: Exposition | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    prefix = settings.url_prefix
    app = FastAPI(
        title=title or f"taper {settings.service_name}",
        version=api_version(settings.service_name),
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)

    system = APIRouter(prefix=prefix, tags=["system"])
    service = camel(settings.service_name)  # operationIds are unique across the four services

    @system.get(
        "/health",
        operation_id=f"get{service}Health",
        response_model=Health,
        response_model_exclude_none=True,  # no dependencies reported: the key is absent
        summary="Liveness: the process is up (and, as detail, whether its dependencies answer)",
    )
    async def health() -> dict[str, Any]:
        body: dict[str, Any] = {"status": "ok", "service": settings.service_name}
        if health_detail is not None:  # detail only: a broker outage is no reason to restart us
            body["dependencies"] = await health_detail()
        return body

    @system.get(
        "/ready",
        operation_id=f"get{service}Readiness",
        summary="Readiness: what a request needs (the database) is reachable",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A dependency is unreachable"}},
    )
    async def ready() -> JSONResponse:
        results: dict[str, bool] = {}
        for name, check in readiness_checks.items():
            try:
                results[name] = await check()
            except Exception:
                results[name] = False
        ok = all(results.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": results},
            status_code=200 if ok else 503,
        )

    app.include_router(system, responses=_documented(414, 429, 431))
    if clock is not None:  # public like /health (clock_api says why)
        system_clock = clock_api.router(settings.service_name, clock)
        app.include_router(system_clock, prefix=prefix, responses=_documented(414, 429, 431))
    if exposition is not None:

        async def prometheus_metrics(_: Request) -> Response:
            return Response(await exposition(), media_type=PROMETHEUS_TEXT)

        app.add_route("/metrics", prometheus_metrics, methods=["GET"], include_in_schema=False)
    for router in routers:
        app.include_router(router, prefix=prefix, responses=API_ERRORS)
    _install_error_handlers(app)
    generate = app.openapi
    app.openapi = lambda: without_placeholder_json(generate())  # type: ignore[method-assign]
    # Innermost of ours: an unexpected error is answered here and goes no further (see the class).
    app.add_middleware(UnhandledErrorMiddleware)
    # HTTP metrics come from our middleware (chassis/metrics.py says why), not the instrumentation.
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics, routes=app.routes)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        meter_provider=NoOpMeterProvider(),
        server_request_hook=record_request_id,
        excluded_urls=f"{prefix}/health,{prefix}/ready,/metrics",
    )
    return app


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # loc/msg/type only: the offending input is not echoed back (it may be PHI).
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _field_errors(exc)}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(Replay)
    async def replay(_: Request, exc: Replay) -> Response:
        return exc.response()  # the first answer to this Idempotency-Key (chassis/idempotency.py)

    @app.exception_handler(BadCursor)
    async def bad_page_cursor(_: Request, exc: BadCursor) -> JSONResponse:
        detail = [{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(FieldRefusal)
    async def refused(_: Request, exc: FieldRefusal) -> JSONResponse:
        # The domain's refusal naming the field: the same body as a request's own field errors.
        return JSONResponse({"detail": exc.detail()}, status_code=422)

    @app.exception_handler(PermanentError)
    async def unprocessable(_: Request, exc: PermanentError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Reached only if UnhandledErrorMiddleware is bypassed; Starlette re-raises after it.
        return _internal_error(exc, request.headers.get("x-request-id"))


RETRY_AFTER_S = 5  # a PostgreSQL restart takes seconds; clients retry the same request


def _internal_error(exc: BaseException, request_id: str | None) -> JSONResponse:
    if is_outage(exc):
        # The database (or the network to it) is down or restarting: the request may succeed
        # in a moment, so 503 with Retry-After, not a 500 that reads as a bug (issue 14).
        log.warning("dependency unavailable", extra={"error_type": type(exc).__name__})
        return JSONResponse(
            {"detail": "temporarily unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    # Frames but not the message: third-party messages can carry request data (PHI).
    log.error(
        "unhandled error",
        extra={
            "error_type": type(exc).__name__,
            "frames": traceback.format_tb(exc.__traceback__)[-5:],
        },
    )
    return JSONResponse(
        {"detail": "internal error", "request_id": valid_request_id(request_id)},
        status_code=500,
    )


class UnhandledErrorMiddleware:
    """Answers an unexpected error with the bare 500 and does not re-raise it.

    Starlette's ``ServerErrorMiddleware`` runs the ``Exception`` handler and then re-raises the
    error "so the server can log it": uvicorn then logged it with ``exc_info`` — the message of a
    SQLAlchemy or pydantic error, i.e. request data (a NUL byte's text field was seen in a log
    line). Here the error stops: logged once without its message, never seen by the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # The request's span keeps the error (its type only once exported: telemetry.py's
            # RedactingSpanExporter), as it did when the error went through the instrumentation.
            span = trace.get_current_span()
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            headers = dict(scope.get("headers") or ())
            request_id = headers.get(b"x-request-id", b"").decode("latin-1") or None
            response = _internal_error(exc, request_id)
            if not started:  # else the client sees a cut-off response, as it would anyway
                await response(scope, receive, send)
