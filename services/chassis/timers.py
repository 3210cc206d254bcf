"""Durable timers: work that must happen later is a row with a due time, fired exactly once.

A timer is scheduled inside a unit of work (``uow.schedule_timer``), so it exists only if the
transaction that wanted it committed. The poller claims due rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so replicas share the work), runs the handler in the same transaction and marks the row
fired: the handler's effects and "fired" commit together, so a crash before commit fires it again
later and a crash after commit never does. A handler that keeps failing is retried with backoff and
then parked as failed, with the reason, for an operator: an escalation walk that stops must not
stop unseen. An outage (``outage.is_outage``: the database restarting or unreachable, a refused
connection) uses up no attempt: the timer is due again ``outage_delay_s`` later, as often as it
takes (with the database down, the worker loop backs off instead).
Every failed attempt counts in ``taper.timers.failed``; parking writes an error log line (timer
id, kind, attempts, error class; no payload) and shows in the ``taper.timers.parked`` gauge (by
kind, refreshed by the poller and at each scrape) until an operator acts:
``python -m services.chassis.ops timers-parked`` lists them, ``timers-retry <id>`` un-parks one.
Retention never deletes a parked timer (chassis/retention.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from opentelemetry.trace import TracerProvider

from services.chassis.clock import wall_span
from services.chassis.db import is_postgres
from services.chassis.errors import PermanentError, safe_reason
from services.chassis.metrics import NO_METRICS, ServiceMetrics
from services.chassis.outage import is_outage
from services.chassis.telemetry import context_from_headers
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.chassis.worker import PollingWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DueTimer:
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    attempts: int


TimerHandler = Callable[[DueTimer, UnitOfWork], Awaitable[None]]


class TimerPoller(PollingWorker):
    def __init__(
        self,
        *,
        service: str,
        uow_factory: UnitOfWorkFactory,
        handlers: Mapping[str, TimerHandler],
        tracer_provider: TracerProvider,
        poll_interval_s: float = 0.5,
        batch_size: int = 50,
        max_attempts: int = 8,
        concurrency: int = 1,
        metrics: ServiceMetrics = NO_METRICS,
        parked_refresh_s: float = 60.0,
        outage_delay_s: float = 10.0,
    ) -> None:
        super().__init__(f"{service}-timers", poll_interval_s)
        self._service = service
        self._uow_factory = uow_factory
        self._handlers = dict(handlers)
        self._tracer = tracer_provider.get_tracer("taper.timers")
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._concurrency = concurrency
        self._metrics = metrics
        # The gauge reads this snapshot (a metric callback cannot query the database); one
        # GROUP BY every parked_refresh_s, over the few parked rows (partial index not needed).
        self._parked_refresh_s = parked_refresh_s
        self._outage_delay_s = outage_delay_s
        self._parked: dict[str, int] = {}
        self._parked_checked_at: float | None = None
        metrics.watch_parked_timers(lambda: self._parked)

    async def run_once(self) -> bool:
        if (
            self._parked_checked_at is None
            or time.monotonic() - self._parked_checked_at >= self._parked_refresh_s
        ):
            await self.refresh_parked()
        return await self.fire_due() > 0

    async def refresh_parked(self) -> dict[str, int]:
        """Re-read how many timers of each kind are parked (for the gauge); returns it."""
        self._parked = await count_parked(self._uow_factory)
        self._parked_checked_at = time.monotonic()
        return self._parked

    async def fire_due(self) -> int:
        """Fire every timer due now, one transaction each; returns how many fired or failed.

        With ``concurrency`` > 1 (PostgreSQL only: ``SKIP LOCKED`` hands each worker another row)
        that many timers run at once, so one slow handler — a provider holding an HTTP request —
        does not hold up every other timer of the service.
        """
        workers = self._concurrency if self._uow_factory.is_postgres else 1
        if workers > 1:
            # Only as many workers as there are timers due: a wake-up with one timer due must
            # not open eight claim transactions that find nothing (the notifications benchmark
            # measured 16 empty claims per page).
            workers = min(workers, await self._due_count(limit=workers))
            if workers == 0:
                return 0
        share = max(1, self._batch_size // workers)
        counts = await asyncio.gather(*(self._drain(share) for _ in range(workers)))
        return sum(counts)

    async def _due_count(self, limit: int) -> int:
        async with self._uow_factory() as uow:
            timers = uow.table("timers")
            due = (
                sa.select(timers.c.id)
                .where(*self._due(timers, uow.clock.now()))
                .limit(limit)
                .subquery()
            )
            return int(await uow.session.scalar(sa.select(sa.func.count()).select_from(due)) or 0)

    def _due(self, timers: sa.Table, now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            timers.c.due_at <= now,
            timers.c.fired_at.is_(None),
            timers.c.cancelled_at.is_(None),
            timers.c.failed_at.is_(None),
            timers.c.kind.in_(list(self._handlers)),
        )

    async def _drain(self, limit: int) -> int:
        done = 0
        for _ in range(limit):
            if await self._fire_one() is None:
                break
            done += 1
        return done

    async def _fire_one(self) -> str | None:
        async with self._uow_factory() as uow:
            timers = uow.table("timers")
            now = uow.clock.now()
            query = (
                sa.select(timers).where(*self._due(timers, now)).order_by(timers.c.due_at).limit(1)
            )
            if is_postgres(uow.session.bind):
                query = query.with_for_update(skip_locked=True)
            row = (await uow.session.execute(query)).mappings().first()
            if row is None:
                return None
            timer = DueTimer(
                row["kind"], row["key"], row["due_at"], row["payload"], row["attempts"]
            )
            with self._tracer.start_as_current_span(
                f"timer {timer.kind}",
                context=context_from_headers(row["trace_headers"] or {}),
                attributes={"taper.timer.kind": timer.kind, "taper.timer.attempt": timer.attempts},
            ):
                try:
                    await self._handlers[timer.kind](timer, uow)
                    await uow.session.execute(
                        sa.update(timers).where(timers.c.id == row["id"]).values(fired_at=now)
                    )
                    await uow.commit()
                    self._metrics.timer_fired(timer.kind)
                    return "fired"
                except Exception as exc:
                    await uow.rollback()
                    if is_outage(exc):
                        await self._defer(row["id"], timer.kind, exc, now)
                    else:
                        await self._record_failure(row["id"], timer.kind, row["attempts"], exc, now)
                    return "failed"

    async def _defer(self, timer_id: Any, kind: str, exc: Exception, now: datetime) -> None:
        """An outage is not the timer's fault: due again later, no attempt used up (it cannot
        park it). With the database down this write fails too and the worker loop backs off;
        with only a provider down it holds up no other timer."""
        log.warning(
            "timer deferred: infrastructure unavailable",
            extra={"kind": kind, "error": safe_reason(exc), "delay_s": self._outage_delay_s},
        )
        async with self._uow_factory() as uow:
            timers = uow.table("timers")
            await uow.session.execute(
                sa.update(timers)
                .where(timers.c.id == timer_id)
                .values(
                    due_at=now + wall_span(uow.clock, timedelta(seconds=self._outage_delay_s)),
                    last_error=safe_reason(exc)[:300],
                )
            )
            await uow.commit()

    async def _record_failure(
        self, timer_id: Any, kind: str, attempts: int, exc: Exception, now: datetime
    ) -> None:
        attempts += 1
        give_up = isinstance(exc, PermanentError) or attempts >= self._max_attempts
        log.warning(
            "timer handler failed",
            extra={"error": safe_reason(exc), "attempts": attempts, "parked": give_up},
        )
        self._metrics.timer_failed(kind)
        if give_up:
            log.error(
                "timer parked: it will not fire again until an operator retries it",
                extra={
                    "timer_id": str(timer_id),
                    "kind": kind,
                    "attempts": attempts,
                    "error_type": type(exc).__name__,
                },
            )
            self._parked[kind] = self._parked.get(kind, 0) + 1  # the gauge, before the refresh
        async with self._uow_factory() as uow:
            timers = uow.table("timers")
            values: dict[str, Any] = {"attempts": attempts, "last_error": safe_reason(exc)[:300]}
            if give_up:
                values["failed_at"] = now
            else:
                backoff = timedelta(seconds=min(2**attempts, 300))
                values["due_at"] = now + wall_span(uow.clock, backoff)  # real time to recover
            await uow.session.execute(
                sa.update(timers).where(timers.c.id == timer_id).values(**values)
            )
            await uow.commit()


# --- parked timers, for ops ---------------------------------------------------------------------
@dataclass(frozen=True)
class ParkedTimer:
    id: uuid.UUID
    kind: str
    attempts: int
    last_error_class: str
    due_at: datetime
    parked_at: datetime

    def summary(self) -> dict[str, Any]:
        """What ops sees: ids, kind, counts, times, the error's class (no key, no payload)."""
        return {
            "id": str(self.id),
            "kind": self.kind,
            "attempts": self.attempts,
            "last_error_class": self.last_error_class,
            "due_at": self.due_at.isoformat(),
            "parked_at": self.parked_at.isoformat(),
        }


