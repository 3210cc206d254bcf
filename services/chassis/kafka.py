"""Kafka wiring: the broker every service uses, and topic provisioning (kafka-python admin)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from faststream.kafka import KafkaBroker
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from contracts import Topic

log = logging.getLogger(__name__)


def make_broker(bootstrap_servers: str, *, client_id: str) -> KafkaBroker:
    """A broker whose producer never loses an acknowledged write.

    ``acks="all"`` with the idempotent producer: a record is acknowledged only once every in-sync
    replica has it, and retries cannot duplicate or reorder it. FastStream's defaults (``acks=1``,
    no idempotence) are not enough for clinical events.
    """
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        graceful_timeout=15.0,
        # Not under "faststream": that logger has its own coloured handler and does not
        # propagate, so its lines would bypass the JSON logs. Per-message lines are DEBUG.
        logger=logging.getLogger(f"taper.broker.{client_id}"),
        log_level=logging.DEBUG,
    )


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[Topic],
    *,
    replication_factor: int = 1,
    with_dead_letters: bool = True,
) -> list[str]:
    """Create the topics (and their ``.dlq``) that do not exist yet; returns the names created."""
    min_isr = "2" if replication_factor >= 3 else "1"
    wanted: dict[str, NewTopic] = {}
    for topic in topics:
        names = [topic.name, topic.dlq] if with_dead_letters else [topic.name]
        for name in names:
            wanted[name] = NewTopic(
                name,
                topic.partitions,
                replication_factor,
                topic_configs={
                    "min.insync.replicas": min_isr,
                    "unclean.leader.election.enable": "false",
                },
            )
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="taper-provisioner")
    try:
        existing = set(admin.list_topics())
        missing = [t for name, t in wanted.items() if name not in existing]
        created: list[str] = []
        for new_topic in missing:
            try:
                admin.create_topics([new_topic])
                created.append(new_topic.name)
            except TopicAlreadyExistsError:
                pass  # another process created it first
        if created:
            log.info("topics created", extra={"topics": created})
        return created
    finally:
        admin.close()
