"""taperctl against the real broker and PostgreSQL: each command's answer, a selective dead-letter
replay that never sends a letter twice, and one-line errors (exit code 2) for a wrong bootstrap,
a missing topic and a bad id."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata
from sqlalchemy.ext.asyncio import create_async_engine

from services.chassis.ops_dlq import LEDGER_TOPIC
from services.taperctl import main

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """taperctl ``args`` with --json: exit code, the JSON rows, stderr."""
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def new_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for value, headers in records:
            producer.send(topic, value, key=b"k", headers=headers, partition=0)
        producer.flush()
    finally:
        producer.close()


def read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        records: list[Any] = []
        while consumer.position(tp) < end:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def test_dead_letters_are_replayed_selectively_and_never_twice(
    kafka_bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_bootstrap_servers
    original = f"taper.opstest.t{uuid.uuid4().hex[:8]}.v1"
    dlq = original + ".dlq"
    new_topic(b, original)
    new_topic(b, dlq)
    ids = [str(uuid.uuid4()) for _ in range(4)]
    reasons = ["PermanentError: plan not known yet"] * 2 + ["ValidationError"] * 2
    produce(
        b,
        dlq,
        [
            (
                f"body-{i}".encode(),
                [
                    ("event_id", ids[i].encode()),
                    ("dlq.reason", reasons[i].encode()),
                    ("dlq.consumer", b"monitoring"),
                    ("dlq.original_topic", original.encode()),
                ],
            )
            for i in range(4)
        ],
    )

    code, rows, _ = run(capsys, "--bootstrap", b, "dlq", "list", dlq)
    assert code == 1  # letters not replayed yet: something to look at
    assert [r["event_id"] for r in rows] == ids
    assert [r["dlq.reason"] for r in rows] == reasons
    assert all(r["replayed_at"] is None for r in rows)
    assert "body" not in json.dumps(rows)  # never a message body

    code, rows, _ = run(capsys, "--bootstrap", b, "dlq", "list", dlq, "--reason", "Validation")
    assert [r["event_id"] for r in rows] == ids[2:]

    # one event by id: sent once, with its original headers and no dlq.* ones
    code, rows, _ = run(capsys, "--bootstrap", b, "dlq", "replay", dlq, "--event-id", ids[0])
    assert code == 0 and [r["event_id"] for r in rows if r.get("action") == "replayed"] == [ids[0]]
    sent = read_all(b, original)
    assert [r.value for r in sent] == [b"body-0"]
    assert dict(sent[0].headers) == {"event_id": ids[0].encode()}

    # the same again: skipped, nothing sent
    code, rows, _ = run(capsys, "--bootstrap", b, "dlq", "replay", dlq, "--event-id", ids[0])
    assert [r["action"] for r in rows[:-1]] == ["already replayed, skipped"]
    assert rows[-1] == {"result": "replayed 0, skipped 1 already replayed"}
    assert len(read_all(b, original)) == 1

    # by reason, dry run: says what it would send, sends nothing
    code, rows, _ = run(
        capsys, "--bootstrap", b, "dlq", "replay", dlq, "--reason", "ValidationError", "--dry-run"
    )
    assert [r["event_id"] for r in rows[:-1]] == ids[2:]
    assert len(read_all(b, original)) == 1

    # by offset range: only what was not replayed yet
    code, rows, _ = run(capsys, "--bootstrap", b, "dlq", "replay", dlq, "--offsets", "0:0-2")
    assert rows[-1] == {"result": "replayed 2, skipped 1 already replayed"}
    assert [r.value for r in read_all(b, original)] == [b"body-0", b"body-1", b"body-2"]

    # everything: only the last one is left
    code, rows, _ = run(capsys, "--bootstrap", b, "dlq", "replay", dlq, "--all")
    assert rows[-1] == {"result": "replayed 1, skipped 3 already replayed"}
    code, rows, _ = run(capsys, "--bootstrap", b, "dlq", "replay", dlq, "--all")
    assert rows[-1] == {"result": "replayed 0, skipped 4 already replayed"}
    assert len(read_all(b, original)) == 4

    code, rows, _ = run(capsys, "--bootstrap", b, "dlq", "list", dlq)
    assert code == 0 and all(r["replayed_at"] for r in rows)
    assert LEDGER_TOPIC in KafkaAdminClient(bootstrap_servers=b).list_topics()


def test_bad_input_is_one_line_and_exit_code_2(
    kafka_bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_bootstrap_servers
    cases = [
        (["dlq", "list", "taper.nope.v1.dlq"], "no such topic: taper.nope.v1.dlq"),
        (["dlq", "replay", "taper.nope.v1.dlq", "--all"], "no such topic: taper.nope.v1.dlq"),
        (["dlq", "replay", "taper.nope.v1", "--all"], "is not a dead-letter topic"),
        (["dlq", "replay", "taper.nope.v1.dlq"], "choose letters"),
        (["dlq", "replay", "x.dlq", "--offsets", "zero"], "expected PARTITION:FROM-TO"),
        (["lag", "no-such-group"], "no such consumer group: no-such-group"),
        (["timers", "retry", "scheduler", "not-a-uuid"], "'not-a-uuid' is not a timer id"),
        (["deliveries", "retry", "42"], "'42' is not a delivery id"),
        (["outbox", "billing"], "no such service: billing"),
    ]
    for args, message in cases:
        code, _, err = run(capsys, "--bootstrap", b, *args)
        assert code == 2, args
        assert err.count("\n") == 1 and message in err, (args, err)


def test_a_wrong_bootstrap_is_one_line_without_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "services.taperctl", "--bootstrap", "127.0.0.1:1", "topics"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("taperctl: no Kafka broker answers at 127.0.0.1:1")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_topics_and_lag(kafka_bootstrap_servers: str, capsys: pytest.CaptureFixture[str]) -> None:
    b = kafka_bootstrap_servers
    code, rows, _ = run(capsys, "--bootstrap", b, "topics")
    existing = set(KafkaAdminClient(bootstrap_servers=b).list_topics())
    by_name = {r["topic"]: r for r in rows}
    assert "taper.monitoring.threshold-exceeded.v1.dlq" in by_name
    for name, row in by_name.items():
        if name not in existing:
            assert row == {"topic": name, "drift": "missing"}
        else:
            assert row["partitions"] == 6 and row["replicas"] == 1 and row["min_isr"] == "1"
            assert row["drift"] == "ok" and row["messages"] >= 0

    topic = f"taper.opstest.lag{uuid.uuid4().hex[:8]}.v1"
    group = f"opstest-{uuid.uuid4().hex[:8]}"
    new_topic(b, topic)
    produce(b, topic, [(b"x", []), (b"y", []), (b"z", [])])
    consumer = KafkaConsumer(bootstrap_servers=b, group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)})
    finally:
        consumer.close()
    code, rows, _ = run(capsys, "--bootstrap", b, "lag", group)
    assert code == 1
    assert rows == [
        {"group": group, "topic": topic, "partition": 0, "committed": 1, "end": 3, "lag": 2}
    ]


def sql(dsn: str, statement: str, params: dict[str, Any] | None = None) -> Any:
    """Run one statement on the test database (its own engine and loop: taperctl has its own)."""

    async def go() -> Any:
        engine = create_async_engine(dsn)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(sa.text(statement), params or {})
                return result.scalar() if result.returns_rows else None
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_database_commands(fresh_pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Migrations (--sql first: it changes nothing), outbox backlog, parked timers, failed
    deliveries, on the notifications service's PostgreSQL database."""
    dsn = fresh_pg_dsn
    db = ["--database-url", dsn]

    code = main(["migrations", "upgrade", "notifications", "--sql", *db])
    out = capsys.readouterr().out
    assert code == 0 and "CREATE TABLE deliveries" in out and "CREATE TABLE outbox" in out
    assert sql(dsn, "SELECT to_regclass('deliveries') IS NULL")  # --sql changed nothing

    code, rows, _ = run(capsys, "migrations", "upgrade", "notifications", *db)
    assert code == 0 and rows[0]["result"].startswith("notifications: at ")
    assert main(["migrations", "upgrade", "notifications", "--sql", *db]) == 0
    assert "CREATE TABLE" not in capsys.readouterr().out  # at head: nothing left to run

    code, rows, _ = run(capsys, "outbox", "notifications", *db)
    assert code == 0 and rows == [{"service": "notifications", "pending": 0, "oldest_age_s": None}]

    now = datetime.now(UTC)
    timer_id, delivery_id = uuid.uuid4(), uuid.uuid4()
    sql(
        dsn,
        "INSERT INTO outbox (event_id, topic, message_key, event_type, payload, headers,"
        " created_at) VALUES (:e, 't', 'k', 'X', :p, '{}', :c)",
        {"e": uuid.uuid4(), "p": b"{}", "c": now - timedelta(minutes=2)},
    )
    sql(
        dsn,
        "INSERT INTO timers (id, kind, key, due_at, payload, trace_headers, attempts, failed_at,"
        " last_error) VALUES (:i, 'escalation_step', 'k1', :d, '{}', '{}', 8, :d,"
        " 'RuntimeError: boom')",
        {"i": timer_id, "d": now},
    )
    sql(
        dsn,
        "INSERT INTO deliveries (id, owner_kind, owner_id, channel, idempotency_key, status,"
        " attempts, last_error, created_at) VALUES (:i, 'page', :o, 'webhook', 'idem-1',"
        " 'failed', 6, 'DeliveryFailed: 503', :c)",
        {"i": delivery_id, "o": uuid.uuid4(), "c": now},
    )

    code, rows, _ = run(capsys, "outbox", "notifications", *db)
    assert code == 1 and rows[0]["pending"] == 1 and 110 < rows[0]["oldest_age_s"] < 600

    code, rows, _ = run(capsys, "timers", "list", "notifications", *db)
    assert code == 1 and [(r["id"], r["kind"], r["last_error_class"]) for r in rows] == [
        (str(timer_id), "escalation_step", "RuntimeError")
    ]
    code, rows, _ = run(capsys, "timers", "retry", "notifications", str(timer_id), *db)
    assert code == 0
    code, rows, err = run(capsys, "timers", "retry", "notifications", str(timer_id), *db)
    assert code == 2 and err == f"taperctl: no parked timer {timer_id}\n"
    code, rows, _ = run(capsys, "timers", "list", "notifications", *db)
    assert code == 0 and rows == []

    code, rows, _ = run(capsys, "deliveries", "list", *db)
    assert code == 1 and rows[0]["id"] == str(delivery_id)
    assert rows[0]["last_error_class"] == "DeliveryFailed" and rows[0]["owner"] == "page"
    code, rows, _ = run(capsys, "deliveries", "retry", str(delivery_id), *db)
    assert code == 0
    code, rows, err = run(capsys, "deliveries", "retry", str(delivery_id), *db)
    assert code == 2 and "no failed or rejected delivery" in err
    assert sql(dsn, "SELECT status FROM deliveries WHERE id = :i", {"i": delivery_id}) == "pending"
    armed = "SELECT count(*) FROM timers WHERE kind = 'deliver' AND fired_at IS NULL"
    assert sql(dsn, armed) == 1
    assert sql(dsn, "SELECT count(*) FROM audit_log WHERE action = 'delivery.retried'") == 1

    code, rows, err = run(capsys, "outbox", "scheduler", "--database-url", dsn + "_nope")
    assert code == 2 and err.startswith("taperctl: cannot use the database at ")
    assert "Traceback" not in err and err.count("\n") == 1
