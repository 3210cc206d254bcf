"""One check-in after a dose step, from planned to completed, missed or superseded. Pure.

When a check-in falls due it records ``CheckInDue`` (the patient is reminded; not when its window
has already closed: a reminder then helps nobody); the unit of work publishes it on commit. A
check-in missed is an AMBER ``engagement`` finding, escalated like any other (``episodes``).

States (``CheckInStatus``, in ``checkins``) and the moves ``TRANSITIONS`` allows::

    scheduled --fall_due--> due --miss--> missed
    scheduled/due --complete--> completed      scheduled --supersede--> superseded

``completed``, ``missed`` and ``superseded`` are final. A move ``TRANSITIONS`` does not allow
raises ``ForbiddenCheckInMove``; ``may_become`` lets a timer that fires twice, or after a report
or a newer step, change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from contracts import CheckInDue, Event
from services.monitoring.domain.checkins import CheckInStatus, PlannedCheckIn
from services.monitoring.domain.model import Reason, Severity
from services.monitoring.domain.rules import ENGAGEMENT, Finding

MISSED_CHECKIN = "missed_checkin"  # the reason code of the engagement finding

_S = CheckInStatus
TRANSITIONS: Mapping[CheckInStatus, frozenset[CheckInStatus]] = {
    _S.SCHEDULED: frozenset({_S.DUE, _S.COMPLETED, _S.SUPERSEDED}),
    _S.DUE: frozenset({_S.COMPLETED, _S.MISSED}),
    _S.COMPLETED: frozenset(),
    _S.MISSED: frozenset(),
    _S.SUPERSEDED: frozenset(),
}


class ForbiddenCheckInMove(ValueError):
    def __init__(self, current: CheckInStatus, wanted: CheckInStatus) -> None:
        super().__init__(f"a check-in {current.value} cannot become {wanted.value}")
        self.current = current
        self.wanted = wanted


@dataclass
class CheckIn:
    id: uuid.UUID
    patient_id: uuid.UUID
    after_dose_event_id: uuid.UUID  # the DoseReduced of the step it follows
    due_at: datetime
    window_closes_at: datetime  # the report window is [due_at, window_closes_at)
    instruments: tuple[str, ...]  # a report of any of them completes it
    status: CheckInStatus = CheckInStatus.SCHEDULED
    completed_by_report_id: uuid.UUID | None = None
    # The status it was stored with: a save is guarded by it, like an episode's ``version``.
    stored_status: CheckInStatus | None = field(default=None, repr=False, compare=False)
    events: list[Event] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def plan(
        cls,
        patient_id: uuid.UUID,
        after_dose_event_id: uuid.UUID,
        planned: PlannedCheckIn,
        instruments: tuple[str, ...],
    ) -> CheckIn:
        return cls(
            id=uuid.uuid4(),
            patient_id=patient_id,
            after_dose_event_id=after_dose_event_id,
            due_at=planned.due_at,
            window_closes_at=planned.window_closes_at,
            instruments=instruments,
        )

    def may_become(self, status: CheckInStatus) -> bool:
        return status in TRANSITIONS[self.status]

    def fall_due(self, now: datetime, correlation_id: uuid.UUID | None) -> CheckInDue | None:
        """Due from now: the reminder recorded (None when the window has already closed)."""
        self._move(CheckInStatus.DUE)
        if now >= self.window_closes_at:
            return None
        reminder = CheckInDue.create(
            patient_id=self.patient_id,
            occurred_at=now,
            correlation_id=correlation_id,
            causation_id=self.after_dose_event_id,
            checkin_id=self.id,
            due_at=self.due_at,
            window_closes_at=self.window_closes_at,
            instruments=self.instruments,
            after_dose_event_id=self.after_dose_event_id,
        )
        self.events.append(reminder)
        return reminder

    def completes_with(self, instrument: str, at: datetime) -> bool:
        """Would a report of ``instrument`` at ``at`` complete this check-in?"""
        return (
            self.may_become(CheckInStatus.COMPLETED)
            and instrument in self.instruments
            and self.due_at <= at < self.window_closes_at
        )

    def complete(self, report_id: uuid.UUID) -> None:
        self._move(CheckInStatus.COMPLETED)
        self.completed_by_report_id = report_id

    def miss(self) -> Finding:
        """The window closed with no report: the AMBER engagement finding to escalate."""
        self._move(CheckInStatus.MISSED)
        return Finding(ENGAGEMENT, Severity.AMBER, Reason(MISSED_CHECKIN, None, None, None))

    def supersede(self) -> None:
        self._move(CheckInStatus.SUPERSEDED)

    def pull_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def _move(self, wanted: CheckInStatus) -> None:
        if not self.may_become(wanted):
            raise ForbiddenCheckInMove(self.status, wanted)
        self.status = wanted
