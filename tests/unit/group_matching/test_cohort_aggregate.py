"""The Cohort aggregate (pure): its states and the events its membership changes record."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts import CohortAssigned, CohortChanged, CohortLeft
from services.group_matching.domain.cohort import (
    Cohort,
    CohortStatus,
    InvalidTransition,
    ParticipantStatus,
    check_participant_move,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def cohort(language: str = "en") -> Cohort:
    return Cohort.form(
        stage_group="active",
        language=language,
        drug="alprazolam",
        on_diazepam=False,
        session_weekday=2,
        session_utc_minute=18 * 60,
        capacity=10,
        moderator="mod-1",
        now=NOW,
    )


def test_a_new_member_is_announced_as_assigned_and_a_mover_as_changed() -> None:
    old, new = cohort(), cohort()
    first, mover = uuid.uuid4(), uuid.uuid4()
    waited = NOW - timedelta(days=3)
    old.admit(mover, waited_since=waited, now=NOW)
    new.admit(first, waited_since=waited, now=NOW)
    old.release(mover, "stage_changed", NOW)
    new.admit(mover, waited_since=waited, now=NOW, came_from=(old.id, "stage_changed"))

    (assigned,) = old.pull_events()
    assert isinstance(assigned, CohortAssigned)
    assert (assigned.patient_id, assigned.cohort_id, assigned.language) == (mover, old.id, "en")
    events = new.pull_events()
    assert [type(e) for e in events] == [CohortAssigned, CohortChanged]
    changed = events[1]
    assert isinstance(changed, CohortChanged)
    assert (changed.patient_id, changed.from_cohort_id, changed.to_cohort_id) == (
        mover,
        old.id,
        new.id,
    )
    assert changed.reason == "stage_changed"
    assert new.pull_events() == []  # published once
    assert set(new.members) == {first, mover}
    assert [m.patient_id for m in new.joined] == [first, mover]
    assert [(m.patient_id, m.left_reason) for m in old.departed] == [(mover, "stage_changed")]


def test_a_release_is_silent_until_the_departure_is_announced() -> None:
    c = cohort()
    patient = uuid.uuid4()
    c.admit(patient, waited_since=None, now=NOW)
    c.pull_events()
    c.release(patient, "patient_left", NOW)
    assert c.pull_events() == []
    c.announce_departure(patient, "patient_left", NOW)
    (left,) = c.pull_events()
    assert isinstance(left, CohortLeft)
    assert (left.patient_id, left.cohort_id, left.reason) == (patient, c.id, "patient_left")


def test_a_closed_cohort_releases_everyone_and_takes_nobody() -> None:
    c = cohort()
    members = [uuid.uuid4() for _ in range(3)]
    for p in members:
        c.admit(p, waited_since=NOW, now=NOW)
    released = c.close(NOW)
    assert c.status is CohortStatus.CLOSED
    assert [m.patient_id for m in released] == members
    assert all(m.left_reason == "cohort_closed" for m in released)
    assert c.members == {}
    with pytest.raises(InvalidTransition):
        c.admit(uuid.uuid4(), waited_since=None, now=NOW)
    with pytest.raises(InvalidTransition):
        c.close(NOW)  # closing is final


def test_a_member_is_not_admitted_twice() -> None:
    c = cohort()
    p = uuid.uuid4()
    c.admit(p, waited_since=None, now=NOW)
    with pytest.raises(InvalidTransition):
        c.admit(p, waited_since=None, now=NOW)


@pytest.mark.parametrize(
    ("before", "after", "allowed"),
    [
        (ParticipantStatus.WAITING, ParticipantStatus.PLACED, True),
        (ParticipantStatus.PLACED, ParticipantStatus.WAITING, True),
        (ParticipantStatus.PLACED, ParticipantStatus.LEFT, True),
        (ParticipantStatus.LEFT, ParticipantStatus.WAITING, True),
        (ParticipantStatus.LEFT, ParticipantStatus.PLACED, False),
        (ParticipantStatus.LEFT, ParticipantStatus.LEFT, False),
    ],
)
def test_participant_moves(
    before: ParticipantStatus, after: ParticipantStatus, allowed: bool
) -> None:
    if allowed:
        check_participant_move(before, after)
    else:
        with pytest.raises(InvalidTransition):
            check_participant_move(before, after)
