"""What the system did, as collected after quiescence (:mod:`deploy.proving.collect` fills it,
unit tests build it by hand): plain data, so the checker is a pure function."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Record:
    """One Kafka record of a product topic (payload parsed; None when it is not JSON)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    payload: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def event_id(self) -> str | None:
        return None if self.payload is None else self.payload.get("event_id")

    @property
    def event_type(self) -> str | None:
        return None if self.payload is None else self.payload.get("event_type")


@dataclass(frozen=True)
class OutboxRow:
    service: str
    seq: int
    event_id: str
    topic: str
    key: str
    published: bool


@dataclass
class Evidence:
    records: list[Record] = field(default_factory=list)  # every product topic, run's keys only
    dead_letters: list[Record] = field(default_factory=list)  # every .dlq topic
    outbox: list[OutboxRow] = field(default_factory=list)
    inbox: dict[str, set[str]] = field(default_factory=dict)  # consumer -> event ids processed
    # consumer -> event id -> times the consumer's domain effect exists (e.g. dose_history rows)
    effects: dict[str, dict[str, int]] = field(default_factory=dict)
    reports_stored: dict[str, int] = field(default_factory=dict)  # patient -> symptom_reports
    escalations: dict[str, int] = field(default_factory=dict)  # episode -> RED escalation rows
    # episodes notifications learnt were resolved (EscalationResolved): one resolved before its
    # ThresholdExceeded arrived is never escalated, rightly (the clinician already acted)
    resolved_in_notifications: set[str] = field(default_factory=set)
    # episode -> (status, level reached) of its RED escalation (level 0: not paged yet)
    escalation_state: dict[str, tuple[str, int]] = field(default_factory=dict)
    # (episode, level, "cycle/loop/target") -> page rows: one per level and person per cycle
    pages: dict[tuple[str, int, str], int] = field(default_factory=dict)
    # the same keys -> page status (delivered / pending / failed ...)
    page_status: dict[tuple[str, int, str], str] = field(default_factory=dict)
    sink: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # channel -> requests
    parked_timers: dict[str, int] = field(default_factory=dict)  # service -> parked
    pending_outbox: dict[str, int] = field(default_factory=dict)  # service -> unpublished
    consumer_lag: dict[str, int] = field(default_factory=dict)  # group -> summed lag
    skipped_duplicates: int = 0  # "duplicate event skipped" lines in the services' logs
    phi_hits: list[str] = field(default_factory=list)  # "<file>:<line>" where the marker showed
    spans_exported: int = 0  # spans the services exported into the logs dir (scanned for PHI)
