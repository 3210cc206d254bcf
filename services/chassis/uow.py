"""The unit of work: one database transaction holding state changes, outgoing events and timers.

Events are written to the ``outbox`` table in the same transaction as the state they describe
(no dual write); the relay publishes them after commit. Timers are rows too, so anything that must
happen later survives a restart.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import Event, topic_for
from services.chassis.aggregate import RecordsEvents
from services.chassis.clock import Clock
from services.chassis.db import is_postgres
from services.chassis.telemetry import current_trace_headers


@dataclass
class CommitEffects:
    """What a committed unit of work left for the background workers to do."""

    published: bool = False  # outbox rows: wake the relay
    scheduled: bool = False  # timers: wake the poller


class UnitOfWork:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        clock: Clock,
        tables: sa.MetaData,
        after_commit: Callable[[CommitEffects], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self.clock = clock
        self._tables = tables
        self._after_commit = after_commit
        self._effects = CommitEffects()
        self._seen: list[RecordsEvents] = []
        self.session: AsyncSession

    async def __aenter__(self) -> Self:
        self.session = self._session_factory()
        self._effects = CommitEffects()
        self._seen = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Anything not explicitly committed is rolled back: a failed handler leaves no trace.
        await self.session.rollback()
        await self.session.close()

    def track(self, aggregate: RecordsEvents) -> None:
        """Publish ``aggregate``'s recorded events on commit (repositories call it)."""
        if not any(seen is aggregate for seen in self._seen):
            self._seen.append(aggregate)

    async def publish_recorded_events(self) -> None:
        """Write each tracked aggregate's new events to the outbox, oldest first."""
        for aggregate in self._seen:
            for event in aggregate.pull_events():
                await self.publish(event)

    async def commit(self) -> None:
        await self.publish_recorded_events()
        await self.session.commit()
        self._seen = []
        effects, self._effects = self._effects, CommitEffects()
        if self._after_commit and (effects.published or effects.scheduled):
            self._after_commit(effects)  # wakes the relay and/or the timer poller

    async def rollback(self) -> None:
        await self.session.rollback()
        self._effects = CommitEffects()
        self._seen = []

    def table(self, name: str) -> sa.Table:
        return self._tables.tables[name]

    # --- outbox -------------------------------------------------------------------------------
    async def publish(self, event: Event) -> None:
        """Queue ``event`` for publication once (and only if) this transaction commits."""
        topic = topic_for(event)
        headers = {
            "event_type": event.event_type,
            "event_id": str(event.event_id),
            "schema_version": str(event.schema_version),
            **current_trace_headers(),
        }
        await self.session.execute(
            sa.insert(self.table("outbox")).values(
                event_id=event.event_id,
                topic=topic.name,
                message_key=str(event.patient_id),
                event_type=event.event_type,
                payload=event.to_bytes(),
                headers=headers,
                created_at=self.clock.now(),
            )
        )
        self._effects.published = True

    # --- durable timers -----------------------------------------------------------------------
    async def schedule_timer(
        self, kind: str, key: str, due_at: datetime, payload: dict[str, Any] | None = None
    ) -> None:
        """Run the ``kind`` handler at ``due_at``; scheduling the same (kind, key) is a no-op."""
        timers = self.table("timers")
        values = {
            "id": uuid.uuid4(),
            "kind": kind,
            "key": key,
            "due_at": due_at,
            "payload": payload or {},
            "trace_headers": current_trace_headers(),
            "attempts": 0,
        }
        insert = postgresql.insert if is_postgres(self.session.bind) else sqlite.insert
        stmt = (
            insert(timers).values(**values).on_conflict_do_nothing(index_elements=["kind", "key"])
        )
        await self.session.execute(stmt)
        self._effects.scheduled = True

    async def cancel_timer(self, kind: str, key: str) -> None:
        timers = self.table("timers")
        await self.session.execute(
            sa.update(timers)
            .where(timers.c.kind == kind, timers.c.key == key, timers.c.fired_at.is_(None))
            .values(cancelled_at=self.clock.now())
        )

    # --- audit --------------------------------------------------------------------------------
    async def audit(
        self,
        *,
        actor: str,
        actor_role: str,
        action: str,
        resource: str,
        patient_id: uuid.UUID | None,
        outcome: str = "allowed",
        request_id: str | None = None,
        client_addr: str | None = None,
    ) -> None:
        await self.session.execute(
            sa.insert(self.table("audit_log")).values(
                at=self.clock.now(),
                actor=actor,
                actor_role=actor_role,
                action=action,
                resource=resource,
                patient_id=patient_id,
                outcome=outcome,
                request_id=request_id,
                client_addr=client_addr,
            )
        )


class UnitOfWorkFactory:
    """Makes units of work bound to one service's database; the relay hooks ``after_commit``."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        clock: Clock,
        tables: sa.MetaData,
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.tables = tables
        self.after_commit: Callable[[CommitEffects], None] | None = None

    @property
    def is_postgres(self) -> bool:
        bind = self.session_factory.kw.get("bind")
        return bind is not None and is_postgres(bind)

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory, self.clock, self.tables, self.after_commit)
