"""Service metrics: recorded where the work happens, labelled only with fixed, low-cardinality
values — route templates (never a concrete path), topics, outcomes, error classes, timer kinds."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.exc import OperationalError

from contracts import DOSE_REDUCED, DoseReduced
from services.chassis.clock import FrozenClock
from services.chassis.consumer import EventConsumer
from services.chassis.db import make_engine, make_session_factory
from services.chassis.deadletter import DeadLetters
from services.chassis.errors import PermanentError
from services.chassis.http import create_app
from services.chassis.metrics import ServiceMetrics
from services.chassis.outage import InfrastructureUnavailable
from services.chassis.outbox import OutboxRelay
from services.chassis.sampling import StateSampler
from services.chassis.settings import ServiceSettings
from services.chassis.telemetry import make_meter_provider
from services.chassis.timers import DueTimer, TimerPoller
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.monitoring.adapters.orm import metadata
from tests.helpers import dose_reduced
from tests.runtimes import migrated_engine
from tests.unit.chassis.test_consumer import FakeDeadLetters, FakeMessage, insert_dose

MARK = "zzphi"  # synthetic PHI: in messages and headers, never in a metric


def _points(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    """``{sorted attributes: value}`` of metric ``name`` (histograms: their count)."""
    found: dict[tuple[tuple[str, Any], ...], float] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    key = tuple(sorted((point.attributes or {}).items()))
                    if isinstance(point, HistogramDataPoint):
                        found[key] = point.count
                    else:
                        assert isinstance(point, NumberDataPoint)
                        found[key] = point.value
    return found


def _dump(reader: InMemoryMetricReader) -> str:
    data = reader.get_metrics_data()
    assert data is not None
    return data.to_json()


def _labels(attributes: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(attributes.items()))


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def metrics(reader: InMemoryMetricReader) -> ServiceMetrics:
    return ServiceMetrics(make_meter_provider("monitoring", reader=reader))


# --- HTTP -------------------------------------------------------------------------------------
async def test_http_requests_are_labelled_with_the_route_template_never_the_path(
    reader: InMemoryMetricReader, metrics: ServiceMetrics
) -> None:
    router = APIRouter()

    @router.get("/patients/{patient_id}/reports")
    async def reports(patient_id: uuid.UUID) -> list[str]:
        return []

    app = create_app(
        ServiceSettings(service_name="monitoring"),
        routers=[router],
        readiness_checks={},
        tracer_provider=TracerProvider(),
        metrics=metrics,
    )
    patient = uuid.uuid4()
    transport = httpx.ASGITransport(app=app)
    # The Host header and the user agent are the caller's text: neither may become a label.
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{MARK}.example") as c:
        headers = {"user-agent": f"{MARK}-agent", "x-request-id": "req-1"}
        assert (
            await c.get(f"/api/monitoring/patients/{patient}/reports", headers=headers)
        ).is_success
        assert (await c.get(f"/api/monitoring/patients/{patient}/reports")).is_success
        assert (await c.get("/api/monitoring/patients/not-a-uuid/reports")).status_code == 422
        assert (await c.get(f"/api/monitoring/nothing/{patient}")).status_code == 404

    template = "/api/monitoring/patients/{patient_id}/reports"
    method, route, status = "http.request.method", "http.route", "http.response.status_code"
    assert _points(reader, "http.server.request.duration") == {
        _labels({method: "GET", route: template, status: 200}): 2,
        _labels({method: "GET", route: template, status: 422}): 1,
        _labels({method: "GET", status: 404}): 1,  # no route matched: no http.route at all
    }
    everything = _dump(reader)
    assert str(patient) not in everything and "not-a-uuid" not in everything
    assert MARK not in everything and "req-1" not in everything


async def test_an_unhandled_error_is_recorded_as_a_500(
    reader: InMemoryMetricReader, metrics: ServiceMetrics
) -> None:
    router = APIRouter()

    @router.post("/boom")
    async def boom() -> None:
        raise ValueError(MARK)

    app = create_app(
        ServiceSettings(service_name="svc"),
        routers=[router],
        readiness_checks={},
        tracer_provider=TracerProvider(),
        metrics=metrics,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.post("/api/svc/boom")).status_code == 500
    assert _points(reader, "http.server.request.duration") == {
        (
            ("http.request.method", "POST"),
            ("http.response.status_code", 500),
            ("http.route", "/api/svc/boom"),
        ): 1
    }


# --- consumer and dead letters ----------------------------------------------------------------
def _consumer(
    handler: Any, uow_factory: UnitOfWorkFactory, dead: Any, metrics: ServiceMetrics
) -> EventConsumer:
    return EventConsumer(
        service="monitoring",
        topic=DOSE_REDUCED,
        handler=handler,
        uow_factory=uow_factory,
        dead_letters=dead,
        tracer_provider=TracerProvider(),
        max_attempts=2,
        retry_backoff_s=0,
        metrics=metrics,
    )


def _outcomes(reader: InMemoryMetricReader) -> dict[str, float]:
    return {
        dict(key)["outcome"]: value
        for key, value in _points(reader, "taper.events.consumed").items()
        if dict(key)["topic"] == DOSE_REDUCED.name
    }


async def test_the_consumer_counts_each_delivery_by_outcome(
    reader: InMemoryMetricReader, metrics: ServiceMetrics, uow_factory: UnitOfWorkFactory
) -> None:
    dead = FakeDeadLetters()
    consumer = _consumer(insert_dose, uow_factory, dead, metrics)
    body = dose_reduced().to_bytes()
    await consumer.handle(body, FakeMessage(body))  # type: ignore[arg-type]
    await consumer.handle(body, FakeMessage(body))  # type: ignore[arg-type]  # redelivered
    other = dose_reduced().to_bytes()
    await consumer.handle(other, FakeMessage(other))  # type: ignore[arg-type]
    await consumer.handle(b"not json", FakeMessage(b"not json"))  # type: ignore[arg-type]

    async def db_down(event: DoseReduced, uow: UnitOfWork) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError())

    third = dose_reduced().to_bytes()
    with pytest.raises(InfrastructureUnavailable):
        await _consumer(db_down, uow_factory, dead, metrics).handle(third, FakeMessage(third))  # type: ignore[arg-type]

    assert _outcomes(reader) == {"processed": 2, "duplicate": 1, "dead_lettered": 1, "retried": 1}
    assert _points(reader, "taper.consumer.backoffs") == {
        (("cause", "OperationalError"), ("topic", DOSE_REDUCED.name)): 1
    }


async def test_a_dead_letter_is_counted_by_its_error_class_never_its_message(
    reader: InMemoryMetricReader, metrics: ServiceMetrics, uow_factory: UnitOfWorkFactory
) -> None:
    published: list[dict[str, Any]] = []

    class FakeBroker:
        async def publish(self, body: bytes, **kwargs: Any) -> None:
            published.append(kwargs)

    dead = DeadLetters(
        service="monitoring",
        broker=FakeBroker(),  # type: ignore[arg-type]
        clock=FrozenClock(),
        metrics=metrics,
    )
    patient = uuid.uuid4()

    async def leaks(event: DoseReduced, uow: UnitOfWork) -> None:
        raise ValueError(f"{MARK} Jane Doe, born 1961-02-03")

    async def refuses(event: DoseReduced, uow: UnitOfWork) -> None:
        raise PermanentError(f"unknown patient {patient}")  # safe text, but one per patient

    for handler in (leaks, refuses):
        body = dose_reduced(patient).to_bytes()
        await _consumer(handler, uow_factory, dead, metrics).handle(body, FakeMessage(body))  # type: ignore[arg-type]
    poison = f'{{"note": "{MARK} Jane Doe"}}'.encode()
    await _consumer(insert_dose, uow_factory, dead, metrics).handle(poison, FakeMessage(poison))  # type: ignore[arg-type]

    assert len(published) == 3
    assert _points(reader, "taper.dead_letters") == {
        (("reason", "ValueError"), ("topic", DOSE_REDUCED.name)): 1,
        (("reason", "PermanentError"), ("topic", DOSE_REDUCED.name)): 1,
        (("reason", "MalformedEvent"), ("topic", DOSE_REDUCED.name)): 1,
    }
    assert _outcomes(reader) == {"dead_lettered": 3}
    everything = _dump(reader)
    assert MARK not in everything and str(patient) not in everything


def test_labels_outside_the_fixed_sets_are_replaced(
    reader: InMemoryMetricReader, metrics: ServiceMetrics
) -> None:
    metrics.dead_lettered(f"{MARK}.topic", f"{MARK} free text")
    metrics.timer_fired("kind with spaces")
    assert _points(reader, "taper.dead_letters") == {(("reason", "other"), ("topic", "other")): 1}
    assert _points(reader, "taper.timers.fired") == {(("kind", "other"),): 1}


# --- outbox relay and timers ------------------------------------------------------------------
class FlakyBroker:
    def __init__(self) -> None:
        self.down = True
        self.sent: list[str] = []

    async def publish(self, body: bytes, *, topic: str, **_: Any) -> Any:
        if self.down:
            raise OSError("broker unreachable")
        self.sent.append(topic)
        return _acknowledged()

    async def ping(self, timeout: float | None) -> bool:
        return not self.down


async def _acknowledged() -> None:
    return None


async def test_the_relay_counts_published_rows_and_the_sample_reports_the_backlog(
    reader: InMemoryMetricReader, metrics: ServiceMetrics, tmp_path: Path
) -> None:
    engine = await migrated_engine("monitoring", tmp_path)
    clock = FrozenClock()
    factory = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    broker = FlakyBroker()
    relay = OutboxRelay(
        service="monitoring",
        session_factory=factory.session_factory,
        tables=metadata,
        broker=broker,  # type: ignore[arg-type]
        clock=clock,
        tracer_provider=TracerProvider(),
        metrics=metrics,
    )
    sampler = StateSampler(
        metrics=metrics,
        engine=engine,
        outbox=metadata.tables["outbox"],
        clock=clock,
        broker=broker,
        group="monitoring",
        consumed_topics=[DOSE_REDUCED.name],
        bootstrap="unused:9092",
        min_interval_s=0,
        lag=lambda *_, **__: {("monitoring", DOSE_REDUCED.name, 0): 7},
    )
    try:
        assert _points(reader, "taper.outbox.pending") == {}  # not sampled yet: nothing to say
        await sampler.refresh()
        assert _points(reader, "taper.outbox.pending") == {(): 0}
        assert _points(reader, "taper.outbox.oldest_age") == {(): 0.0}
        assert _points(reader, "taper.database.up") == {(): 1}
        assert _points(reader, "taper.broker.up") == {(): 0}  # down: no lag asked for
        assert _points(reader, "taper.consumer.lag") == {}

        async with factory() as uow:
            await uow.publish(dose_reduced())
            await uow.publish(dose_reduced())
            await uow.commit()
        clock.advance(timedelta(seconds=30))
        with pytest.raises(OSError):
            await relay.publish_pending()  # the broker is down: the rows stay pending
        clock.advance(timedelta(seconds=15))
        await sampler.refresh()
        assert _points(reader, "taper.outbox.pending") == {(): 2}
        assert _points(reader, "taper.outbox.oldest_age") == {(): 45.0}

        broker.down = False
        assert await relay.publish_pending() == 2
        await sampler.refresh()
        assert _points(reader, "taper.relay.published") == {(("topic", DOSE_REDUCED.name),): 2}
        assert _points(reader, "taper.outbox.pending") == {(): 0}
        assert _points(reader, "taper.outbox.oldest_age") == {(): 0.0}
        assert _points(reader, "taper.broker.up") == {(): 1}
        lag = (("group", "monitoring"), ("partition", "0"), ("topic", DOSE_REDUCED.name))
        assert _points(reader, "taper.consumer.lag") == {lag: 7}

        await engine.dispose()
        clock.advance(timedelta(seconds=1))
        sampler._engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/x.db")
        await sampler.refresh()  # the database does not answer: 0, and no backlog to report
        assert _points(reader, "taper.database.up") == {(): 0}
        assert _points(reader, "taper.outbox.pending") == {}
    finally:
        await engine.dispose()


async def test_fired_timers_are_counted_by_kind(
    reader: InMemoryMetricReader, metrics: ServiceMetrics, uow_factory: UnitOfWorkFactory
) -> None:
    async def ok(timer: DueTimer, uow: UnitOfWork) -> None:
        pass

    async def fails(timer: DueTimer, uow: UnitOfWork) -> None:
        raise RuntimeError(MARK)

    poller = TimerPoller(
        service="monitoring",
        uow_factory=uow_factory,
        handlers={"checkin_due": ok, "broken": fails},
        tracer_provider=TracerProvider(),
        metrics=metrics,
    )
    async with uow_factory() as uow:
        now = uow.clock.now()
        await uow.schedule_timer("checkin_due", f"k-{uuid.uuid4()}", now)
        await uow.schedule_timer("checkin_due", f"k-{uuid.uuid4()}", now)
        await uow.schedule_timer("broken", "k-3", now)
        await uow.commit()
    assert await poller.fire_due() == 3
    assert _points(reader, "taper.timers.fired") == {(("kind", "checkin_due"),): 2}
    async with uow_factory() as uow:  # (the failed one is rescheduled, not counted as fired)
        timers = uow.table("timers")
        assert (
            await uow.session.scalar(
                sa.select(sa.func.count()).select_from(timers).where(timers.c.fired_at.is_(None))
            )
            == 1
        )
