"""Topics that exist but are not what contracts/topics.py and the settings say they should be.

``ensure_topics`` only creates what is missing: a topic created earlier by hand, by an older
release or with a broker's defaults keeps its partitions, replication and configs. This compares
them with the specs and reports every difference. Differences that lose acknowledged writes — fewer
replicas or a lower ``min.insync.replicas`` than wanted, unclean leader election on — are
*unsafe*: production refuses to start on them (a broker-side fix is needed, not a restart); every
environment logs every difference as a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from contracts import Topic

log = logging.getLogger(__name__)

MIN_ISR = "min.insync.replicas"
UNCLEAN = "unclean.leader.election.enable"


def topic_configs(min_insync_replicas: int) -> dict[str, str]:
    """The configs every topic is created with (and compared against)."""
    return {MIN_ISR: str(min_insync_replicas), UNCLEAN: "false"}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


def topic_specs(
    topics: Iterable[Topic],
    *,
    replication_factor: int,
    min_insync_replicas: int,
    with_dead_letters: bool = True,
) -> list[TopicSpec]:
    configs = topic_configs(min_insync_replicas)
    specs = []
    for topic in topics:
        for name in [topic.name, topic.dlq] if with_dead_letters else [topic.name]:
            specs.append(TopicSpec(name, topic.partitions, replication_factor, configs))
    return specs


@dataclass(frozen=True)
class Drift:
    topic: str
    setting: str  # partitions | replication_factor | a topic config name
    expected: str
    actual: str
    unsafe: bool  # acknowledged writes could be lost

    def describe(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual}, expected {self.expected}"


def topic_drift(admin: KafkaAdminClient, specs: Sequence[TopicSpec]) -> list[Drift]:
    """Every difference between the existing topics among ``specs`` and the specs (missing
    topics are not drift: ``ensure_topics`` creates them)."""
    existing = set(admin.list_topics())
    present = {s.name: s for s in specs if s.name in existing}
    if not present:
        return []
    drifts: list[Drift] = []
    for described in admin.describe_topics(sorted(present)):
        spec = present[described["name"]]
        partitions = described["partitions"]
        if len(partitions) != spec.partitions:
            drifts.append(
                Drift(spec.name, "partitions", str(spec.partitions), str(len(partitions)), False)
            )
        replicas = min((len(p["replica_nodes"]) for p in partitions), default=0)
        if replicas != spec.replication_factor:
            drifts.append(
                Drift(
                    spec.name,
                    "replication_factor",
                    str(spec.replication_factor),
                    str(replicas),
                    unsafe=replicas < spec.replication_factor,
                )
            )
    for name, actual in _configs(admin, list(present.values())).items():
        for key, expected in present[name].configs.items():
            value = actual.get(key)
            if value is not None and value != expected:
                drifts.append(Drift(name, key, expected, value, _unsafe(key, expected, value)))
    return drifts


def _unsafe(key: str, expected: str, actual: str) -> bool:
    if key == MIN_ISR:
        return int(actual) < int(expected)
    if key == UNCLEAN:
        return actual.lower() == "true"
    return False


def _configs(admin: KafkaAdminClient, specs: list[TopicSpec]) -> dict[str, dict[str, str]]:
    """Each topic's effective value of the configs its spec names (broker defaults included)."""
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, s.name, configs=dict.fromkeys(s.configs))
        for s in specs
    ]
    result: Any = admin.describe_configs(resources, config_filter="all")
    topics = result.get("topic") or result.get("TOPIC") if isinstance(result, dict) else None
    out: dict[str, dict[str, str]] = {}
    for name, entries in (topics or {}).items():
        out[name] = {
            key: str(entry.get("value") if isinstance(entry, dict) else entry)
            for key, entry in entries.items()
        }
    return out


def report_drift(drifts: Sequence[Drift], *, production: bool) -> None:
    """Warn about every difference; in production refuse to start on an unsafe one."""
    for drift in drifts:
        log.warning(
            "topic differs from contracts/topics.py",
            extra={
                "topic": drift.topic,
                "setting": drift.setting,
                "expected": drift.expected,
                "actual": drift.actual,
                "unsafe": drift.unsafe,
            },
        )
    unsafe = [d.describe() for d in drifts if d.unsafe]
    if production and unsafe:
        raise RuntimeError(
            "existing topics could lose acknowledged writes (fix them on the brokers): "
            + "; ".join(unsafe)
        )


def check_topics(
    admin: KafkaAdminClient, specs: Sequence[TopicSpec], *, production: bool
) -> list[Drift]:
    """At start, in every environment: report drift; production refuses unsafe drift, and
    refuses to start when it cannot check at all (it would not know it is safe)."""
    try:
        drifts = topic_drift(admin, specs)
    except Exception as exc:
        if production:
            raise RuntimeError(f"cannot check the topics: {type(exc).__name__}") from exc
        log.warning("topics not checked", extra={"error": type(exc).__name__})
        return []
    report_drift(drifts, production=production)
    return drifts
