"""The outbox relay: publishes committed outbox rows to Kafka, in commit order, at least once.

Woken right after a unit of work commits events, so latency is not a poll interval; the poll is a
safety net for rows left by a crash or written by another process. On PostgreSQL a transaction-
scoped advisory lock makes one relay of a service active at a time (replicas take over when it
dies), which keeps each patient's events in order. A row is marked published only after the broker
acknowledged it (``acks=all``, idempotent producer); a crash in between republishes it, and
consumers dedupe on ``event_id``.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import sqlalchemy as sa
from faststream.kafka import KafkaBroker
from opentelemetry.trace import SpanKind, TracerProvider
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.chassis.clock import Clock
from services.chassis.db import is_postgres
from services.chassis.metrics import NO_METRICS, ServiceMetrics
from services.chassis.telemetry import context_from_headers, current_trace_headers
from services.chassis.worker import PollingWorker


class OutboxRelay(PollingWorker):
    def __init__(
        self,
        *,
        service: str,
        session_factory: async_sessionmaker[AsyncSession],
        tables: sa.MetaData,
        broker: KafkaBroker,
        clock: Clock,
        tracer_provider: TracerProvider,
        batch_size: int = 200,
        poll_interval_s: float = 1.0,
        metrics: ServiceMetrics = NO_METRICS,
    ) -> None:
        super().__init__(f"{service}-outbox-relay", poll_interval_s)
        self._service = service
        self._sessions = session_factory
        self._outbox = tables.tables["outbox"]
        self._broker = broker
        self._clock = clock
        self._tracer = tracer_provider.get_tracer("taper.outbox")
        self._batch_size = batch_size
        self._lock_key = zlib.crc32(f"outbox:{service}".encode())
        self._metrics = metrics

    async def run_once(self) -> bool:
        return await self.publish_pending() >= self._batch_size

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        async with self._sessions() as session, session.begin():
            if is_postgres(session.bind):
                got = await session.scalar(
                    sa.select(sa.func.pg_try_advisory_xact_lock(self._lock_key))
                )
                if not got:
                    return 0  # another replica's relay is active
            query = (
                sa.select(self._outbox)
                .where(self._outbox.c.published_at.is_(None))
                .order_by(self._outbox.c.seq)
                .limit(self._batch_size)
            )
            if is_postgres(session.bind):
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).mappings().all()
            if not rows:
                return 0
            futures = [await self._send(row) for row in rows]
            # Sent in order without waiting for each ack; the idempotent producer keeps order.
            await asyncio.gather(*futures)
            await session.execute(
                sa.update(self._outbox)
                .where(self._outbox.c.seq.in_([r["seq"] for r in rows]))
                .values(published_at=self._clock.now())
            )
        # Acknowledged by the broker and marked published (committed).
        self._metrics.outbox_published(r["topic"] for r in rows)
        return len(rows)

    async def _send(self, row: Any) -> Any:
        stored: dict[str, str] = dict(row["headers"])
        with self._tracer.start_as_current_span(
            f"{row['topic']} publish",
            context=context_from_headers(stored),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "publish",
                "messaging.destination.name": row["topic"],
                "messaging.message.id": str(row["event_id"]),
                "taper.event_type": row["event_type"],
            },
        ):
            headers = {**stored, **current_trace_headers()}
            return await self._broker.publish(
                row["payload"],
                topic=row["topic"],
                key=row["message_key"].encode(),
                headers=headers,
                no_confirm=True,
            )


__all__ = ["OutboxRelay"]
