"""Dead letters for ops: list them with their reasons, replay a chosen few, never one twice.

A replay is selective (event ids, an offset range of one partition, a reason, or ``--all``) and
remembered: each replayed letter's ``<dlq topic>/<partition>/<offset>`` is written to the
compacted ledger topic ``taper.ops.dlq-replayed.v1`` *in the same Kafka transaction* as the
republished message, so either both are there or neither. A letter in the ledger is never
replayed again. Every replay uses the one transactional id ``taperctl-dlq-replay``: starting a
replay fences (aborts) any other still under way, and the ledger is read (read_committed) only
after that, so two operators replaying at once cannot both send the same letter.

A letter dead-lettered again after its replay (the cause not fixed) is a new letter at a new
offset, replayable once more when fixed. Listings show positions and ``dlq.*`` headers, never
bodies (they may hold patient data).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from contracts.topics import ALL_TOPICS, DLQ_SUFFIX
from services.chassis.ops import DeadLetter, read_dead_letters
from services.chassis.ops_kafka import Broker, OpsError, end_offsets

LEDGER_TOPIC = "taper.ops.dlq-replayed.v1"
TRANSACTIONAL_ID = "taperctl-dlq-replay"


def ledger_key(dlq_topic: str, letter: DeadLetter) -> str:
    return f"{dlq_topic}/{letter.partition}/{letter.offset}"


@dataclass(frozen=True)
class Selection:
    """Which letters of one DLQ topic to replay; at least one criterion (or ``everything``)."""

    event_ids: frozenset[str] = frozenset()
    partition: int | None = None
    first_offset: int | None = None
    last_offset: int | None = None
    reason: str | None = None  # a substring of dlq.reason, e.g. the error class
    everything: bool = False

    def __post_init__(self) -> None:
        if not (self.everything or self.event_ids or self.partition is not None or self.reason):
            raise OpsError("choose letters: --event-id, --offsets P:FROM-TO, --reason or --all")

    def matches(self, letter: DeadLetter) -> bool:
        if self.everything:
            return True
        if self.event_ids and letter.headers.get("event_id") not in self.event_ids:
            return False
        if self.partition is not None:
            if letter.partition != self.partition:
                return False
            if self.first_offset is not None and letter.offset < self.first_offset:
                return False
            if self.last_offset is not None and letter.offset > self.last_offset:
                return False
        return not (self.reason and self.reason not in letter.headers.get("dlq.reason", ""))


def parse_offsets(text: str) -> tuple[int, int, int]:
    """``P:FROM-TO`` (inclusive) or ``P:OFFSET``."""
    try:
        partition, _, span = text.partition(":")
        first, _, last = span.partition("-")
        return int(partition), int(first), int(last or first)
    except ValueError:
        raise OpsError(f"--offsets {text!r}: expected PARTITION:FROM-TO, e.g. 0:12-40") from None


@dataclass
class ReplayResult:
    replayed: list[dict[str, Any]] = field(default_factory=list)
    already: list[dict[str, Any]] = field(default_factory=list)  # in the ledger: not sent again


def dlq_topics() -> list[str]:
    return [t.dlq for t in ALL_TOPICS]


def list_letters(
    broker: Broker, topics: Sequence[str], *, reason: str | None = None
) -> list[dict[str, Any]]:
    """One summary per letter (oldest first per partition) with whether it was replayed."""
    broker.require_topics(topics)
    replayed = read_ledger(broker)
    rows = []
    for topic in topics:
        for letter in _letters(broker, topic):
            if reason and reason not in letter.headers.get("dlq.reason", ""):
                continue
            rows.append(
                {
                    "dlq_topic": topic,
                    **letter.summary(),
                    "replayed_at": replayed.get(ledger_key(topic, letter)),
                }
            )
    return rows


def replay(
    broker: Broker,
    dlq_topic: str,
    selection: Selection,
    *,
    dry_run: bool = False,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
) -> ReplayResult:
    if not dlq_topic.endswith(DLQ_SUFFIX):
        raise OpsError(f"{dlq_topic} is not a dead-letter topic (they end in {DLQ_SUFFIX})")
    broker.require_topics([dlq_topic])
    ensure_ledger(broker, replication_factor, min_insync_replicas)
    producer = None
    if not dry_run:
        producer = KafkaProducer(**broker.options(), acks="all", transactional_id=TRANSACTIONAL_ID)
        producer.init_transactions()  # fences a concurrent replay before the ledger is read
    try:
        done = read_ledger(broker)
        result = ReplayResult()
        chosen = []
        for letter in _letters(broker, dlq_topic):
            if not selection.matches(letter):
                continue
            key = ledger_key(dlq_topic, letter)
            row = {"dlq_topic": dlq_topic, **letter.summary()}
            if key in done:
                result.already.append({**row, "replayed_at": done[key]})
            else:
                chosen.append((key, letter))
                result.replayed.append(row)
        if producer is not None and chosen:
            producer.begin_transaction()
            now = datetime.now(UTC).isoformat()
            for key, letter in chosen:
                original = letter.headers.get("dlq.original_topic") or dlq_topic.removesuffix(
                    DLQ_SUFFIX
                )
                producer.send(
                    original, letter.value, key=letter.key, headers=letter.original_headers
                )
                record = {"replayed_at": now, "event_id": letter.headers.get("event_id")}
                producer.send(LEDGER_TOPIC, json.dumps(record).encode(), key=key.encode())
            producer.commit_transaction()
        return result
    finally:
        if producer is not None:
            producer.close()


def _letters(broker: Broker, topic: str) -> Iterable[DeadLetter]:
    return read_dead_letters(broker.bootstrap, topic, security=broker.security)


def ensure_ledger(broker: Broker, replication_factor: int, min_insync_replicas: int) -> None:
    configs = {"cleanup.policy": "compact", "min.insync.replicas": str(min_insync_replicas)}
    with broker.admin() as admin:
        if LEDGER_TOPIC in set(admin.list_topics()):
            return
        try:
            admin.create_topics(
                [NewTopic(LEDGER_TOPIC, 1, replication_factor, topic_configs=configs)]
            )
        except TopicAlreadyExistsError:
            pass


def read_ledger(broker: Broker) -> dict[str, str]:
    """Replayed letter key -> when (committed transactions only); empty before the first."""
    with broker.consumer(
        enable_auto_commit=False, isolation_level="read_committed", consumer_timeout_ms=3000
    ) as consumer:
        ends = end_offsets(consumer, [LEDGER_TOPIC])
        partitions = [tp for tp, end in ends.items() if end > 0]
        if not partitions:
            return {}
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        done: dict[str, str] = {}
        # With read_committed, end offsets are the last stable ones and transaction markers are
        # never returned as records: compare positions, not record offsets.
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            batch = consumer.poll(timeout_ms=1000)
            if not batch:
                break
            for records in batch.values():
                for r in records:
                    if r.key is not None and r.value is not None:
                        done[r.key.decode()] = json.loads(r.value).get("replayed_at", "")
        return done
