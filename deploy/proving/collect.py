"""Reading what the system did, after quiescence, into :class:`Evidence`: every product and
dead-letter topic from its start, each service's database (outbox, inbox, timers, its domain
effects), consumer lag, the recording sinks, the logs (duplicates skipped, synthetic PHI)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import create_async_engine

from contracts.topics import ALL_TOPICS
from deploy.proving.evidence import Evidence, OutboxRow, Record
from deploy.proving.ledger import PHI_MARKER, Ledger
from deploy.proving.topology import Channel, Topology

DUPLICATE_SKIPPED = "duplicate event skipped"  # services/chassis/consumer.py's log line


async def read_topics(bootstrap: str, topics: Iterable[str]) -> list[tuple[Record, bytes]]:
    """Every record of ``topics`` from offset 0 to the end offsets at the time of the call."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[Record, bytes]] = []
    try:
        parts = []
        for topic in topics:
            for p in consumer.partitions_for_topic(topic) or await _partitions(consumer, topic):
                parts.append(TopicPartition(topic, p))
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=2000)
            for tp, records in batch.items():
                for m in records:
                    out.append((_record(m), m.value or b""))
                    if m.offset + 1 >= ends[tp]:
                        pending.discard(tp)
    finally:
        await consumer.stop()
    return out


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # a topic unseen so far
    return consumer.partitions_for_topic(topic) or set()


def _record(m: Any) -> Record:
    try:
        payload = json.loads(m.value) if m.value else None
        if not isinstance(payload, dict):
            payload = None
    except ValueError:
        payload = None
    headers = {k: v.decode(errors="replace") for k, v in (m.headers or ())}
    key = m.key.decode(errors="replace") if m.key else None
    return Record(m.topic, m.partition, m.offset, key, payload, headers)


def _id(value: Any) -> str:
    """A UUID column as text in one form (SQLite stores 32 hex digits, PostgreSQL a uuid)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


async def query_rows(url: str, query: str) -> list[Any]:
    """All rows of ``query`` on the database at ``url`` (a throwaway engine)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.text(query))).all())
    finally:
        await engine.dispose()


async def database_evidence(ev: Evidence, urls: dict[str, str], patients: set[str]) -> None:
    """Outbox, inbox, parked timers per service; the domain effects the checker counts."""
    for service, url in sorted(urls.items()):
        rows = await query_rows(
            url, "SELECT seq, event_id, topic, message_key, published_at IS NOT NULL FROM outbox"
        )
        mine = [OutboxRow(service, r[0], _id(r[1]), r[2], r[3], bool(r[4])) for r in rows
                if r[3] in patients]  # fmt: skip
        ev.outbox.extend(mine)
        ev.pending_outbox[service] = sum(1 for o in mine if not o.published)
        ev.parked_timers[service] = len(
            await query_rows(url, "SELECT id FROM timers WHERE failed_at IS NOT NULL")
        )
        inbox = await query_rows(url, "SELECT consumer, event_id FROM inbox")
        for consumer, event_id in inbox:
            ev.inbox.setdefault(consumer, set()).add(_id(event_id))
    if "monitoring" in urls:
        rows = await query_rows(urls["monitoring"], "SELECT event_id FROM dose_history")
        ev.effects["monitoring"] = {_id(r[0]): 1 for r in rows}  # primary key: 0 or 1
        rows = await query_rows(
            urls["monitoring"], "SELECT patient_id, count(*) FROM symptom_reports GROUP BY 1"
        )
        ev.reports_stored = {_id(p): int(n) for p, n in rows if _id(p) in patients}
    if "notifications" in urls:
        url = urls["notifications"]
        rows = await query_rows(
            url, "SELECT episode_id, count(*) FROM escalations WHERE severity = 'RED' GROUP BY 1"
        )
        ev.escalations = {_id(e): int(n) for e, n in rows}
        rows = await query_rows(url, "SELECT episode_id, status, level FROM escalations "
                           "WHERE severity = 'RED'")  # fmt: skip
        ev.escalation_state = {_id(e): (str(st), int(lv)) for e, st, lv in rows}
        rows = await query_rows(url, "SELECT episode_id FROM resolved_episodes")
        ev.resolved_in_notifications = {_id(r[0]) for r in rows}
        rows = await query_rows(
            url, "SELECT episode_id, level, cycle, loop, target, count(*), max(status) FROM pages "
            "GROUP BY 1, 2, 3, 4, 5",
        )  # fmt: skip
        for e, lv, c, lp, t, n, status in rows:
            key = (_id(e), int(lv), f"{c}/{lp}/{t}")
            ev.pages[key] = int(n)
            ev.page_status[key] = str(status)


