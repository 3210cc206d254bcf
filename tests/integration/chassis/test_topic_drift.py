"""Existing topics that differ from contracts/topics.py are reported at start, and production
refuses those that could lose acknowledged writes (issue 14, defect 7). Real broker."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from contracts import DOSE_REDUCED
from services.chassis.kafka import check_existing_topics, ensure_topics
from services.chassis.topic_drift import Drift, TopicSpec, report_drift, topic_configs, topic_drift

pytestmark = [pytest.mark.kafka]


@pytest.fixture
def admin(kafka_bootstrap_servers: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap_servers)
    yield client
    client.close()


def _wait_listed(admin: KafkaAdminClient, names: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not names <= set(admin.list_topics()):
        assert time.monotonic() < deadline, f"topics not listed within {timeout}s"
        time.sleep(0.1)


def _found(drifts: list[Drift]) -> set[tuple[str, str, str, bool]]:
    return {(d.setting, d.expected, d.actual, d.unsafe) for d in drifts}


def test_a_topic_created_by_hand_with_other_partitions_and_configs_is_reported(
    admin: KafkaAdminClient,
) -> None:
    name = f"taper.test.drift-{uuid.uuid4().hex[:8]}.v1"
    configs = {"min.insync.replicas": "1", "unclean.leader.election.enable": "true"}
    admin.create_topics([NewTopic(name, 2, 1, topic_configs=configs)])
    _wait_listed(admin, {name})
    missing = TopicSpec(name + ".absent", 6, 1, topic_configs(1))  # not drift: created later
    as_wanted = TopicSpec(name, 6, 1, topic_configs(1))
    assert _found(topic_drift(admin, [as_wanted, missing])) == {
        ("partitions", "6", "2", False),
        ("unclean.leader.election.enable", "false", "true", True),
    }
    # Wanted with production's floor: the one replica and min ISR 1 are unsafe too.
    production = TopicSpec(name, 2, 3, topic_configs(2))
    drifts = topic_drift(admin, [production])
    assert _found(drifts) == {
        ("replication_factor", "3", "1", True),
        ("min.insync.replicas", "2", "1", True),
        ("unclean.leader.election.enable", "false", "true", True),
    }
    with pytest.raises(RuntimeError, match="replication_factor is 1, expected 3"):
        report_drift(drifts, production=True)


def test_topics_as_provisioned_show_no_drift_and_drift_is_only_a_warning_outside_production(
    kafka_bootstrap_servers: str, admin: KafkaAdminClient, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_topics(kafka_bootstrap_servers, [DOSE_REDUCED])
    _wait_listed(admin, {DOSE_REDUCED.name, DOSE_REDUCED.dlq})  # created; metadata may lag
    with caplog.at_level(logging.WARNING, logger="services.chassis.topic_drift"):
        assert check_existing_topics(
            kafka_bootstrap_servers, [DOSE_REDUCED], replication_factor=1, min_insync_replicas=1,
            production=True,
        ) == []  # fmt: skip
        drifts = check_existing_topics(
            kafka_bootstrap_servers, [DOSE_REDUCED], replication_factor=3, min_insync_replicas=2,
            production=False,
        )  # fmt: skip
    assert {d.setting for d in drifts} == {"replication_factor", "min.insync.replicas"}, drifts
    assert len(drifts) == 4, drifts  # the topic and its .dlq
    messages = [r.message for r in caplog.records]
    assert "topics not checked" not in messages
    assert messages.count("topic differs from contracts/topics.py") == 4  # topic and its .dlq
    with pytest.raises(RuntimeError, match="could lose acknowledged writes"):
        check_existing_topics(
            kafka_bootstrap_servers, [DOSE_REDUCED], replication_factor=3, min_insync_replicas=2,
            production=True,
        )  # fmt: skip
