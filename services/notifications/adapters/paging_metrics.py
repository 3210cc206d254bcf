"""Paging metrics: fallback pages and unroutable policies (labels from fixed sets only).

``taper.pages.fallback`` (counter; ``severity`` RED/AMBER, ``cause`` ``unroutable`` — the level
named nobody reachable — or ``undeliverable`` — every channel of the person gave up) and
``taper.policies.unroutable`` (gauge: policies in use that would page the fallback pager instead
of a person; alert on > 0). The gauge is the latest count the service computed (after every
configuration change and each ``GET /ops/routing``, and at most once a minute on a new
escalation, so another replica's change shows within a minute of the next episode without
taxing every event): an observable gauge's callback cannot query the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from opentelemetry.metrics import CallbackOptions, MeterProvider, NoOpMeterProvider, Observation

SEVERITIES = frozenset({"RED", "AMBER"})
CAUSES = frozenset({"unroutable", "undeliverable"})
REFRESH = timedelta(minutes=1)


class PagingMetrics:
    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = (meter_provider or NoOpMeterProvider()).get_meter("taper.notifications")
        self._fallback = meter.create_counter(
            "taper.pages.fallback",
            unit="{page}",
            description="Pages sent to the organisation's fallback pager instead of a person.",
        )
        self.unroutable: int | None = None  # unknown until first computed
        self._computed_at: datetime | None = None
        meter.create_observable_gauge(
            "taper.policies.unroutable",
            callbacks=[self._observe_unroutable],
            unit="{policy}",
            description="Escalation policies in use that cannot page a person (alert on > 0).",
        )

    def fallback_paged(self, severity: str, cause: str) -> None:
        self._fallback.add(
            1,
            {
                "severity": severity if severity in SEVERITIES else "other",
                "cause": cause if cause in CAUSES else "other",
            },
        )

    def set_unroutable(self, count: int, at: datetime) -> None:
        self.unroutable = count
        self._computed_at = at

    def unroutable_stale(self, now: datetime) -> bool:
        return self._computed_at is None or now - self._computed_at >= REFRESH

    def _observe_unroutable(self, _: CallbackOptions) -> Iterable[Observation]:
        if self.unroutable is not None:
            yield Observation(self.unroutable)


# The composition root (bootstrap) installs the service's own; components built without it (unit
# tests of a module alone) record nothing.
METRICS = PagingMetrics()


def install(meter_provider: MeterProvider | None) -> PagingMetrics:
    global METRICS
    METRICS = PagingMetrics(meter_provider)
    return METRICS
