"""Crash a service process (SIGKILL) while it consumes and publishes: after a restart every event
has had exactly one effect and every outbox row reached Kafka once per event id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import DOSE_REDUCED, SYMPTOM_REPORTED
from tests.chaos.evidence import count, dead_letters, migrated
from tests.chaos.service_process import ServiceProcess
from tests.helpers import dose_reduced, eventually, produce_raw, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

EVENTS = 300


@pytest.fixture
def monitoring_process(
    kafka_bootstrap_servers: str, fresh_pg_dsn: str, tmp_path: Path
) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        "monitoring", kafka_bootstrap_servers, fresh_pg_dsn, tmp_path / "monitoring.log"
    )
    yield process
    process.stop()


async def test_sigkill_mid_stream_loses_nothing_and_doubles_nothing(
    monitoring_process: ServiceProcess, fresh_pg_dsn: str, kafka_bootstrap_servers: str
) -> None:
    patient = uuid.uuid4()
    events = [dose_reduced(patient, step_number=i + 1) for i in range(EVENTS)]
    ids = [e.event_id for e in events]
    # No offset is committed before the kill: everything processed before it is delivered
    # again after the restart, so the inbox must skip each of those (and the test can see it).
    monitoring_process.set("CONSUMER_COMMIT_INTERVAL_S", "3600")
    monitoring_process.set("CONSUMER_COMMIT_BATCH", str(10 * EVENTS))
    monitoring_process.start()
    await eventually(lambda: migrated(fresh_pg_dsn, "dose_history"), timeout=60)

    key = str(patient).encode()
    await produce_raw(
        kafka_bootstrap_servers, DOSE_REDUCED.name, [(key, e.to_bytes(), []) for e in events]
    )
    mine = "SELECT count(*) FROM dose_history WHERE patient_id = :p"

    async def some_processed() -> bool:
        return await count(fresh_pg_dsn, mine, p=patient) >= EVENTS // 10

    await eventually(some_processed, timeout=60, interval=0.02)
    monitoring_process.crash()  # mid-stream: some processed, no offset committed
    crashed_at = await count(fresh_pg_dsn, mine, p=patient)
    assert 0 < crashed_at < EVENTS, "the crash came too late to prove anything"
    assert monitoring_process.skipped(ids) == []  # no duplicate before the crash

    monitoring_process.start()

    async def all_processed() -> bool:
        return await count(fresh_pg_dsn, mine, p=patient) >= EVENTS

    await eventually(all_processed, timeout=120)
    # One partition (one key), in order: the redelivered events precede the last new one, so
    # once all are processed every redelivery has been handled. A graceful stop ends the run.
    monitoring_process.stop()
    assert await count(fresh_pg_dsn, mine, p=patient) == EVENTS
    inbox = "SELECT count(*) FROM inbox WHERE consumer = 'monitoring' AND event_id IN :ids"
    assert await count(fresh_pg_dsn, inbox, ids=ids) == EVENTS
    skipped = monitoring_process.skipped(ids)
    # Redelivery really happened and the inbox really skipped it: at least everything that was
    # processed before the kill came again (no offset had been committed).
    assert len(set(skipped)) >= crashed_at, (len(set(skipped)), crashed_at)
    # And no duplicate ended elsewhere: a redelivery that fails is dead-lettered, not counted.
    assert await dead_letters(kafka_bootstrap_servers, DOSE_REDUCED.dlq, [key]) == []


async def test_events_committed_before_a_crash_are_published_after_restart(
    monitoring_process: ServiceProcess, fresh_pg_dsn: str, kafka_bootstrap_servers: str
) -> None:
    """Reports committed before a crash, not yet published, are published after the restart."""
    import json

    import httpx

    from services.chassis.auth import Role, issue_dev_token
    from services.chassis.settings import ServiceSettings
    from services.monitoring.domain.reference import ciwa_b_v1

    monitoring_process.set("RELAY_ENABLED", "false")  # commits pile up: a relay that lags
    monitoring_process.start()
    port = monitoring_process.setting("HTTP_PORT")
    base = f"http://127.0.0.1:{port}/api/monitoring"
    patient = uuid.uuid4()
    token = issue_dev_token(
        ServiceSettings(service_name="t"), subject="p", role=Role.PATIENT, patient_id=patient
    )
    body = {
        "instrument": "ciwa-b",
        "oriented": True,
        "answers": dict.fromkeys(ciwa_b_v1().patient_items, 0),
    }
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:

        async def up() -> bool:
            try:
                return (await client.get("/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(up, timeout=60)
        ids = []
        for i in range(40):
            r = await client.post(
                f"/patients/{patient}/symptom-reports",
                json=body,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"k{i}"},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["report_id"])
    pending = (
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND message_key = :p"
        " AND event_type = 'SymptomReported'"
    )
    assert await count(fresh_pg_dsn, pending, p=str(patient)) == 40  # committed, not on Kafka
    monitoring_process.crash()
    monitoring_process.set("RELAY_ENABLED", "true")
    monitoring_process.start()  # the relay publishes whatever was left pending

    async def drained() -> bool:
        return await count(fresh_pg_dsn, pending, p=str(patient)) == 0

    await eventually(drained, timeout=60)
    records = await read_topic(
        kafka_bootstrap_servers, SYMPTOM_REPORTED.name, expect=10**6, timeout=5
    )
    mine = [json.loads(r.value) for r in records if r.key == str(patient).encode()]
    assert {m["report_id"] for m in mine} == set(ids)  # nothing lost
    assert len({m["event_id"] for m in mine}) == len(ids)  # one event id per report
    assert len(mine) == len(ids)  # and each published once (the relay was off until the restart)
