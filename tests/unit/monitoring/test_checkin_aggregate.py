"""The ``CheckIn`` aggregate on its own (no database): its moves and the reminder it records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts import CheckInDue
from services.monitoring.domain.checkin import (
    MISSED_CHECKIN,
    TRANSITIONS,
    CheckIn,
    ForbiddenCheckInMove,
)
from services.monitoring.domain.checkins import CheckInStatus, PlannedCheckIn
from services.monitoring.domain.model import Severity
from services.monitoring.domain.rules import ENGAGEMENT

DUE = datetime(2026, 3, 3, 9, tzinfo=UTC)
CLOSES = DUE + timedelta(hours=24)
STEP = uuid.uuid4()


def planned() -> CheckIn:
    return CheckIn.plan(uuid.uuid4(), STEP, PlannedCheckIn(DUE, CLOSES), ("ciwa-b",))


def test_falling_due_records_one_reminder_caused_by_the_dose_step() -> None:
    checkin = planned()
    flow = uuid.uuid4()
    reminder = checkin.fall_due(DUE, flow)
    assert checkin.status is CheckInStatus.DUE
    assert checkin.pull_events() == [reminder]
    assert isinstance(reminder, CheckInDue)
    assert (reminder.checkin_id, reminder.causation_id, reminder.correlation_id) == (
        checkin.id,
        STEP,
        flow,
    )
    assert checkin.pull_events() == []


def test_falling_due_after_the_window_reminds_nobody() -> None:
    checkin = planned()
    assert checkin.fall_due(CLOSES, None) is None
    assert (checkin.status, checkin.pull_events()) == (CheckInStatus.DUE, [])


def test_a_missed_checkin_is_an_amber_engagement_finding() -> None:
    checkin = planned()
    checkin.fall_due(DUE, None)
    finding = checkin.miss()
    assert (finding.family, finding.severity, finding.reason.code) == (
        ENGAGEMENT,
        Severity.AMBER,
        MISSED_CHECKIN,
    )


def test_a_report_inside_the_window_of_an_asked_instrument_completes_it() -> None:
    checkin = planned()
    assert not checkin.completes_with("ciwa-b", DUE - timedelta(seconds=1))
    assert not checkin.completes_with("ciwa-b", CLOSES)
    assert not checkin.completes_with("gad-7", DUE)
    assert checkin.completes_with("ciwa-b", DUE)  # still scheduled: the due timer lags
    report = uuid.uuid4()
    checkin.complete(report)
    assert (checkin.status, checkin.completed_by_report_id) == (CheckInStatus.COMPLETED, report)
    assert not checkin.completes_with("ciwa-b", DUE)


@pytest.mark.parametrize("final", [CheckInStatus.COMPLETED, CheckInStatus.SUPERSEDED])
def test_final_states_refuse_every_move(final: CheckInStatus) -> None:
    checkin = planned()
    if final is CheckInStatus.COMPLETED:
        checkin.complete(uuid.uuid4())
    else:
        checkin.supersede()
    for move in (lambda: checkin.fall_due(DUE, None), checkin.miss, checkin.supersede):
        with pytest.raises(ForbiddenCheckInMove):
            move()
    assert checkin.status is final and checkin.pull_events() == []


def test_only_a_due_checkin_can_be_missed_and_every_state_has_its_moves() -> None:
    with pytest.raises(ForbiddenCheckInMove, match="scheduled cannot become missed"):
        planned().miss()
    assert set(TRANSITIONS) == set(CheckInStatus)
