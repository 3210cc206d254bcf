"""Pruning the reliability tables, so they do not grow without bound.

Published outbox rows, inbox entries, finished timers and ``Idempotency-Key`` answers (24 hours)
are kept for a retention period and then deleted in batches. The inbox must outlive any redelivery:
keep it longer than the topics' retention plus the longest consumer outage you plan to survive
(default 30 days against Kafka's 7-day default retention). Unpublished outbox rows, pending timers
and parked timers (failed, for an operator: ``ops timers-parked``) are never touched: only fired or
cancelled timers expire.

The periods are real time, whatever the clock's scale: Kafka keeps and redelivers by the wall
clock. Counted on a clock running 1,440 times fast, 30 days of inbox were 30 minutes, and the
proving grounds' 30-minute run found its first events' inbox rows gone (a copy redelivered after
that would have been handled again).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from services.chassis.clock import wall_span
from services.chassis.uow import UnitOfWorkFactory
from services.chassis.worker import PollingWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    outbox: timedelta = timedelta(days=7)
    inbox: timedelta = timedelta(days=30)
    timers: timedelta = timedelta(days=30)
    # Idempotency-Key answers (chassis/idempotency.py): a client retries within a day.
    idempotency: timedelta = timedelta(hours=24)
    batch: int = 5000


class RetentionPruner(PollingWorker):
    def __init__(
        self,
        *,
        service: str,
        uow_factory: UnitOfWorkFactory,
        policy: RetentionPolicy,
        interval_s: float = 3600.0,
    ) -> None:
        super().__init__(f"{service}-retention", interval_s)
        self._uow_factory = uow_factory
        self._policy = policy
        self._kept: list[tuple[str, str, timedelta]] = []

    def keep(self, table: str, column: str, period: timedelta) -> None:
        """Also prune a service's own table: rows whose ``column`` (a timestamp) is older than
        ``period`` (real time), in batches like the rest."""
        self._kept.append((table, column, period))

    async def run_once(self) -> bool:
        deleted = await self.prune()
        return any(n >= self._policy.batch for n in deleted.values())

    async def prune(self) -> dict[str, int]:
        """Delete one batch of expired rows per table; returns how many went from each."""
        async with self._uow_factory() as uow:
            now = uow.clock.now()
            policy = self._policy
            outbox_cutoff, inbox_cutoff, timer_cutoff, key_cutoff = (
                now - wall_span(uow.clock, period)
                for period in (policy.outbox, policy.inbox, policy.timers, policy.idempotency)
            )
            outbox, inbox, timers, keys = (
                uow.table(n) for n in ("outbox", "inbox", "timers", "idempotency_keys")
            )
            expired_outbox = (
                sa.select(outbox.c.seq)
                .where(outbox.c.published_at < outbox_cutoff)
                .limit(self._policy.batch)
            )
            expired_inbox = (
                sa.select(inbox.c.consumer, inbox.c.event_id)
                .where(inbox.c.processed_at < inbox_cutoff)
                .limit(self._policy.batch)
            )
            expired_timers = (
                sa.select(timers.c.id)
                .where(
                    # Not failed_at: a parked timer stays until an operator retries it
                    # (then it fires) or it is cancelled.
                    sa.or_(
                        timers.c.fired_at < timer_cutoff,
                        timers.c.cancelled_at < timer_cutoff,
                    )
                )
                .limit(self._policy.batch)
            )
            expired_keys = (
                sa.select(keys.c.subject, keys.c.operation, keys.c.key)
                .where(keys.c.created_at < key_cutoff)
                .limit(self._policy.batch)
            )
            results = {
                "outbox": await uow.session.execute(
                    sa.delete(outbox).where(outbox.c.seq.in_(expired_outbox.scalar_subquery()))
                ),
                "inbox": await uow.session.execute(
                    sa.delete(inbox).where(
                        sa.tuple_(inbox.c.consumer, inbox.c.event_id).in_(expired_inbox)
                    )
                ),
                "timers": await uow.session.execute(
                    sa.delete(timers).where(timers.c.id.in_(expired_timers.scalar_subquery()))
                ),
                "idempotency_keys": await uow.session.execute(
                    sa.delete(keys).where(
                        sa.tuple_(keys.c.subject, keys.c.operation, keys.c.key).in_(expired_keys)
                    )
                ),
            }
            for name, column, period in self._kept:
                table = uow.table(name)
                key = next(iter(table.primary_key.columns))
                expired = (
                    sa.select(key)
                    .where(table.c[column] < now - wall_span(uow.clock, period))
                    .limit(self._policy.batch)
                )
                results[name] = await uow.session.execute(
                    sa.delete(table).where(key.in_(expired.scalar_subquery()))
                )
            await uow.commit()
        deleted = {name: int(getattr(r, "rowcount", 0) or 0) for name, r in results.items()}
        if any(deleted.values()):
            log.info("reliability tables pruned", extra={"deleted": deleted})
        return deleted
