"""Kafka for the benchmarks: events as the relay puts them on the wire, topics configured like
ours, offsets, and a producer loop that batches acks."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from contracts import DOSE_REDUCED, DoseReduced

PARTITIONS = DOSE_REDUCED.partitions  # 6, as every topic of ours


@dataclass(frozen=True)
class Wire:
    """An event as the relay puts it on the wire: value, key, headers."""

    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, event: DoseReduced) -> Wire:
        headers = {
            "event_type": event.event_type,
            "event_id": str(event.event_id),
            "schema_version": str(event.schema_version),
        }
        return cls(
            event.to_bytes(),
            str(event.patient_id).encode(),
            [(k, v.encode()) for k, v in headers.items()],
        )


def replication_factor() -> int:
    return int(os.environ.get("KAFKA_REPLICATION_FACTOR", "1"))


def create_topics(bootstrap_servers: str, names: list[str]) -> None:
    """Baseline topics configured like ours (``ensure_topics``): partitions, RF, min ISR."""
    rf = replication_factor()
    configs = {
        "min.insync.replicas": "2" if rf >= 3 else "1",
        "unclean.leader.election.enable": "false",
    }
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="taper-bench")
    try:
        admin.create_topics([NewTopic(n, PARTITIONS, rf, topic_configs=configs) for n in names])
    finally:
        admin.close()


def delete_topics(bootstrap_servers: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="taper-bench")
    try:
        admin.delete_topics(names)
    finally:
        admin.close()


async def end_offsets(bootstrap_servers: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def commit_group_offsets(
    bootstrap_servers: str, group: str, topic: str, offsets: dict[int, int]
) -> None:
    """Start ``group`` at ``offsets`` (it then reads only what is produced afterwards)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in offsets]
        consumer.assign(tps)
        await consumer.commit({tp: offsets[tp.partition] for tp in tps})
    finally:
        await consumer.stop()


async def produce(producer: AIOKafkaProducer, topic: str, wires: list[Wire], batch: int) -> None:
    """Send without awaiting each ack; gather the acks every ``batch`` records."""
    for start in range(0, len(wires), batch):
        futures = [
            await producer.send(topic, w.value, key=w.key, headers=w.headers)
            for w in wires[start : start + batch]
        ]
        await asyncio.gather(*futures)
