"""``make run-cluster``: the shape the proving grounds fault, checked on the running processes.

Slow (minutes: 3 JVMs, PostgreSQL, 8 service processes, nginx): a few tests, one cluster."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from contracts.topics import ALL_TOPICS, topics_consumed_by
from deploy import cluster_shape as shape
from deploy.localstack.cluster import LocalCluster, wait_for
from tests.integration.cluster.conftest import HEALTHY_TIMEOUT, paged_once, report_red

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


def test_three_brokers_and_the_products_topics_at_rf3_min_isr2(cluster: LocalCluster) -> None:
    # The brokers run without topic auto-creation and the launcher creates no topic: every topic
    # below was provisioned by the services themselves (ensure_topics on start).
    with cluster._admin() as admin:
        brokers = [b for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced")]
        assert len(brokers) == shape.BROKERS
        names = sorted({t.name for t in ALL_TOPICS} | {t.dlq for t in ALL_TOPICS})
        described = admin.describe_topics(names)
        assert sorted(t["name"] for t in described if t["error_code"] == 0) == names
        for topic in described:
            for part in topic["partitions"]:
                assert len(part["replica_nodes"]) == shape.REPLICATION_FACTOR, topic["name"]
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )["topic"]
    min_isr = {name: config["min.insync.replicas"]["value"] for name, config in configs.items()}
    assert min_isr == dict.fromkeys(names, str(shape.MIN_INSYNC_REPLICAS))


def test_two_replicas_of_every_service_share_its_partitions(cluster: LocalCluster) -> None:
    replicas = Counter(t.group for t in cluster.targets() if t.group in shape.SERVICES)
    assert replicas == dict.fromkeys(shape.SERVICES, shape.REPLICAS_PER_SERVICE)
    for service in shape.SERVICES:
        _wait_spread(cluster, service)


def _wait_spread(cluster: LocalCluster, service: str) -> None:
    """Both replicas in the group, each partition of the service's topics owned by exactly one.
    Polled: right after a (re)join the group may still be rebalancing."""
    want = sorted((t.name, p) for t in topics_consumed_by(service) for p in range(t.partitions))
    last: dict[str, list[tuple[str, int]]] = {}

    def spread() -> bool:
        last.clear()
        last.update(cluster.group_assignment(service))
        owned = sorted(tp for parts in last.values() for tp in parts)
        return len(last) == shape.REPLICAS_PER_SERVICE and all(last.values()) and owned == want

    try:
        wait_for(f"{service}: partitions spread over both replicas", spread, HEALTHY_TIMEOUT)
    except TimeoutError:
        owned = {tp for parts in last.values() for tp in parts}
        pytest.fail(f"{service}: {len(last)} members, unowned {sorted(set(want) - owned)}")


def test_at_most_one_relay_per_service_holds_the_outbox_lock(cluster: LocalCluster) -> None:
    # The lock is transaction-scoped (taken per batch): sample it while both relays poll.
    seen = {s: Counter(cluster.relay_lock_holders(s) for _ in range(40)) for s in shape.SERVICES}
    assert all(set(counts) <= {0, 1} for counts in seen.values()), seen


def test_a_killed_replicas_partitions_move_and_a_report_still_pages_once(
    cluster: LocalCluster,
) -> None:
    victim = "notifications-1"
    before = cluster.group_assignment("notifications")
    assert len(before) == 2
    cluster.kill(victim)
    everything = sorted(tp for parts in before.values() for tp in parts)
    wait_for(
        "the survivor owns every partition",
        lambda: (
            (m := cluster.group_assignment("notifications"))
            and len(m) == 1
            and next(iter(m.values())) == everything
        ),
        HEALTHY_TIMEOUT,
    )
    patient = uuid.uuid4()
    report_red(cluster.endpoints.gateway_url, patient)
    paged_once(cluster, patient, HEALTHY_TIMEOUT)

    cluster.start(victim)
    cluster.wait_healthy(HEALTHY_TIMEOUT)
    _wait_spread(cluster, "notifications")


def test_the_controller_killed_the_cluster_still_pages_and_the_broker_rejoins(
    cluster: LocalCluster,
) -> None:
    victim = cluster.kafka_roles()["controller"]
    cluster.kill(victim)
    wait_for(
        "a new controller",
        lambda: cluster.kafka_roles()["controller"] != victim,
        HEALTHY_TIMEOUT,
    )
    patient = uuid.uuid4()
    report_red(cluster.endpoints.gateway_url, patient)
    paged_once(cluster, patient, HEALTHY_TIMEOUT)

    cluster.start(victim)
    cluster.wait_healthy(HEALTHY_TIMEOUT)  # includes: every partition's ISR back to 3 brokers
    assert all(t.pid for t in cluster.targets())
