"""Notifications' own metrics (docs/metrics.md): deliveries by channel and outcome, the RED
pages nobody has acknowledged yet — the number an on-call engineer is woken for — and the
patient-safety dashboard's figures: open escalations, time to page and time to acknowledge.

Labels come from fixed sets only (the channel kinds, three outcomes, two severities, three
quantiles). ``watch_red_pages`` is run by the chassis' sampler at each scrape.

Time to page and to acknowledge are read from the database over the last 24 hours (a summary's
``quantile`` label), not recorded as histograms when a page goes out: every replica then reports
the same figures, a page whose transaction is retried is not counted twice, and the series exist
before the first RED (a dashboard never shows "No data").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal, get_args

import sqlalchemy as sa
from opentelemetry.metrics import CallbackOptions, MeterProvider, NoOpMeterProvider, Observation
from sqlalchemy.ext.asyncio import AsyncEngine

from services.chassis.clock import Clock
from services.notifications.adapters.channels import ChannelKind
from services.notifications.adapters.orm import escalations, pages
from services.notifications.domain import paging
from services.notifications.domain.paging import PAGING, EscalationStatus

DeliveryOutcome = Literal["sent", "failed", "retried"]
# Paged, nobody has said "mine" (exhausted: past the policy's last level, the walk has stopped).
UNACKNOWLEDGED = tuple(s.value for s in PAGING)
_CHANNELS = frozenset(c.value for c in ChannelKind)
OPEN = tuple(s.value for s in paging.OPEN)
SEVERITIES = ("RED", "AMBER")
QUANTILES = (0.5, 0.9, 1.0)  # 1.0: the slowest
WINDOW = timedelta(hours=24)


def quantiles(values: list[float]) -> dict[float, float]:
    """Nearest-rank quantiles (0 when there is nothing to rank: no RED in the window)."""
    ordered = sorted(values)
    if not ordered:
        return {q: 0.0 for q in QUANTILES}
    return {q: ordered[max(0, -(-int(q * 1000) * len(ordered) // 1000) - 1)] for q in QUANTILES}


class NotificationMetrics:
    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = (meter_provider or NoOpMeterProvider()).get_meter("taper.notifications")
        self._deliveries = meter.create_counter(
            "taper.deliveries",
            unit="{attempt}",
            description="Delivery attempts by channel and outcome (failed: final).",
        )
        for channel in ChannelKind:
            for outcome in get_args(DeliveryOutcome):
                self._deliveries.add(0, {"channel": channel.value, "outcome": outcome})
        self.oldest_unacknowledged_s: float | None = None
        self.past_policy: int | None = None
        self.open_by_severity: dict[str, int] | None = None
        self.time_to_page: dict[float, float] | None = None
        self.time_to_ack: dict[float, float] | None = None
        meter.create_observable_gauge(
            "taper.escalations.open",
            callbacks=[self._observe_open],
            unit="{escalation}",
            description="Escalations not yet resolved, by severity.",
        )
        meter.create_observable_gauge(
            "taper.red_page.time_to_page",
            callbacks=[self._observe_time_to_page],
            unit="s",
            description="RED escalations of the last 24 h: start to the first page a provider "
            "accepted (quantile 1: the slowest).",
        )
        meter.create_observable_gauge(
            "taper.red_page.time_to_acknowledge",
            callbacks=[self._observe_time_to_ack],
            unit="s",
            description="RED escalations acknowledged in the last 24 h: start to acknowledgement "
            "(quantile 1: the slowest).",
        )
        meter.create_observable_gauge(
            "taper.red_page.unacknowledged_age",
            callbacks=[self._observe_age],
            unit="s",
            description="Age of the oldest unacknowledged RED page in its current cycle (0: none).",
        )
        meter.create_observable_gauge(
            "taper.red_page.unacknowledged_past_policy",
            callbacks=[self._observe_past_policy],
            unit="{escalation}",
            description="RED escalations unacknowledged past their policy's last level.",
        )

    def delivery(self, channel: str, outcome: DeliveryOutcome) -> None:
        known = {c.value for c in ChannelKind}
        self._deliveries.add(
            1, {"channel": channel if channel in known else "other", "outcome": outcome}
        )

    def _observe_age(self, _: CallbackOptions) -> Iterable[Observation]:
        if self.oldest_unacknowledged_s is not None:
            yield Observation(self.oldest_unacknowledged_s)

    def _observe_past_policy(self, _: CallbackOptions) -> Iterable[Observation]:
        if self.past_policy is not None:
            yield Observation(self.past_policy)

    def _observe_open(self, _: CallbackOptions) -> Iterable[Observation]:
        for severity, count in (self.open_by_severity or {}).items():
            yield Observation(count, {"severity": severity})

    def _observe_time_to_page(self, _: CallbackOptions) -> Iterable[Observation]:
        for q, seconds in (self.time_to_page or {}).items():
            yield Observation(seconds, {"quantile": str(q)})

    def _observe_time_to_ack(self, _: CallbackOptions) -> Iterable[Observation]:
        for q, seconds in (self.time_to_ack or {}).items():
            yield Observation(seconds, {"quantile": str(q)})

    def watch_red_pages(self, engine: AsyncEngine, clock: Clock) -> RedPageProbe:
        return RedPageProbe(self, engine, clock)


class RedPageProbe:
    """Reads the open RED escalations: since when each has been paging in its current cycle
    (its first page of that cycle, or its start before the first page went out)."""

    def __init__(self, metrics: NotificationMetrics, engine: AsyncEngine, clock: Clock) -> None:
        self._metrics = metrics
        self._engine = engine
        self._clock = clock

    async def __call__(self) -> None:
        first_page = (
            sa.select(
                escalations.c.id,
                escalations.c.status,
                escalations.c.created_at,
                sa.func.min(pages.c.created_at).label("first_page_at"),
            )
            .select_from(
                escalations.outerjoin(
                    pages,
                    sa.and_(
                        pages.c.escalation_id == escalations.c.id,
                        pages.c.cycle == escalations.c.cycle,
                    ),
                )
            )
            .where(escalations.c.severity == "RED", escalations.c.status.in_(UNACKNOWLEDGED))
            .group_by(escalations.c.id, escalations.c.status, escalations.c.created_at)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(first_page)).all()
        since: list[datetime] = [row.first_page_at or row.created_at for row in rows]
        now = self._clock.now()
        self._metrics.oldest_unacknowledged_s = (
            max((now - min(since)).total_seconds(), 0.0) if since else 0.0
        )
        self._metrics.past_policy = sum(
            1 for row in rows if row.status == EscalationStatus.EXHAUSTED
        )
        await self._safety_figures(now)

    async def _safety_figures(self, now: datetime) -> None:
        open_counts = (
            sa.select(escalations.c.severity, sa.func.count())
            .where(escalations.c.status.in_(OPEN))
            .group_by(escalations.c.severity)
        )
        first_delivered = (
            sa.select(
                escalations.c.created_at,
                sa.func.min(pages.c.delivered_at).label("paged_at"),
            )
            .select_from(escalations.join(pages, pages.c.escalation_id == escalations.c.id))
            .where(
                escalations.c.severity == "RED",
                escalations.c.created_at >= now - WINDOW,
                pages.c.delivered_at.is_not(None),
            )
            .group_by(escalations.c.id, escalations.c.created_at)
        )
        acknowledged = sa.select(escalations.c.created_at, escalations.c.acknowledged_at).where(
            escalations.c.severity == "RED", escalations.c.acknowledged_at >= now - WINDOW
        )
        async with self._engine.connect() as conn:
            counts = dict((await conn.execute(open_counts)).tuples().all())
            paged = (await conn.execute(first_delivered)).all()
            acks = (await conn.execute(acknowledged)).all()
        self._metrics.open_by_severity = {s: int(counts.get(s, 0)) for s in SEVERITIES}
        self._metrics.time_to_page = quantiles(
            [max((r.paged_at - r.created_at).total_seconds(), 0.0) for r in paged]
        )
        self._metrics.time_to_ack = quantiles(
            [max((r.acknowledged_at - r.created_at).total_seconds(), 0.0) for r in acks]
        )
