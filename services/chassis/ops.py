"""Ops tooling: inspect and replay dead letters, read consumer lag (kafka-python); list and
retry parked timers (a service's database).

    python -m services.chassis.ops dlq-list  taper.scheduler.dose-reduced.v1.dlq
    python -m services.chassis.ops dlq-replay taper.scheduler.dose-reduced.v1.dlq [--consumer G]
    python -m services.chassis.ops lag monitoring
    python -m services.chassis.ops timers-parked --database-url URL
    python -m services.chassis.ops timers-retry  --database-url URL <timer id>

A parked timer failed too often (or permanently) and fires no more until retried: one JSON line
each with its id, kind, attempts, the last error's class, when it was due and when it was parked
(never its key or payload). ``timers-retry`` makes it due now with its attempts reset.
``--database-url`` defaults to ``DATABASE_URL`` (the service's SQLAlchemy async URL).

Listings show headers and positions, never message bodies (they may hold patient data). A replay
republishes the original bytes, key and headers (without the ``dlq.*`` ones) to the original
topic; consumers dedupe on ``event_id``, so replaying twice is harmless.

The bootstrap servers and the security options (SASL/SCRAM, TLS) come from the same variables as
the services' (``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_SECURITY_PROTOCOL`` ..., README "Kafka
security").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from services.chassis.clock import SystemClock
from services.chassis.db import add_chassis_tables, make_engine, make_session_factory
from services.chassis.kafka import PLAINTEXT, KafkaSecurity
from services.chassis.settings import ServiceSettings
from services.chassis.timers import parked_timers, retry_parked
from services.chassis.uow import UnitOfWorkFactory

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
        # Only the letters there when we started: a replay whose messages are dead-lettered
        # again (the cause not fixed) would otherwise read its own output back for ever.
        ends = consumer.end_offsets(partitions)

        def done() -> bool:
            return all(consumer.position(tp) >= ends[tp] for tp in partitions)

        if done():
            return
        for record in consumer:
            if record.offset >= ends[TopicPartition(record.topic, record.partition)]:
                if done():
                    return
                continue
            yield DeadLetter(
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value,
                headers={k: v.decode(errors="replace") for k, v in record.headers or ()},
            )
            if done():
                return
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


async def list_parked(database_url: str) -> list[dict[str, Any]]:
    engine = make_engine(database_url)
    try:
        return [t.summary() for t in await parked_timers(_chassis_uow(engine))]
    finally:
        await engine.dispose()


async def retry_parked_timer(database_url: str, timer_id: uuid.UUID) -> bool:
    engine = make_engine(database_url)
    try:
        return await retry_parked(_chassis_uow(engine), timer_id)
    finally:
        await engine.dispose()


def _chassis_uow(engine: Any) -> UnitOfWorkFactory:
    metadata = sa.MetaData()  # the chassis tables are the same in every service's database
    add_chassis_tables(metadata)
    return UnitOfWorkFactory(make_session_factory(engine), SystemClock(), metadata)


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
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    sub.add_parser("timers-parked", parents=[database])
    sub.add_parser("timers-retry", parents=[database]).add_argument("timer_id", type=uuid.UUID)
    args = parser.parse_args(argv)
    if args.command.startswith("timers-") and not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required")
    if args.command == "timers-parked":
        for summary in asyncio.run(list_parked(args.database_url)):
            print(json.dumps(summary))
    elif args.command == "timers-retry":
        if not asyncio.run(retry_parked_timer(args.database_url, args.timer_id)):
            print(f"no parked timer {args.timer_id}")
            return 1
        print(f"retried {args.timer_id}")
    elif args.command == "dlq-list":
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
