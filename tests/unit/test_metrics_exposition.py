"""``/metrics`` of every service: exactly the names and labels of ``docs/metrics.md`` (which the
alert rules and dashboards query), label values from fixed sets only, no PHI.

Each service runs on SQLite with no broker started (so ``taper_broker_up`` is 0 and no lag can be
read); it serves requests carrying a patient id and a synthetic marker in path, query and
headers first, and notifications pages a RED episode, so that labelled series exist to check.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.chassis.clock import FrozenClock
from services.notifications.adapters.channels import ChannelKind, RecordingChannel
from tests.all_services import SERVICES, deliver
from tests.helpers import red_flag_threshold
from tests.runtimes import migrated_runtime

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
MARK = "zzphi"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Present in every exposition, whatever happened (counters pre-declared at 0, sampled gauges).
ALWAYS = {
    "http_server_request_duration_seconds",
    "taper_events_consumed_total",
    "taper_outbox_pending",
    "taper_outbox_oldest_age_seconds",
    "taper_relay_published_total",
    "taper_timers_fired_total",
    "taper_timers_failed_total",
    "taper_timers_parked",
    "taper_broker_up",
    "taper_database_up",
}
NOTIFICATIONS_ONLY = {
    "taper_deliveries_total",
    "taper_red_page_unacknowledged_age_seconds",
    "taper_red_page_unacknowledged_past_policy",
}


def documented() -> dict[str, set[str]]:
    """``{name: labels}`` from the table of docs/metrics.md."""
    found: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.replace("\\|", "/").strip().strip("|").split("|")]
        if len(cells) < 5 or not cells[0].startswith("`"):
            continue
        name = re.match(r"`([a-z_]+)`", cells[0])
        assert name, line
        labels: set[str] = set()
        for part in cells[2].split(","):
            label = re.match(r"\s*`([a-z_]+)`", part)
            if label:
                labels.add(label.group(1))
        found[name.group(1)] = labels
    return found


def test_the_doc_lists_what_the_ops_helper_was_promised() -> None:
    names = set(documented())
    assert ALWAYS | NOTIFICATIONS_ONLY <= names
    assert {"taper_consumer_lag", "taper_dead_letters_total"} <= names
    assert documented()["taper_consumer_lag"] == {"group", "topic", "partition"}
    assert documented()["taper_deliveries_total"] == {"channel", "outcome"}


async def _scrape(
    service: str, tmp_path: Path
) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    clock = FrozenClock()
    extra = {}
    if service == "notifications":
        extra["channels"] = {kind: RecordingChannel(kind) for kind in ChannelKind}
    runtime = await migrated_runtime(service, tmp_path, clock=clock, **extra)
    runtime.sampler._min_interval_s = 0
    patient = uuid.uuid4()
    try:
        if service == "notifications":
            await deliver(runtime, red_flag_threshold(patient))
            clock.advance(timedelta(seconds=90))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=runtime.app), base_url="http://t"
        ) as client:
            prefix = runtime.settings.url_prefix
            headers = {"X-Request-ID": MARK, "User-Agent": MARK, "Host": f"{MARK}.example"}
            await client.get(f"{prefix}/health", headers=headers)
            await client.get(f"{prefix}/patients/{patient}/{MARK}?q={MARK}", headers=headers)
            await client.get(f"/{MARK}/{patient}", headers=headers)
            answer = await client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        series: dict[str, list[tuple[str, dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                series.setdefault(family.name, []).append(
                    (sample.name, dict(sample.labels), sample.value)
                )
        return series
    finally:
        await runtime.engine.dispose()


@pytest.mark.parametrize("service", list(SERVICES))
async def test_metrics_are_exactly_the_documented_names_and_labels_without_phi(
    service: str, tmp_path: Path
) -> None:
    doc = documented()
    series = await _scrape(service, tmp_path)
    exposed = set()
    for samples in series.values():
        for sample_name, labels, _ in samples:
            # prometheus_client strips _total from a counter family's name: use the sample's
            name = sample_name
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in doc:
                    name = name[: -len(suffix)]
            exposed.add(name)
            assert name in doc, f"{name} is served but not in docs/metrics.md"
            allowed = doc[name] | ({"le"} if sample_name.endswith("_bucket") else set())
            assert set(labels) <= allowed, f"{name}: labels {set(labels) - allowed} undocumented"
            for value in labels.values():
                assert MARK not in value and not UUID.search(value), f"{name}: {labels}"
    expected = ALWAYS | (NOTIFICATIONS_ONLY if service == "notifications" else set())
    assert expected <= exposed, f"missing: {expected - exposed}"
    if service != "notifications":
        assert not NOTIFICATIONS_ONLY & exposed

    values = {name: v for samples in series.values() for name, labels, v in samples if not labels}
    assert values["taper_database_up"] == 1
    assert values["taper_broker_up"] == 0  # none started: it says so instead of failing
    assert values["taper_outbox_pending"] == 0
    routes = {
        labels.get("http_route")
        for name, labels, _ in series["http_server_request_duration_seconds"]
    }
    assert f"/api/{service.replace('_', '-')}/health" in routes
    if service == "notifications":
        # the RED episode has paged nobody yet (its step timer has not fired): 90 s unanswered
        assert values["taper_red_page_unacknowledged_age_seconds"] == 90
        assert values["taper_red_page_unacknowledged_past_policy"] == 0
        deliveries = {
            (labels["channel"], labels["outcome"]) for name, labels, _ in series["taper_deliveries"]
        }
        assert deliveries == {
            (c.value, o) for c in ChannelKind for o in ("sent", "failed", "retried")
        }