async def consumer_lag(bootstrap: str) -> dict[str, int]:
    """Summed lag of each service's consumer group over the topics it consumes (a partition
    never committed counts from its start)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await probe.start()
    lag: dict[str, int] = {}
    try:
        groups = {c for t in ALL_TOPICS for c in t.consumers}
        parts_of: dict[str, list[TopicPartition]] = {}
        for t in ALL_TOPICS:
            partitions = probe.partitions_for_topic(t.name) or await _partitions(probe, t.name)
            for group in t.consumers:
                parts_of.setdefault(group, []).extend(TopicPartition(t.name, p) for p in partitions)
        every = [tp for parts in parts_of.values() for tp in parts]
        ends = await probe.end_offsets(list(set(every)))
        for group in sorted(groups):
            committed = await admin.list_consumer_group_offsets(group)
            total = 0
            for tp in parts_of.get(group, []):
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else 0
                total += max(0, ends[tp] - done)
            lag[group] = total
    finally:
        await probe.stop()
        await admin.close()
    return lag


def scan_logs(logs_dir: Path, event_ids: set[str]) -> tuple[int, list[str]]:
    """(duplicate skips logged for the run's events, places the synthetic PHI marker appears)
    over every log file, nginx's included (spans too, where the topology exports them into
    ``logs_dir``)."""
    marker = re.compile(PHI_MARKER, re.IGNORECASE)
    skipped, hits = 0, []
    for path in sorted(p for p in logs_dir.rglob("*") if p.is_file()):
        if path.name.startswith("sinks"):
            continue  # the providers' stand-in: recipients are meant to reach it
        with path.open("r", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if DUPLICATE_SKIPPED in line and _event_id(line) in event_ids:
                    skipped += 1
                if marker.search(line):
                    hits.append(f"{path.relative_to(logs_dir)}:{n}")
    return skipped, hits


def count_spans(logs_dir: Path) -> int:
    """Spans in the Zipkin batches the topology recorded under ``logs_dir/spans`` (one JSON
    array per line): the witness that the PHI scan read spans, not an empty file."""
    total = 0
    for path in sorted((logs_dir / "spans").glob("*.jsonl")):
        with path.open("r", errors="replace") as f:
            for line in f:
                try:
                    batch = json.loads(line)
                except ValueError:
                    continue
                total += len(batch) if isinstance(batch, list) else 0
    return total


def _event_id(line: str) -> str | None:
    try:
        record = json.loads(line[line.index("{") :])
    except ValueError:
        return None
    value = record.get("event_id") if isinstance(record, dict) else None
    return str(value) if value is not None else None


def sink_evidence(topology: Topology) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    channels: tuple[Channel, ...] = ("webhook", "sms", "mail")
    for channel in channels:
        requests = topology.sink_requests(channel)
        out[channel] = [_normalise(channel, r) for r in requests]
    return out


def _normalise(channel: str, r: dict[str, Any]) -> dict[str, Any]:
    """The identity each channel's dedupe would use: dedup_key, Twilio's idempotency token,
    the Message-ID (top level or under body/headers, whichever the sink recorded)."""
    body: dict[str, Any] = r["body"] if isinstance(r.get("body"), dict) else r
    headers = {str(k).lower(): v for k, v in (r.get("headers") or {}).items()}
    out = dict(r)
    if channel == "webhook":
        out["dedup_key"] = body.get("dedup_key")
        details = (body.get("payload") or {}).get("custom_details", {})
        out["patient_id"] = details.get("patient_id")
        out["episode_id"] = details.get("episode_id")
        out["level"] = details.get("level")
        out["cycle_loop"] = f"{details.get('cycle')}/{details.get('loop')}"
    elif channel == "sms":
        out["idempotency_token"] = r.get("idempotency_token") or headers.get(
            "i-twilio-idempotency-token"
        )
    else:
        out["message_id"] = body.get("message_id") or headers.get("message-id")
    return out


async def collect(topology: Topology, ledger: Ledger) -> tuple[Evidence, list[tuple[str, float]]]:
    """The evidence, and (patient, received_at) of every page at the webhook sink."""
    ep = topology.endpoints
    patients = ledger.patients()
    poison_keys = {p.key for p in ledger.poison}
    product = [t.name for t in ALL_TOPICS]
    dlqs = [t.dlq for t in ALL_TOPICS if t.consumers]
    ev = Evidence()
    for record, _ in await read_topics(ep.kafka_bootstrap, product):
        if record.key in patients:
            ev.records.append(record)
    for record, _ in await read_topics(ep.kafka_bootstrap, dlqs):
        if record.key in patients or record.key in poison_keys:
            ev.dead_letters.append(record)
    await database_evidence(ev, ep.database_urls, patients)
    ev.consumer_lag = await consumer_lag(ep.kafka_bootstrap)
    run_events = {str(r.event_id) for r in ev.records if r.event_id is not None}
    ev.skipped_duplicates, ev.phi_hits = scan_logs(ep.logs_dir, run_events)
    ev.spans_exported = count_spans(ep.logs_dir)
    ev.sink = sink_evidence(topology)
    pages = [
        (str(r.get("patient_id")), epoch_seconds(r.get("received_at")))
        for r in ev.sink.get("webhook", [])
    ]
    return ev, [(p, t) for p, t in pages if t is not None]


def epoch_seconds(value: Any) -> float | None:
    """A sink record's timestamp (epoch number or ISO string) as epoch seconds, else None."""
    from datetime import datetime

    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None
