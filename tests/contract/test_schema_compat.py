"""Event contracts: committed schema snapshots, the compatibility checker, wire round trips, names.

A failure in ``test_snapshot_*`` means an event model changed: a compatible change needs
``make schemas`` (``python -m contracts.snapshot --write``); a breaking one needs a new topic
version (``VERSION = n + 1``), never an edited v<n> snapshot.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

import contracts.events
from contracts import (
    ALL_TOPICS,
    CheckInDue,
    CohortAssigned,
    CohortChanged,
    CohortLeft,
    DoseReduced,
    DoseRestored,
    DrugDose,
    Envelope,
    EscalationResolved,
    Event,
    PageAcknowledged,
    Severity,
    SymptomReported,
    TaperCompleted,
    TaperHeld,
    TaperResumed,
    TaperStage,
    ThresholdExceeded,
    ThresholdReason,
    Topic,
)
from contracts.compat import breaking_changes, schema_for
from contracts.snapshot import check, render, snapshot_path, write

RUN = "run `make schemas` (python -m contracts.snapshot --write) and commit the result"


def _by_name(topics: tuple[Topic, ...]) -> Any:
    return pytest.mark.parametrize("topic", topics, ids=[t.name for t in topics])


def _major(topic: Topic) -> int:
    return int(topic.name.rsplit(".v", 1)[1])


# --- (a) committed snapshots ----------------------------------------------------------------------


@_by_name(ALL_TOPICS)
def test_snapshot_exists(topic: Topic) -> None:
    assert snapshot_path(topic).exists(), f"{topic.name} has no schema snapshot: {RUN}"


@_by_name(ALL_TOPICS)
def test_snapshot_has_no_breaking_change(topic: Topic) -> None:
    committed = json.loads(snapshot_path(topic).read_text())
    problems = breaking_changes(committed, schema_for(topic))
    assert problems == [], (
        f"{topic.name} changed incompatibly: {problems}. Keep v{_major(topic)} as it is and "
        "publish the new shape on a new topic version (VERSION = n + 1)."
    )


@_by_name(ALL_TOPICS)
def test_snapshot_is_current(topic: Topic) -> None:
    assert snapshot_path(topic).read_text() == render(schema_for(topic)), (
        f"{topic.name}: the schema changed compatibly but its snapshot is stale: {RUN}"
    )


def test_check_passes_on_the_committed_snapshots() -> None:
    assert check() == []


def test_check_reports_missing_and_stale_snapshots(tmp_path) -> None:
    first, *_ = ALL_TOPICS
    snapshot_path(first, tmp_path).write_text(render(schema_for(first)).replace("Unique", "A"))
    problems = check(tmp_path)
    assert any(first.name in p and "stale" in p for p in problems)
    assert sum("no snapshot" in p for p in problems) == len(ALL_TOPICS) - 1


def test_write_refuses_to_overwrite_a_breaking_change(tmp_path) -> None:
    first, *_ = ALL_TOPICS
    old = schema_for(first)
    old["properties"]["retired_field"] = {"type": "string"}
    snapshot_path(first, tmp_path).write_text(render(old))

    refused = write(tmp_path)

    assert refused == [f"{first.name}: BREAKING: field 'retired_field' removed"]
    assert json.loads(snapshot_path(first, tmp_path).read_text()) == old  # untouched
    assert check(tmp_path) == refused  # the other topics were written
    assert write(tmp_path, allow_breaking=True) == []
    assert check(tmp_path) == []


# --- (b) the checker on synthetic before/after models ---------------------------------------------


class Level(StrEnum):
    LOW = "low"
    HIGH = "high"
    EXTREME = "extreme"


class LevelNarrowed(StrEnum):
    LOW = "low"
    HIGH = "high"


class Reason(BaseModel):
    code: str
    value: float | None = None


class ReasonRetyped(BaseModel):
    code: int
    value: float | None = None


class Before(BaseModel):
    dose_mg: str
    level: Level
    reasons: tuple[Reason, ...] = ()
    site: str = "clinic"
    note_code: str | None = None


class RemovedField(BaseModel):
    level: Level
    reasons: tuple[Reason, ...] = ()
    site: str = "clinic"
    note_code: str | None = None


class RetypedField(BaseModel):
    dose_mg: int
    level: Level
    reasons: tuple[Reason, ...] = ()
    site: str = "clinic"
    note_code: str | None = None


class NewRequiredField(Before):
    episode: int


class OptionalMadeRequired(BaseModel):
    dose_mg: str
    level: Level
    reasons: tuple[Reason, ...] = ()
    site: str
    note_code: str | None = None


class NestedRetyped(BaseModel):
    dose_mg: str
    level: Level
    reasons: tuple[ReasonRetyped, ...] = ()
    site: str = "clinic"
    note_code: str | None = None


class EnumNarrowed(BaseModel):
    dose_mg: str
    level: LevelNarrowed
    reasons: tuple[Reason, ...] = ()
    site: str = "clinic"
    note_code: str | None = None


class MadeNullable(BaseModel):
    dose_mg: str | None
    level: Level
    reasons: tuple[Reason, ...] = ()
    site: str = "clinic"
    note_code: str | None = None


class Constrained(BaseModel):
    dose_mg: str = Field(pattern=r"^\d+$")
    level: Level
    reasons: tuple[Reason, ...] = Field(default=(), min_length=1)
    site: str = "clinic"
    note_code: str | None = None


class NewOptionalField(Before):
    episode: int | None = None
    tags: tuple[str, ...] = ()


class Redocumented(BaseModel):
    """Only titles, descriptions, examples and defaults differ: not breaking."""

    model_config = ConfigDict(title="Renamed")

    dose_mg: str = Field(description="Dose as a decimal string.", examples=["2.5"])
    level: Level
    reasons: tuple[Reason, ...] = ()
    site: str = "home"
    note_code: str | None = Field(default=None, title="Code")


def _schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema(mode="serialization")


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (RemovedField, ["field 'dose_mg' removed"]),
        (RetypedField, ["field 'dose_mg' type changed string -> integer"]),
        (NewRequiredField, ["field 'episode' added as required"]),
        (OptionalMadeRequired, ["field 'site' changed optional -> required"]),
        (NestedRetyped, ["field 'reasons[].code' type changed string -> integer"]),
        (EnumNarrowed, ["field 'level' enum value(s) removed: 'extreme'"]),
        (MadeNullable, ["field 'dose_mg' type changed string -> string|null"]),
        (
            Constrained,
            [
                "field 'dose_mg' constraint 'pattern' changed None -> '^\\\\d+$'",
                "field 'reasons' constraint 'minItems' changed None -> 1",
            ],
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_checker_flags_breaking_change(after: type[BaseModel], expected: list[str]) -> None:
    assert breaking_changes(_schema(Before), _schema(after)) == expected


def test_checker_flags_an_added_enum_value() -> None:
    """Old consumers validate the enum, so a new value would be rejected (dead-lettered) by them."""
    assert breaking_changes(_schema(EnumNarrowed), _schema(Before)) == [
        "field 'level' enum value(s) added: 'extreme' (old consumers may reject them)"
    ]


@pytest.mark.parametrize(
    "after", [Before, NewOptionalField, Redocumented], ids=lambda m: m.__name__
)
def test_checker_accepts_compatible_change(after: type[BaseModel]) -> None:
    assert breaking_changes(_schema(Before), _schema(after)) == []


def test_checker_flags_a_changed_topic_name() -> None:
    old = {**_schema(Before), "x-topic": "taper.x.before.v1"}
    new = {**_schema(Before), "x-topic": "taper.x.before.v2"}
    assert breaking_changes(old, new) == ["topic changed taper.x.before.v1 -> taper.x.before.v2"]


class Node(BaseModel):
    label: str
    children: tuple[Node, ...] = ()


class NodeRetyped(BaseModel):
    label: int
    children: tuple[NodeRetyped, ...] = ()


def test_checker_terminates_on_recursive_models() -> None:
    assert breaking_changes(_schema(Node), _schema(Node)) == []
    assert breaking_changes(_schema(Node), _schema(NodeRetyped)) == [
        "field 'label' type changed string -> integer"
    ]


# --- (c) round trip over the wire -----------------------------------------------------------------

_aware_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
_milligrams = st.decimals(min_value=0, max_value=Decimal("99999.9999"), places=4)
_finite = st.none() | st.floats(allow_nan=False, allow_infinity=False)
_codes = st.from_regex(r"[a-z0-9_.:-]{1,64}", fullmatch=True)
_drug_codes = st.from_regex(r"[a-z0-9_-]{1,40}", fullmatch=True)
_reason_codes = st.from_regex(r"[a-z0-9_]{1,40}", fullmatch=True)


def _literal(model: type[BaseModel], field: str) -> st.SearchStrategy[str]:
    return st.sampled_from(get_args(model.model_fields[field].annotation))


_drug_doses = st.builds(DrugDose, drug=_drug_codes, daily_dose_mg=_milligrams)

# One strategy per fact of each event (the envelope comes from ``Event.create``).
FACTS: dict[type[Event], dict[str, st.SearchStrategy[Any]]] = {
    DoseReduced: {
        "plan_id": st.uuids(),
        "step_number": st.integers(min_value=1),
        "drug": _drug_codes,
        "previous_daily_dose_mg": _milligrams,
        "new_daily_dose_mg": _milligrams,
        "effective_on": st.dates(),
        "taper_stage": st.sampled_from(TaperStage),
        "approved_by_decision_id": st.uuids(),
        "half_life_class": _literal(DoseReduced, "half_life_class"),
        "step_kind": st.none() | st.sampled_from(["reduction", "crossover", "final"]),
        "regimen": st.none() | st.lists(_drug_doses, min_size=1, max_size=2),
        "previous_daily_diazepam_eq_mg": st.none() | _milligrams,
        "new_daily_diazepam_eq_mg": st.none() | _milligrams,
    },
    DoseRestored: {
        "plan_id": st.uuids(),
        "step_number": st.integers(min_value=1),
        "drug": _drug_codes,
        "previous_daily_dose_mg": _milligrams,
        "restored_daily_dose_mg": _milligrams,
        "regimen": st.lists(_drug_doses, min_size=1, max_size=2),
        "effective_on": st.dates(),
        "decision_id": st.uuids(),
        "half_life_class": _literal(DoseRestored, "half_life_class"),
        "taper_stage": st.sampled_from(TaperStage),
    },
    SymptomReported: {
        "report_id": st.uuids(),
        "instrument": _codes,
        "instrument_version": _codes,
        "method": _literal(SymptomReported, "method"),
        "total_score": st.integers(min_value=0),
        "band": _codes,
        "red_flags": st.lists(_codes, max_size=3).map(tuple),
    },
    ThresholdExceeded: {
        "report_id": st.uuids(),
        "episode_id": st.uuids(),
        "severity": st.sampled_from(Severity),
        "reasons": st.lists(
            st.builds(
                ThresholdReason,
                code=_codes,
                instrument=st.none() | _codes,
                value=_finite,
                threshold=_finite,
            ),
            min_size=1,
            max_size=3,
        ).map(tuple),
        "family": st.none() | _codes,
    },
    TaperHeld: {
        "plan_id": st.uuids(),
        "reason_code": _reason_codes,
        "held_by": _literal(TaperHeld, "held_by"),
        "decision_id": st.none() | st.uuids(),
        "taper_stage": st.sampled_from(TaperStage),
    },
    EscalationResolved: {
        "episode_id": st.uuids(),
        "family": _codes,
        "severity": st.sampled_from(Severity),
        "resolution": _literal(EscalationResolved, "resolution"),
        "resolved_by": _codes,
    },
    PageAcknowledged: {
        "episode_id": st.uuids(),
        "severity": _literal(PageAcknowledged, "severity"),
        "acknowledged_by": _codes,
        "channel": _literal(PageAcknowledged, "channel"),
    },
    CheckInDue: {
        "checkin_id": st.uuids(),
        "due_at": st.datetimes(timezones=st.just(UTC)),
        "window_closes_at": st.datetimes(timezones=st.just(UTC)),
        "instruments": st.lists(_codes, min_size=1, max_size=4).map(tuple),
        "after_dose_event_id": st.uuids(),
    },
    TaperResumed: {
        "plan_id": st.uuids(),
        "decision_id": st.uuids(),
        "taper_stage": st.sampled_from(TaperStage),
    },
    CohortAssigned: {
        "cohort_id": st.uuids(),
        "stage_group": _literal(CohortAssigned, "stage_group"),
        "language": _codes,
    },
    CohortChanged: {
        "from_cohort_id": st.uuids(),
        "to_cohort_id": st.uuids(),
        "stage_group": _literal(CohortChanged, "stage_group"),
        "reason": _literal(CohortChanged, "reason"),
    },
    CohortLeft: {
        "cohort_id": st.uuids(),
        "reason": _literal(CohortLeft, "reason"),
    },
    TaperCompleted: {
        "plan_id": st.uuids(),
        "final_daily_dose_mg": _milligrams,
        "outcome": _literal(TaperCompleted, "outcome"),
        "decision_id": st.uuids(),
    },
}


def events(cls: type[Event]) -> st.SearchStrategy[Event]:
    return st.builds(
        cls.create,
        patient_id=st.uuids(),
        occurred_at=_aware_datetimes,
        correlation_id=st.none() | st.uuids(),
        causation_id=st.none() | st.uuids(),
        **FACTS[cls],
    )


def _with_unknown_fields(payload: Any) -> Any:
    """Add an unknown field to every object, nested ones included, as a newer producer might."""
    if isinstance(payload, dict):
        return {k: _with_unknown_fields(v) for k, v in payload.items()} | {
            "x_added_in_a_later_minor": {"anything": [1, "two"]}
        }
    if isinstance(payload, list):
        return [_with_unknown_fields(v) for v in payload]
    return payload


def test_every_topic_has_an_example_strategy() -> None:
    assert set(FACTS) == {t.event for t in ALL_TOPICS}


@_by_name(ALL_TOPICS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_event_round_trips_over_the_wire(topic: Topic, data: st.DataObject) -> None:
    event = data.draw(events(topic.event))
    wire = event.to_bytes()

    assert topic.event.model_validate_json(wire) == event
    assert event.schema_version == _major(topic)
    envelope = Envelope.model_validate_json(wire)  # how a consumer reads an unknown type
    assert envelope.event_type == topic.event.EVENT_TYPE
    assert envelope.event_id == event.event_id


@_by_name(ALL_TOPICS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_parsing_ignores_unknown_fields(topic: Topic, data: st.DataObject) -> None:
    event = data.draw(events(topic.event))
    newer = json.dumps(_with_unknown_fields(json.loads(event.to_bytes())))

    assert topic.event.model_validate_json(newer) == event


def test_a_hand_made_event_round_trips() -> None:
    event = DoseReduced.create(
        patient_id=uuid.UUID(int=1),
        occurred_at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        plan_id=uuid.UUID(int=2),
        step_number=3,
        drug="diazepam",
        previous_daily_dose_mg=Decimal("10"),
        new_daily_dose_mg=Decimal("7.5"),
        effective_on=datetime(2025, 3, 1).date(),
        taper_stage=TaperStage.ACTIVE,
        approved_by_decision_id=uuid.UUID(int=3),
        half_life_class="long",
    )
    wire = json.loads(event.to_bytes())
    assert wire["new_daily_dose_mg"] == "7.5"  # Decimal travels as a string, as snapshotted
    assert wire["correlation_id"] == wire["event_id"]  # a new flow starts a correlation
    assert DoseReduced.model_validate_json(event.to_bytes()) == event


# --- (d) names and versions -----------------------------------------------------------------------

TOPIC_NAME = re.compile(r"^taper\.[a-z_]+\.[a-z-]+\.v\d+$")


@_by_name(ALL_TOPICS)
def test_topic_naming(topic: Topic) -> None:
    assert TOPIC_NAME.match(topic.name), topic.name
    assert topic.dlq == f"{topic.name}.dlq"
    assert topic.event.VERSION == _major(topic)
    assert topic.event.model_fields["event_type"].default == topic.event.EVENT_TYPE
    assert schema_for(topic)["x-topic"] == topic.name


def test_topic_and_dlq_names_are_unique() -> None:
    names = [t.name for t in ALL_TOPICS] + [t.dlq for t in ALL_TOPICS]
    assert len(names) == len(set(names))


def _defined_event_classes() -> set[type[Event]]:
    for module in pkgutil.walk_packages(contracts.events.__path__, "contracts.events."):
        importlib.import_module(module.name)
    found, todo = set(), [Event]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("contracts.events."):
                found.add(sub)
            todo.append(sub)
    return found


def test_each_event_class_is_carried_by_exactly_one_topic() -> None:
    carried = Counter(t.event for t in ALL_TOPICS)
    assert {cls: n for cls, n in carried.items() if n != 1} == {}
    assert _defined_event_classes() == set(carried), "an event class no topic carries"
