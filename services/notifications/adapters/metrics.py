"""Notifications' own metrics (docs/metrics.md): deliveries by channel and outcome, and the RED
pages nobody has acknowledged yet — the number an on-call engineer is woken for.

Labels come from fixed sets only (the channel kinds, three outcomes); the gauges have none.
``watch_red_pages`` is run by the chassis' sampler at each scrape.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal, get_args

import sqlalchemy as sa
from opentelemetry.metrics import CallbackOptions, MeterProvider, NoOpMeterProvider, Observation
from sqlalchemy.ext.asyncio import AsyncEngine

from services.chassis.clock import Clock
from services.notifications.adapters.channels import ChannelKind
from services.notifications.adapters.orm import escalations, pages

DeliveryOutcome = Literal["sent", "failed", "retried"]
UNACKNOWLEDGED = ("triggered", "exhausted")  # paged, nobody has said "mine" (exhausted: past
# the policy's last level, the walk has stopped)
_CHANNELS = frozenset(c.value for c in ChannelKind)


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
        self._metrics.past_policy = sum(1 for row in rows if row.status == "exhausted")
