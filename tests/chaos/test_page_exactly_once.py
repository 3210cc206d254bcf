"""Kill notifications (SIGKILL) while the pager is holding its requests — pages accepted by the
provider, not yet recorded as sent — then restart it: every episode still has exactly one page
for its level, and every resend carries the same dedup key, so the provider opens one incident
per episode and level. Real Kafka, real PostgreSQL, a real HTTP receiver; the service runs as
its own process, as ``make run`` starts it."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import THRESHOLD_EXCEEDED
from tests.chaos.evidence import count, dead_letters, migrated
from tests.chaos.service_process import ServiceProcess
from tests.helpers import eventually, produce_raw, red_flag_threshold
from tests.notifications_receivers import HttpReceiver

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

EPISODES = 12


@pytest.fixture
async def pager() -> Iterator[HttpReceiver]:  # type: ignore[misc]
    async with HttpReceiver(delay_s=60.0) as receiver:  # holds every page until told otherwise
        yield receiver


@pytest.fixture
def notifications_process(
    kafka_bootstrap_servers: str, fresh_pg_dsn: str, pager: HttpReceiver, tmp_path: Path
) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        "notifications",
        kafka_bootstrap_servers,
        fresh_pg_dsn,
        tmp_path / "notif.log",
        PAGE_WEBHOOK_URL=pager.url("/pages"),
        PAGE_WEBHOOK_TIMEOUT_S="5",  # the kill comes within a moment of the first page
        DELIVERY_LEASE_S="6",  # in-doubt recovery soon after the restart ...
        SMTP_TIMEOUT_S="5",  # ... which every provider timeout must stay below
        SMS_TIMEOUT_S="5",
    )
    yield process
    process.stop()


async def test_a_kill_mid_delivery_still_gives_one_page_per_episode_and_level(
    notifications_process: ServiceProcess,
    pager: HttpReceiver,
    fresh_pg_dsn: str,
    kafka_bootstrap_servers: str,
) -> None:
    events = [red_flag_threshold(uuid.uuid4()) for _ in range(EPISODES)]
    ids = [e.event_id for e in events]
    episodes = [e.episode_id for e in events]
    notifications_process.start()
    await eventually(lambda: migrated(fresh_pg_dsn, "pages"), timeout=60)
    records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = [
        (str(e.patient_id).encode(), e.to_bytes(), []) for e in events
    ]
    # Each event twice: Kafka redelivery must not page twice either.
    await produce_raw(kafka_bootstrap_servers, THRESHOLD_EXCEEDED.name, records + records)

    async def in_flight() -> bool:
        return len(pager.requests) >= 1

    await eventually(in_flight, timeout=60, interval=0.02)
    notifications_process.crash()  # the provider has the page; our "sent" never committed
    held_at_kill = len(pager.requests)
    sent = "SELECT count(*) FROM deliveries WHERE status = 'sent'"
    assert await count(fresh_pg_dsn, sent) == 0

    pager.delay_s = 0.0
    notifications_process.start()
    delivered = "SELECT count(*) FROM pages WHERE status = 'delivered' AND episode_id IN :e"

    async def all_delivered() -> bool:
        return await count(fresh_pg_dsn, delivered, e=episodes) >= EPISODES

    async def every_copy_handled() -> bool:
        # Each event's second copy is on its partition after the first: once every event id
        # has been skipped as a duplicate at least once, both copies of each were consumed.
        return set(notifications_process.skipped(ids)) == {str(i) for i in ids}

    await eventually(all_delivered, timeout=120)
    await eventually(every_copy_handled, timeout=60)
    notifications_process.stop()

    pages = "SELECT count(*) FROM pages WHERE episode_id IN :e"
    assert await count(fresh_pg_dsn, pages, e=episodes) == EPISODES
    escalated = "SELECT count(DISTINCT episode_id) FROM escalations WHERE episode_id IN :e"
    assert await count(fresh_pg_dsn, escalated, e=episodes) == EPISODES
    inbox = "SELECT count(*) FROM inbox WHERE consumer = 'notifications' AND event_id IN :ids"
    assert await count(fresh_pg_dsn, inbox, ids=ids) == EPISODES
    # Valid events, so no dead letter (a duplicate that failed would have ended there).
    keys = [str(e.patient_id).encode() for e in events]
    assert await dead_letters(kafka_bootstrap_servers, THRESHOLD_EXCEEDED.dlq, keys) == []
    episodes_paged = Counter(
        r.json["payload"]["custom_details"]["episode_id"] for r in pager.requests
    )
    assert set(episodes_paged) == {str(e) for e in episodes}
    # One incident per episode and level at the provider: one dedup key each, however many POSTs.
    assert len(pager.dedup_keys()) == EPISODES
    by_key: dict[str, list[object]] = {}
    for r in pager.requests:
        by_key.setdefault(r.idempotency_key or "", []).append(r.json)
    assert all(len({str(b) for b in bodies}) == 1 for bodies in by_key.values())
    # What was in flight at the kill was sent again (so the kill did land mid-delivery), and
    # nothing else was.
    assert EPISODES < len(pager.requests) <= EPISODES + held_at_kill
