"""A peer-support cohort: the aggregate whose membership changes record the cohort events. Pure.

A cohort is ``active`` until it closes (merged into another, or closed with its members sent
back to the waitlist); a closed cohort takes nobody and never opens again. Its members come and
go through three doors, each recording what it implies:

* ``admit``: a patient joins; ``CohortAssigned``, or ``CohortChanged`` when they come from a
  cohort they left in the same run (a stage that settled elsewhere, a cohort that closed);
* ``release``: a member leaves; nothing is announced yet, because the same run may place them
  again (then the cohort they join announces the change);
* ``announce_departure``: a released member joined no other cohort; ``CohortLeft``.

The unit of work publishes the recorded events on commit: the repository that loads or adds a
cohort hands it to ``uow.track`` (a domain type may not import the chassis, so ``Cohort``
satisfies ``services.chassis.aggregate.RecordsEvents`` with ``pull_events`` rather than
subclassing ``Aggregate``), and a use case never builds a cohort event by hand.

A patient's own participation is waiting, placed or left (``ParticipantStatus``); its allowed
moves are ``PARTICIPANT_MOVES``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from contracts import CohortAssigned, CohortChanged, CohortLeft, Event

LeaveReason = Literal["patient_left", "stage_changed", "cohort_closed"]
MoveReason = Literal["stage_changed", "cohort_closed"]


class CohortStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


COHORT_MOVES: dict[CohortStatus, frozenset[CohortStatus]] = {
    CohortStatus.ACTIVE: frozenset({CohortStatus.CLOSED}),
    CohortStatus.CLOSED: frozenset(),
}


class ParticipantStatus(StrEnum):
    WAITING = "waiting"
    PLACED = "placed"
    LEFT = "left"


PARTICIPANT_MOVES: dict[ParticipantStatus, frozenset[ParticipantStatus]] = {
    # waiting -> waiting: a returning patient's timezone or language changes
    ParticipantStatus.WAITING: frozenset(
        {ParticipantStatus.WAITING, ParticipantStatus.PLACED, ParticipantStatus.LEFT}
    ),
    ParticipantStatus.PLACED: frozenset(
        {ParticipantStatus.PLACED, ParticipantStatus.WAITING, ParticipantStatus.LEFT}
    ),
    ParticipantStatus.LEFT: frozenset({ParticipantStatus.WAITING}),
}


class InvalidTransition(ValueError):
    """A change the state machine does not allow (a bug in the caller, never user input)."""


def check_participant_move(before: ParticipantStatus, after: ParticipantStatus) -> None:
    if after not in PARTICIPANT_MOVES[before]:
        raise InvalidTransition(f"a participant cannot go from {before} to {after}")


@dataclass
class Membership:
    """A patient's time in a cohort. ``waited_since``: the waiting time they had when placed
    (kept if the cohort closes under them: they were not at fault)."""

    id: uuid.UUID
    patient_id: uuid.UUID
    joined_at: datetime
    waited_since: datetime | None
    left_at: datetime | None = None
    left_reason: LeaveReason | None = None


@dataclass(eq=False)
class Cohort:
    id: uuid.UUID
    stage_group: str
    language: str
    drug: str | None  # None: mixed drugs
    on_diazepam: bool | None  # None: mixed
    session_weekday: int  # 0 = Monday (UTC)
    session_utc_minute: int
    capacity: int
    moderator: str
    status: CohortStatus
    created_at: datetime
    members: dict[uuid.UUID, Membership] = field(default_factory=dict)  # current ones
    # changes not yet saved by the repository, and events not yet published
    joined: list[Membership] = field(default_factory=list)
    departed: list[Membership] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @classmethod
    def form(
        cls,
        *,
        stage_group: str,
        language: str,
        drug: str | None,
        on_diazepam: bool | None,
        session_weekday: int,
        session_utc_minute: int,
        capacity: int,
        moderator: str,
        now: datetime,
    ) -> Cohort:
        """A new active cohort, empty until members are admitted."""
        return cls(
            id=uuid.uuid4(),
            stage_group=stage_group,
            language=language,
            drug=drug,
            on_diazepam=on_diazepam,
            session_weekday=session_weekday,
            session_utc_minute=session_utc_minute,
            capacity=capacity,
            moderator=moderator,
            status=CohortStatus.ACTIVE,
            created_at=now,
        )

    def admit(
        self,
        patient_id: uuid.UUID,
        *,
        waited_since: datetime | None,
        now: datetime,
        came_from: tuple[uuid.UUID, MoveReason] | None = None,
    ) -> None:
        """``patient_id`` joins; ``came_from``: the cohort they left this run, and why."""
        if self.status is not CohortStatus.ACTIVE:
            raise InvalidTransition("a closed cohort takes nobody")
        if patient_id in self.members:
            raise InvalidTransition("already a member")
        membership = Membership(uuid.uuid4(), patient_id, now, waited_since)
        self.members[patient_id] = membership
        self.joined.append(membership)
        if came_from is None:
            self.events.append(
                CohortAssigned.create(
                    patient_id=patient_id,
                    occurred_at=now,
                    cohort_id=self.id,
                    stage_group=self.stage_group,
                    language=self.language,
                )
            )
        else:
            from_cohort, reason = came_from
            self.events.append(
                CohortChanged.create(
                    patient_id=patient_id,
                    occurred_at=now,
                    from_cohort_id=from_cohort,
                    to_cohort_id=self.id,
                    stage_group=self.stage_group,
                    reason=reason,
                )
            )

    def release(self, patient_id: uuid.UUID, reason: LeaveReason, now: datetime) -> None:
        """The member leaves; whether that is a change or a departure is known only once the
        run has placed whoever it could (``announce_departure``)."""
        membership = self.members.pop(patient_id, None)
        if membership is None:
            return  # not a current member: nothing to end
        membership.left_at, membership.left_reason = now, reason
        self.departed.append(membership)

    def announce_departure(self, patient_id: uuid.UUID, reason: LeaveReason, now: datetime) -> None:
        """A released member joined no other cohort."""
        self.events.append(
            CohortLeft.create(
                patient_id=patient_id, occurred_at=now, cohort_id=self.id, reason=reason
            )
        )

    def close(self, now: datetime) -> list[Membership]:
        """Active -> closed: every member is released (``cohort_closed``); returns them."""
        self._move_to(CohortStatus.CLOSED)
        released = list(self.members.values())
        for m in released:
            self.release(m.patient_id, "cohort_closed", now)
        return released

    def hand_over(self, moderator: str) -> None:
        self.moderator = moderator

    def _move_to(self, status: CohortStatus) -> None:
        if status not in COHORT_MOVES[self.status]:
            raise InvalidTransition(f"a cohort cannot go from {self.status} to {status}")
        self.status = status

    def pull_events(self) -> list[Event]:
        """The recorded events, oldest first; the cohort forgets them (published once)."""
        events, self.events = self.events, []
        return events
