"""``taper_consumer_lag`` against a real broker: end offset minus the group's committed offset,
per partition; a partition the group never committed on counts from its beginning."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import CoordinatorNotAvailableError
from kafka.structs import OffsetAndMetadata

from services.chassis.sampling import partition_lag

pytestmark = [pytest.mark.kafka]


def _lag(bootstrap: str, group: str, topics: list[str]) -> dict[tuple[str, str, int], int]:
    # A fresh broker creates __consumer_offsets on the first group lookup: until then it answers
    # "coordinator not available" (the sampler reports no lag then, and asks again next scrape).
    deadline = time.monotonic() + 60
    while True:
        try:
            return partition_lag(bootstrap, group, topics)
        except CoordinatorNotAvailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_lag_is_what_the_group_has_not_committed_on_each_partition(
    kafka_bootstrap_servers: str,
) -> None:
    bootstrap = kafka_bootstrap_servers
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for _ in range(5):
        producer.send(topic, b"x", partition=0)
    for _ in range(3):
        producer.send(topic, b"y", partition=1)
    producer.flush()
    producer.close()

    assert _lag(bootstrap, group, [topic]) == {(group, topic, 0): 5, (group, topic, 1): 3}

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, "", -1)})
    consumer.close()

    assert _lag(bootstrap, group, [topic]) == {(group, topic, 0): 1, (group, topic, 1): 3}
    assert _lag(bootstrap, group, [f"{topic}-missing"]) == {}
