"""A fault reaches every process of a target. PostgreSQL's backends call setsid(): stopping only
the postmaster's process group would leave them answering, and a "hung" database would not hang."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import asyncpg
import pytest

from deploy.localstack.postgres import LocalPostgres, PostgresLaunchError, run_sync
from deploy.localstack.process import signal_tree
from tests.plugins.infra import unavailable

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres() -> Iterator[LocalPostgres]:
    pg = LocalPostgres(fast=True)
    try:
        pg.start()
    except PostgresLaunchError as exc:
        pg.stop()
        unavailable(f"PostgreSQL could not start: {exc}")
    yield pg
    signal_tree(pg.proc.pid, signal.SIGCONT) if pg.proc else None
    pg.stop()


def test_a_stopped_postgres_answers_nothing_until_continued(postgres: LocalPostgres) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(postgres.asyncpg_dsn(), timeout=10)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            assert postgres.proc is not None
            signal_tree(postgres.proc.pid, signal.SIGSTOP)
            with pytest.raises(TimeoutError):  # the connection's backend is stopped too
                await conn.fetchval("SELECT 2", timeout=2)
            signal_tree(postgres.proc.pid, signal.SIGCONT)
            # the cancelled query's connection is gone; a new one answers again
            again = await asyncpg.connect(postgres.asyncpg_dsn(), timeout=10)
            assert await again.fetchval("SELECT 3") == 3
            await again.close()
        finally:
            conn.terminate()

    run_sync(lambda: asyncio.wait_for(scenario(), 60))
