"""The audit log is append-only in the database itself (issue 7): every service's migrations make
PostgreSQL (and SQLite, the local default) refuse to change, remove or truncate an audit row, while
new rows go in as before."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from services.chassis.db import add_chassis_tables, make_engine
from services.chassis.migrations import upgrade_to_head
from tests.all_services import SERVICES

ATTACKS = {
    "update": "UPDATE audit_log SET outcome = 'allowed'",
    "delete": "DELETE FROM audit_log",
}


def _audit_log() -> sa.Table:
    metadata = sa.MetaData()
    add_chassis_tables(metadata)
    return metadata.tables["audit_log"]


async def _refuses_changes(url: str, service: str, attacks: dict[str, str]) -> None:
    engine = make_engine(url)
    try:
        await upgrade_to_head(engine, service)
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(_audit_log()).values(
                    at=datetime.now(UTC), actor="c-1", actor_role="clinician", action="read",
                    patient_id=uuid.uuid4(), resource="report", outcome="denied",
                )
            )  # fmt: skip
        for name, statement in attacks.items():
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(sa.text(statement))
            async with engine.connect() as conn:
                rows = (await conn.execute(sa.text("SELECT outcome FROM audit_log"))).all()
            assert [r.outcome for r in rows] == ["denied"], f"{name} changed the audit log"
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", list(SERVICES))
async def test_postgres_refuses_to_change_or_remove_audit_rows(
    service: str, fresh_pg_dsn: str
) -> None:
    await _refuses_changes(fresh_pg_dsn, service, {**ATTACKS, "truncate": "TRUNCATE audit_log"})


@pytest.mark.parametrize("service", list(SERVICES))
async def test_sqlite_refuses_to_change_or_remove_audit_rows(service: str, tmp_path: Path) -> None:
    await _refuses_changes(f"sqlite+aiosqlite:///{tmp_path}/{service}.db", service, ATTACKS)
