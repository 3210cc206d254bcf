"""Database plumbing shared by every service: engine, portable column types, chassis tables.

Each service owns its own database (its own ``MetaData``); the chassis adds the tables of the
reliability core to it: ``outbox``, ``inbox``, ``timers``, ``audit_log`` and ``idempotency_keys``.
PostgreSQL in production and integration tests, SQLite (aiosqlite) for the local stack.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession  # re-export

# An auto-incrementing 64-bit key; SQLite only auto-increments a plain INTEGER PRIMARY KEY.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite stores no offset by itself)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        # A TypeDecorator does not pass this on from its impl; keyset pagination reads it.
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def add_chassis_tables(metadata: sa.MetaData) -> None:
    """Declare the reliability-core tables in a service's metadata (its migrations create them)."""
    sa.Table(
        "outbox",
        metadata,
        # seq orders publication: one patient's events leave in the order they were committed.
        sa.Column("seq", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("message_key", sa.String(100), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("published_at", UtcDateTime, nullable=True),
        sa.Index(
            "ix_outbox_pending",
            "seq",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
    )
    sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("processed_at", UtcDateTime, nullable=False),
    )
    sa.Table(
        "timers",
        metadata,
        sa.Column("id", sa.Uuid, primary_key=True, default=uuid.uuid4),
        sa.Column("kind", sa.String(100), nullable=False),
        # (kind, key) is the timer's identity: scheduling the same one twice is a no-op.
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("due_at", UtcDateTime, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("trace_headers", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("fired_at", UtcDateTime, nullable=True),
        sa.Column("cancelled_at", UtcDateTime, nullable=True),
        sa.Column("failed_at", UtcDateTime, nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.UniqueConstraint("kind", "key", name="uq_timers_kind_key"),
        sa.Index(
            "ix_timers_due",
            "due_at",
            postgresql_where=sa.text(
                "fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL"
            ),
            sqlite_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL"),
        ),
    )
    sa.Table(
        "audit_log",
        metadata,
        # Append-only (HIPAA 164.312(b)): the code never updates or deletes these rows, and the
        # database refuses to (audit_log_append_only_ddl, installed by each service's migrations).
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("patient_id", sa.Uuid, nullable=True, index=True),
        sa.Column("resource", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("request_id", sa.String(100), nullable=True),
        sa.Column("client_addr", sa.String(60), nullable=True),
    )
    add_idempotency_table(metadata)


def add_idempotency_table(metadata: sa.MetaData) -> sa.Table:
    """``Idempotency-Key``s of the state-changing POSTs and their answers (chassis/idempotency.py),
    pruned after 24 real hours (chassis/retention.py)."""
    return sa.Table(
        "idempotency_keys",
        metadata,
        # A key is the caller's, for one operation: (subject, operation, key) is its identity.
        sa.Column("subject", sa.String(100), primary_key=True),
        sa.Column("operation", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),  # SHA-256 of the request
        sa.Column("created_at", UtcDateTime, nullable=False, index=True),
        # The first answer, written in the transaction of its change (null until then).
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("body", sa.JSON, nullable=True),
        sa.Column("headers", sa.JSON, nullable=True),
    )


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # SQLAlchemy puts a failed statement's bound parameters (patient data) in the error's message,
    # which reaches tracebacks and logs: never on our engines.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the relay read while a handler writes; busy_timeout queues writers.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    return create_async_engine(url, **kwargs)


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_postgres(bind: AsyncEngine | AsyncConnection | Engine | Connection) -> bool:
    """Whether ``bind`` (an engine or connection, e.g. ``session.bind``) talks to PostgreSQL.

    The one test for PostgreSQL-only SQL (row and advisory locks, ``SKIP LOCKED``, its ``INSERT
    ... ON CONFLICT``): SQLite, the local stack's database, has one writer at a time and needs
    none of the locks.
    """
    return bind.dialect.name == "postgresql"


# The database itself refuses to change or remove an audit row, whatever the code (or a person at
# a SQL prompt with the service's credentials) tries; only a schema owner dropping the trigger
# could. In production the service's login role should also lack UPDATE/DELETE/TRUNCATE on it.
_AUDIT_APPEND_ONLY: dict[str, tuple[list[str], list[str]]] = {
    "postgresql": (
        [
            """CREATE OR REPLACE FUNCTION taper_audit_log_is_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
            END $$""",
            """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION taper_audit_log_is_append_only()""",
            """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION taper_audit_log_is_append_only()""",
        ],
        [
            "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
            "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
            "DROP FUNCTION IF EXISTS taper_audit_log_is_append_only()",
        ],
    ),
    "sqlite": (
        [
            """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
            """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
        ],
        [
            "DROP TRIGGER IF EXISTS audit_log_no_delete",
            "DROP TRIGGER IF EXISTS audit_log_no_update",
        ],
    ),
}


def audit_log_append_only_ddl(dialect: str, *, remove: bool = False) -> list[str]:
    """Statements that make ``audit_log`` append-only on ``dialect`` (or undo it: ``remove``)."""
    install, uninstall = _AUDIT_APPEND_ONLY[dialect]
    return uninstall if remove else install
