"""The ``Episode`` aggregate on its own (no database): its state machine and the events it records.

Opened: one ``ThresholdExceeded``; absorbing a report of the same level: nothing; a rise to RED:
one more; resolved: one ``EscalationResolved``; a resolved episode refuses every further move with
``ForbiddenTransition`` naming both states. The unit of work publishes what ``pull_events`` gives.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts import EscalationResolved, SymptomReported, ThresholdExceeded
from services.monitoring.domain.episodes import (
    TRANSITIONS,
    Episode,
    EpisodeConflict,
    EpisodeStatus,
    ForbiddenTransition,
)
from services.monitoring.domain.model import Reason, Severity
from services.monitoring.domain.rules import WITHDRAWAL, Finding

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
PATIENT = uuid.uuid4()


def found(severity: Severity, total: int = 30) -> list[Finding]:
    return [Finding(WITHDRAWAL, severity, Reason("band:ciwa-b", "ciwa-b", total, 25))]


def opened(severity: Severity = Severity.AMBER) -> Episode:
    return Episode.open(PATIENT, found(severity), uuid.uuid4(), NOW)


def test_opening_records_one_threshold_exceeded_caused_by_the_report() -> None:
    report = uuid.uuid4()
    cause = SymptomReported.create(
        patient_id=PATIENT,
        occurred_at=NOW,
        report_id=report,
        instrument="ciwa-b",
        instrument_version="1",
        method="self-report",
        total_score=30,
        band="moderate",
    )
    episode = Episode.open(PATIENT, found(Severity.AMBER), report, NOW, cause=cause)
    [event] = episode.pull_events()
    assert isinstance(event, ThresholdExceeded)
    assert (event.episode_id, event.report_id, event.severity) == (episode.id, report, "AMBER")
    assert (event.causation_id, event.correlation_id) == (cause.event_id, cause.correlation_id)
    assert episode.pull_events() == []  # published once


def test_only_a_rise_is_announced_again() -> None:
    episode = opened(Severity.AMBER)
    episode.pull_events()
    assert episode.absorb(found(Severity.AMBER), uuid.uuid4(), NOW) is False
    assert episode.pull_events() == []
    assert episode.absorb(found(Severity.RED, 50), uuid.uuid4(), NOW) is True
    [risen] = episode.pull_events()
    assert isinstance(risen, ThresholdExceeded)
    assert risen.severity == "RED"
    assert episode.absorb(found(Severity.AMBER), uuid.uuid4(), NOW) is False  # never falls
    assert (episode.severity, episode.history) == (Severity.RED, ["AMBER", "RED"])
    assert episode.pull_events() == []


def test_resolving_records_escalation_resolved_and_is_final() -> None:
    episode = opened(Severity.RED)
    episode.pull_events()
    later = NOW + timedelta(hours=1)
    episode.resolve("dr-1", "keep_held", later, note="called the patient")
    [event] = episode.pull_events()
    assert isinstance(event, EscalationResolved)
    assert (event.episode_id, event.resolution, event.severity) == (episode.id, "keep_held", "RED")
    assert "called" not in event.model_dump_json()  # the note stays in monitoring
    assert (episode.status, episode.resolved_at, episode.resolution_note) == (
        EpisodeStatus.RESOLVED,
        later,
        "called the patient",
    )
    with pytest.raises(ForbiddenTransition) as again:
        episode.resolve("dr-1", "referred", later)
    assert (again.value.current, again.value.wanted) == (
        EpisodeStatus.RESOLVED,
        EpisodeStatus.RESOLVED,
    )
    with pytest.raises(EpisodeConflict, match="resolved"):
        episode.absorb(found(Severity.RED), uuid.uuid4(), later)
    assert episode.pull_events() == []  # a refused move records nothing


def test_an_acknowledgement_changes_no_state_and_the_first_stands() -> None:
    episode = opened()
    assert episode.acknowledge(NOW) is True
    assert episode.acknowledge(NOW + timedelta(minutes=5)) is False
    assert (episode.status, episode.acknowledged_at) == (EpisodeStatus.OPEN, NOW)


def test_every_state_has_its_moves_and_resolved_is_final() -> None:
    assert set(TRANSITIONS) == set(EpisodeStatus)
    assert TRANSITIONS[EpisodeStatus.RESOLVED] == frozenset()
    assert EpisodeStatus.RESOLVED in TRANSITIONS[EpisodeStatus.OPEN]
