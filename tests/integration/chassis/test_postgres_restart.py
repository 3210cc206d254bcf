"""PostgreSQL shut down and crashed while events flow: nothing dead-lettered, every event's
effect exactly once, in order (issue 14, defect 1).

The server is this test's own :class:`LocalPostgres` (not the session's shared one). Two outages:

1. A *smart* shutdown while a session of ours stays open, and every other backend terminated:
   the consumer's in-flight query fails with ``AdminShutdownError`` (57P01) and every reconnect
   with ``CannotConnectNowError`` ("the database system is shutting down", 57P03) for as long as
   we hold that session — far longer than the consumer's 3 attempts. Then refused connections
   until the server is started again.
2. SIGKILL of the postmaster and its backends mid-stream, then a start on the same data
   directory: refused connections, crash recovery, dead pooled connections.

``synchronous_commit`` stays on (unlike ``fast=True``): with it off a SIGKILL may lose the last
commits, and the test would measure PostgreSQL's durability setting instead of the consumer.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from contracts import DOSE_REDUCED
from services.chassis.runtime import ServiceRuntime, Subscription
from services.chassis.telemetry import make_meter_provider
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import dose_history, metadata
from services.monitoring.service_layer.dose_changes import record_dose_reduced
from services.monitoring.settings import MonitoringSettings
from tests.helpers import dose_reduced, eventually, produce_raw, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

EVENTS = 60


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    from deploy.localstack.postgres import LocalPostgres, PostgresLaunchError
    from tests.plugins.infra import unavailable

    pg = LocalPostgres(extra_config={"fsync": "off"})  # a process kill keeps the OS cache
    try:
        pg.start()
    except PostgresLaunchError as exc:
        pg.stop()
        unavailable(f"PostgreSQL could not start: {exc}")
    yield pg
    pg.stop()


def _backoffs(reader: InMemoryMetricReader) -> float:
    total = 0.0
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "taper.consumer.backoffs":
                    total += sum(p.value for p in metric.data.data_points)  # type: ignore[attr-defined]
    return total


async def test_a_postgres_crash_and_restart_dead_letters_nothing_and_loses_nothing(
    own_postgres: Any, kafka_bootstrap_servers: str
) -> None:
    pg = own_postgres
    database = f"restart_{uuid.uuid4().hex[:8]}"
    dsn = pg.create_database(database)
    patient = uuid.uuid4()
    key = str(patient).encode()  # one key: one partition, whose order must hold
    events = [dose_reduced(patient, step_number=n) for n in range(1, EVENTS + 1)]
    handled: list[uuid.UUID] = []

    async def record(event: Any, uow: UnitOfWork) -> None:
        handled.append(event.event_id)
        await record_dose_reduced(event, uow)
        # Pacing, not waiting for a condition: keeps the stream flowing for ~1 s so the kill
        # lands mid-stream, with a transaction open, rather than after the last event.
        await asyncio.sleep(0.02)

    reader = InMemoryMetricReader()
    runtime = ServiceRuntime(
        MonitoringSettings(
            environment="test",
            database_url=dsn,
            kafka_bootstrap_servers=kafka_bootstrap_servers,
            relay_poll_interval_s=0.2,
            timer_poll_interval_s=0.2,
            consumer_retry_backoff_s=0.05,
        ),
        metadata=metadata,
        subscriptions=[Subscription(DOSE_REDUCED, record)],
        meter_provider=make_meter_provider("monitoring", reader=reader),
    )

    async def committed() -> int:
        async with runtime.uow() as uow:
            query = sa.select(sa.func.count()).where(dose_history.c.patient_id == patient)
            return int(await uow.session.scalar(query) or 0)

    async with runtime:
        await produce_raw(
            kafka_bootstrap_servers, DOSE_REDUCED.name, [(key, e.to_bytes(), []) for e in events]
        )
        # 1. smart shutdown, held open by our session, the consumer's backends terminated
        await eventually(lambda: _handled_at_least(handled, 3), timeout=60, interval=0.005)
        holder = await asyncpg.connect(pg.asyncpg_dsn(database), timeout=10)
        await asyncio.to_thread(_pg_ctl, pg, "stop", "-m", "smart", "-W")
        await holder.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        # More backoffs than the consumer has attempts: all of them met "shutting down".
        await eventually(lambda: _backed_off(reader, 5), timeout=60)
        await holder.close()  # now the shutdown completes: connections are refused
        await asyncio.to_thread(pg.proc.wait, 60)
        await asyncio.to_thread(pg.start)

        # 2. SIGKILL mid-stream, then crash recovery on the same data directory
        seen = len(set(handled))
        await eventually(lambda: _handled_at_least(handled, seen + 3), timeout=60, interval=0.005)
        before = _backoffs(reader)
        pg.kill()
        await eventually(lambda: _backed_off(reader, before + 1), timeout=60)
        await asyncio.to_thread(pg.start)
        assert await eventually(lambda: _all(committed), timeout=120) == EVENTS

    assert len(set(handled)) == EVENTS
    async with _engine_on(dsn) as conn:
        rows = (
            await conn.execute(
                sa.select(dose_history.c.event_id, sa.func.count())
                .where(dose_history.c.patient_id == patient)
                .group_by(dose_history.c.event_id)
            )
        ).all()
    assert {event_id: n for event_id, n in rows} == {e.event_id: 1 for e in events}
    # Handler calls, repeats collapsed: a redelivery came before any later event, every time.
    assert [k for k, _ in itertools.groupby(handled)] == [e.event_id for e in events]
    dead = await read_topic(kafka_bootstrap_servers, DOSE_REDUCED.dlq, expect=10**6, timeout=3)
    assert [r for r in dead if r.key == key] == []


def _pg_ctl(pg: Any, *args: str) -> None:
    # LocalPostgres runs pg_ctl as the server's OS user, with its environment.
    proc = pg._run([pg._bin("pg_ctl"), *args, "-D", str(pg.data_dir)], 60)
    assert proc.returncode == 0, proc.stderr


async def _handled_at_least(handled: list[uuid.UUID], n: int) -> bool:
    return len(set(handled)) >= n


async def _backed_off(reader: InMemoryMetricReader, n: float) -> bool:
    return _backoffs(reader) >= n


async def _all(count: Any) -> int | None:
    try:
        n = int(await count())
    except Exception:  # the database is still coming back
        return None
    return n if n >= EVENTS else None


class _engine_on:
    def __init__(self, dsn: str) -> None:
        from services.chassis.db import make_engine

        self._engine = make_engine(dsn)

    async def __aenter__(self) -> Any:
        self._conn = await self._engine.connect()
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        await self._conn.close()
        await self._engine.dispose()