def _parked(timers: sa.Table) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        timers.c.failed_at.is_not(None),
        timers.c.fired_at.is_(None),
        timers.c.cancelled_at.is_(None),
    )


async def parked_timers(uow_factory: UnitOfWorkFactory, limit: int = 1000) -> list[ParkedTimer]:
    """Parked timers, longest parked first."""
    async with uow_factory() as uow:
        timers = uow.table("timers")
        query = (
            sa.select(
                timers.c.id,
                timers.c.kind,
                timers.c.attempts,
                timers.c.last_error,
                timers.c.due_at,
                timers.c.failed_at,
            )
            .where(*_parked(timers))
            .order_by(timers.c.failed_at)
            .limit(limit)
        )
        rows = (await uow.session.execute(query)).all()
    return [
        ParkedTimer(
            id=r.id,
            kind=r.kind,
            attempts=r.attempts,
            # safe_reason() text is "Class: our message" or "Class": ops gets the class.
            last_error_class=(r.last_error or "").split(":", 1)[0],
            due_at=r.due_at,
            parked_at=r.failed_at,
        )
        for r in rows
    ]


async def count_parked(uow_factory: UnitOfWorkFactory) -> dict[str, int]:
    async with uow_factory() as uow:
        timers = uow.table("timers")
        query = (
            sa.select(timers.c.kind, sa.func.count())
            .where(*_parked(timers))
            .group_by(timers.c.kind)
        )
        return {kind: int(n) for kind, n in (await uow.session.execute(query)).all()}


async def retry_parked(uow_factory: UnitOfWorkFactory, timer_id: uuid.UUID) -> bool:
    """Un-park a timer: due now, attempts reset. False when no parked timer has that id."""
    async with uow_factory() as uow:
        timers = uow.table("timers")
        result = await uow.session.execute(
            sa.update(timers)
            .where(timers.c.id == timer_id, *_parked(timers))
            .values(failed_at=None, attempts=0, due_at=uow.clock.now())
        )
        await uow.commit()
    retried = bool(getattr(result, "rowcount", 0))
    if retried:
        log.warning("parked timer retried by an operator", extra={"timer_id": str(timer_id)})
    return retried
