"""``db.is_postgres``: the one test that guards PostgreSQL-only SQL (row and advisory locks,
``SKIP LOCKED``, its ``INSERT ... ON CONFLICT``), for every kind of bind the chassis hands it."""

from __future__ import annotations

from pathlib import Path

from services.chassis.clock import FrozenClock
from services.chassis.db import is_postgres, make_engine, make_session_factory
from services.chassis.uow import UnitOfWorkFactory
from services.monitoring.adapters.orm import metadata


async def test_a_postgresql_engine_and_its_sessions_are_postgres() -> None:
    # Never connected: creating an engine or a session opens no connection.
    engine = make_engine("postgresql+asyncpg://taper:unused@127.0.0.1:1/taper")
    sessions = make_session_factory(engine)
    try:
        assert is_postgres(engine)
        assert is_postgres(engine.sync_engine)
        async with sessions() as session:
            assert is_postgres(session.bind)
        assert UnitOfWorkFactory(sessions, FrozenClock(), metadata).is_postgres
    finally:
        await engine.dispose()


async def test_sqlite_engines_connections_and_sessions_are_not(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/m.db")
    sessions = make_session_factory(engine)
    try:
        assert not is_postgres(engine)
        async with engine.connect() as connection:
            assert not is_postgres(connection)
            assert not await connection.run_sync(is_postgres)  # a sync Connection: migrations
        async with sessions() as session:
            assert not is_postgres(session.bind)
        assert not UnitOfWorkFactory(sessions, FrozenClock(), metadata).is_postgres
    finally:
        await engine.dispose()
