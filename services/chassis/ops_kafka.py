"""Ops views of the broker (kafka-python): topics as they are against contracts/topics.py, and
consumer lag. Every failure an operator can cause (a wrong address, a topic that does not exist)
is an :class:`OpsError` with one line to print, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaConfigurationError, KafkaError

from contracts.topics import ALL_TOPICS
from services.chassis.kafka import PLAINTEXT, KafkaSecurity
from services.chassis.topic_drift import MIN_ISR, TopicSpec, topic_drift, topic_specs

SERVICES = ("scheduler", "monitoring", "notifications", "group_matching")


class OpsError(Exception):
    """What went wrong, in one line for the operator (exit code 2)."""


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    security: KafkaSecurity = PLAINTEXT

    def options(self) -> dict[str, Any]:
        # A short bootstrap: a wrong address should answer in seconds, not hang a shell.
        return {
            "bootstrap_servers": self.bootstrap,
            "bootstrap_timeout_ms": 8_000,
            **self.security.for_kafka_python(),
        }

    @contextmanager
    def admin(self) -> Iterator[KafkaAdminClient]:
        client = self._connect(KafkaAdminClient)
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def consumer(self, **extra: Any) -> Iterator[KafkaConsumer]:
        client = self._connect(KafkaConsumer, **extra)
        try:
            yield client
        finally:
            client.close()

    def _connect(self, cls: Any, **extra: Any) -> Any:
        try:
            return cls(**self.options(), **extra)
        except KafkaConfigurationError as exc:
            raise OpsError(f"Kafka client settings refused: {exc}") from None
        except KafkaError as exc:  # kafka-python: a connection, timeout or version-probe error
            raise OpsError(
                f"no Kafka broker answers at {self.bootstrap} "
                f"(--bootstrap or KAFKA_BOOTSTRAP_SERVERS): {type(exc).__name__}"
            ) from None

    def require_topics(self, names: Sequence[str]) -> None:
        with self.admin() as admin:
            missing = sorted(set(names) - set(admin.list_topics()))
        if missing:
            raise OpsError(f"no such topic: {', '.join(missing)}")


def end_offsets(consumer: KafkaConsumer, topics: Sequence[str]) -> dict[TopicPartition, int]:
    partitions = [
        TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
    ]
    return dict(consumer.end_offsets(partitions)) if partitions else {}


def describe_topics(
    broker: Broker, *, replication_factor: int, min_insync_replicas: int
) -> list[dict[str, Any]]:
    """Every topic contracts/topics.py names (and its DLQ): partitions, replication, min ISR,
    the sum of its end offsets, and how it differs from the specs ("missing" if absent)."""
    specs = topic_specs(
        ALL_TOPICS, replication_factor=replication_factor, min_insync_replicas=min_insync_replicas
    )
    with broker.admin() as admin:
        existing = set(admin.list_topics())
        present = [s for s in specs if s.name in existing]
        described = {d["name"]: d for d in admin.describe_topics([s.name for s in present])}
        isr = _min_isr(admin, present)
        drifts = topic_drift(admin, specs)
    with broker.consumer() as consumer:
        ends = end_offsets(consumer, [s.name for s in present])
    rows: list[dict[str, Any]] = []
    for spec in specs:
        if spec.name not in existing:
            rows.append({"topic": spec.name, "drift": "missing"})
            continue
        partitions = described[spec.name]["partitions"]
        rows.append(
            {
                "topic": spec.name,
                "partitions": len(partitions),
                "replicas": min((len(p["replica_nodes"]) for p in partitions), default=0),
                "min_isr": isr.get(spec.name, "?"),
                "messages": sum(n for tp, n in ends.items() if tp.topic == spec.name),
                "drift": "; ".join(
                    f"{d.setting} {d.actual} (want {d.expected}{', UNSAFE' if d.unsafe else ''})"
                    for d in drifts
                    if d.topic == spec.name
                )
                or "ok",
            }
        )
    return rows


def _min_isr(admin: KafkaAdminClient, specs: list[TopicSpec]) -> dict[str, str]:
    from services.chassis.topic_drift import _configs  # the same reading the services do

    return {name: values.get(MIN_ISR, "?") for name, values in _configs(admin, specs).items()}


def consumer_lag(broker: Broker, groups: Sequence[str]) -> list[dict[str, Any]]:
    """Per group, topic and partition: committed offset, end offset and the lag between them."""
    rows: list[dict[str, Any]] = []
    with broker.admin() as admin, broker.consumer() as consumer:
        known = {g["group_id"] for g in admin.list_groups()}  # kafka-python 3.x: dicts
        for group in groups:
            if group not in known:
                raise OpsError(f"no such consumer group: {group}")
            committed = admin.list_group_offsets(group)[group]
            ends = consumer.end_offsets(list(committed)) if committed else {}
            for tp in sorted(committed, key=lambda t: (t.topic, t.partition)):
                offset = committed[tp].offset
                rows.append(
                    {
                        "group": group,
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "committed": offset,
                        "end": ends[tp],
                        "lag": ends[tp] - offset if offset >= 0 else ends[tp],
                    }
                )
    return rows
