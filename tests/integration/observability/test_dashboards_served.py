"""No panel shows "No data" for want of a metric: every metric a dashboard reads is served at
/metrics by one of the four services running against the real broker and PostgreSQL.

A metric that exists only once something happened (``taper_dead_letters_total`` appears with
its first dead letter) may be missing only from a query that falls back with ``or vector(0)``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts import DOSE_REDUCED
from tests.all_services import SERVICES
from tests.helpers import dose_reduced, eventually, produce_raw
from tests.unit.observability.promql import metric_names
from tests.unit.observability.test_dashboards import queries

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


async def served(runtime: Any) -> set[str]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=runtime.app), base_url="http://svc"
    ) as client:
        await client.get(f"{runtime.settings.url_prefix}/health")  # an HTTP series
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    return {  # sample names: counters keep _total, histograms their _bucket/_sum/_count
        sample.name
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


async def test_every_metric_a_panel_reads_is_served(settings_for: Any) -> None:
    async with AsyncExitStack() as stack:
        runtimes = []
        for make, settings_cls in SERVICES.values():
            runtime = make(settings_for(settings_cls))
            await stack.enter_async_context(runtime)
            runtime.sampler._min_interval_s = 0  # sample at every scrape
            runtimes.append(runtime)
        # A message for the consumers, so that groups have committed offsets (lag series).
        event = dose_reduced()
        await produce_raw(
            runtimes[0].settings.kafka_bootstrap_servers,
            DOSE_REDUCED.name,
            [(str(event.patient_id).encode(), event.to_bytes(),
              [("event_id", str(event.event_id).encode())])],
        )  # fmt: skip

        wanted = {n for _, _, expr in queries() for n in metric_names(expr)} - {"up"}
        optional = {
            n for _, _, expr in queries() if "or vector(0)" in expr for n in metric_names(expr)
        }

        async def missing() -> set[str] | None:
            names: set[str] = set()
            for runtime in runtimes:
                names |= await served(runtime)
            gap = wanted - names - optional
            return None if not gap else gap

        async def all_served() -> bool:
            return await missing() is None

        try:
            await eventually(all_served, timeout=60, interval=1.0)
        except AssertionError:
            gap = await missing()
            raise AssertionError(f"read by a panel, served by no service: {gap}") from None
