"""The state an operator watches, sampled when Prometheus scrapes ``/metrics``.

Counters are recorded where the work happens; gauges about shared state (the database and the
broker answering, the outbox backlog, parked timers, consumer lag, a service's own gauges) are
read here, at most once per ``min_interval_s`` however often ``/metrics`` is asked, and only when
it is asked: nothing polls Kafka or the database for metrics that nobody reads.

A sample never fails the scrape: a dependency that does not answer is a 0 in ``taper_*_up`` and
no series for what could not be read (an alert on a missing series would be a lie about it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import sqlalchemy as sa
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from services.chassis.clock import Clock
from services.chassis.errors import safe_reason
from services.chassis.kafka import PLAINTEXT, KafkaSecurity
from services.chassis.metrics import ServiceMetrics

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]
# kafka-python defaults wait 30 s+ for a broker that is away: a scrape must answer well within
# Prometheus' 10 s timeout.
_KAFKA_TIMEOUTS = {"request_timeout_ms": 3000, "bootstrap_timeout_ms": 3000}


class Pingable(Protocol):
    async def ping(self, timeout: float | None) -> bool: ...  # noqa: ASYNC109 (faststream's)


class ParkedTimers(Protocol):
    async def refresh_parked(self) -> dict[str, int]: ...


def partition_lag(
    bootstrap: str,
    group: str,
    topics: Iterable[str],
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[tuple[str, str, int], int]:
    """Messages behind for ``group`` on every partition of ``topics`` (blocking: kafka-python).

    A partition the group has never committed on counts from its beginning offset: those are
    messages it has not processed either.
    """
    options = {**security.for_kafka_python(), **_KAFKA_TIMEOUTS}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **options)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **options)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in sorted(set(topics))
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return {}
        committed = admin.list_group_offsets({group: partitions}).get(group, {})
        ends = consumer.end_offsets(partitions)
        done = {
            tp: meta.offset
            for tp, meta in committed.items()
            if meta is not None and meta.offset >= 0
        }
        missing = [tp for tp in partitions if tp not in done]
        starts = consumer.beginning_offsets(missing) if missing else {}
        return {
            (group, tp.topic, tp.partition): max(ends[tp] - done.get(tp, starts.get(tp, 0)), 0)
            for tp in partitions
        }
    finally:
        consumer.close()
        admin.close()


class StateSampler:
    def __init__(
        self,
        *,
        metrics: ServiceMetrics,
        engine: AsyncEngine,
        outbox: sa.Table,
        clock: Clock,
        broker: Pingable,
        group: str,
        consumed_topics: Iterable[str],
        bootstrap: str,
        security: KafkaSecurity = PLAINTEXT,
        timers: ParkedTimers | None = None,
        min_interval_s: float = 5.0,
        lag: Callable[..., dict[tuple[str, str, int], int]] = partition_lag,
    ) -> None:
        self._metrics = metrics
        self._engine = engine
        self._outbox = outbox
        self._clock = clock
        self._broker = broker
        self._group = group
        self._topics = tuple(consumed_topics)
        self._bootstrap = bootstrap
        self._security = security
        self._timers = timers
        self._min_interval_s = min_interval_s
        self._lag = lag
        self._probes: list[Probe] = []
        self._lock = asyncio.Lock()
        self._sampled_at: float | None = None

    def add_probe(self, probe: Probe) -> None:
        """Run ``probe`` at each sample, after the database answered (a service's own gauges)."""
        self._probes.append(probe)

    async def refresh(self) -> None:
        async with self._lock:  # concurrent scrapes share one sample
            now = time.monotonic()
            if self._sampled_at is not None and now - self._sampled_at < self._min_interval_s:
                return
            await asyncio.gather(self._sample_database(), self._sample_broker())
            self._sampled_at = time.monotonic()

    async def _sample_database(self) -> None:
        sampled = self._metrics.sampled
        try:
            async with self._engine.connect() as conn:
                pending, oldest = (
                    await conn.execute(
                        sa.select(sa.func.count(), sa.func.min(self._outbox.c.created_at)).where(
                            self._outbox.c.published_at.is_(None)
                        )
                    )
                ).one()
            if self._timers is not None:
                await self._timers.refresh_parked()
            for probe in self._probes:
                await probe()
        except Exception as exc:
            log.warning("metrics: database sample failed", extra={"error": safe_reason(exc)})
            sampled.database_up = False
            sampled.outbox_pending = sampled.outbox_oldest_age_s = None
            return
        sampled.database_up = True
        sampled.outbox_pending = int(pending)
        age = 0.0 if oldest is None else (self._clock.now() - oldest).total_seconds()
        sampled.outbox_oldest_age_s = max(age, 0.0)

    async def _sample_broker(self) -> None:
        sampled = self._metrics.sampled
        try:
            up = await self._broker.ping(timeout=2.0)
        except Exception:
            up = False
        sampled.broker_up = up
        if not up or not self._topics:
            sampled.consumer_lag = {}
            return
        try:
            sampled.consumer_lag = await asyncio.to_thread(
                self._lag, self._bootstrap, self._group, self._topics, security=self._security
            )
        except Exception as exc:
            log.warning("metrics: consumer lag sample failed", extra={"error": safe_reason(exc)})
            sampled.consumer_lag = {}
