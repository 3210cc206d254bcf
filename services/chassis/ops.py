"""Ops tooling over kafka-python: inspect and replay dead letters, read consumer lag.

    python -m services.chassis.ops dlq-list  taper.scheduler.dose-reduced.v1.dlq
    python -m services.chassis.ops dlq-replay taper.scheduler.dose-reduced.v1.dlq [--consumer G]
    python -m services.chassis.ops lag monitoring

Listings show headers and positions, never message bodies (they may hold patient data). A replay
republishes the original bytes, key and headers (without the ``dlq.*`` ones) to the original
topic; consumers dedupe on ``event_id``, so replaying twice is harmless.

The bootstrap servers and the security options (SASL/SCRAM, TLS) come from the same variables as
the services' (``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_SECURITY_PROTOCOL`` ..., README "Kafka
security").
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from services.chassis.kafka import PLAINTEXT, KafkaSecurity
from services.chassis.settings import ServiceSettings

DLQ_HEADER_PREFIX = "dlq."


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v.encode()) for k, v in self.headers.items() if not k.startswith("dlq.")]

    def summary(self) -> dict[str, Any]:
        return {
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            **{k: v for k, v in self.headers.items() if k.startswith(DLQ_HEADER_PREFIX)},
            "event_id": self.headers.get("event_id"),
        }


def read_dead_letters(
    bootstrap: str,
    dlq_topic: str,
    timeout_ms: int = 3000,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> Iterator[DeadLetter]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=timeout_ms,
        **security.for_kafka_python(),
    )
    try:
        partitions = [
            TopicPartition(dlq_topic, p) for p in consumer.partitions_for_topic(dlq_topic) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        for record in consumer:
            yield DeadLetter(
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value,
                headers={k: v.decode(errors="replace") for k, v in record.headers or ()},
            )
    finally:
        consumer.close()


def replay(
    bootstrap: str,
    dlq_topic: str,
    *,
    consumer_group: str | None = None,
    security: KafkaSecurity = PLAINTEXT,
) -> int:
    """Republish dead letters (optionally only one consumer group's) to their original topics."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        **security.for_kafka_python(),
    )
    count = 0
    try:
        for letter in read_dead_letters(bootstrap, dlq_topic, security=security):
            if consumer_group and letter.headers.get("dlq.consumer") != consumer_group:
                continue
            original = letter.headers.get("dlq.original_topic") or dlq_topic.removesuffix(".dlq")
            producer.send(original, letter.value, key=letter.key, headers=letter.original_headers)
            count += 1
        producer.flush()
    finally:
        producer.close()
    return count


def consumer_lag(
    bootstrap: str, group: str, *, security: KafkaSecurity = PLAINTEXT
) -> dict[str, int]:
    """Messages not yet processed by ``group``, per topic-partition."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **security.for_kafka_python())
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **security.for_kafka_python())
    try:
        committed = admin.list_group_offsets(group)[group]  # kafka-python 3.x API
        ends = consumer.end_offsets(list(committed))
        return {
            f"{tp.topic}[{tp.partition}]": ends[tp] - meta.offset for tp, meta in committed.items()
        }
    finally:
        consumer.close()
        admin.close()


def main(argv: list[str] | None = None) -> int:
    settings = ServiceSettings(service_name="ops")  # the stack-wide KAFKA_* variables
    security = KafkaSecurity.from_settings(settings)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--bootstrap", default=settings.kafka_bootstrap_servers)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dlq-list").add_argument("dlq_topic")
    replay_cmd = sub.add_parser("dlq-replay")
    replay_cmd.add_argument("dlq_topic")
    replay_cmd.add_argument("--consumer", default=None, help="only this consumer group's letters")
    sub.add_parser("lag").add_argument("group")
    args = parser.parse_args(argv)
    if args.command == "dlq-list":
        for letter in read_dead_letters(args.bootstrap, args.dlq_topic, security=security):
            print(json.dumps(letter.summary()))
    elif args.command == "dlq-replay":
        count = replay(
            args.bootstrap, args.dlq_topic, consumer_group=args.consumer, security=security
        )
        print(f"replayed {count}")
    else:
        print(json.dumps(consumer_lag(args.bootstrap, args.group, security=security), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
