"""An escalation: one episode and severity walking its policy until someone acknowledges. Pure.

Its states and the changes allowed between them::

    triggered ──step paged──▶ triggered ──policy spent──▶ exhausted
        │  ▲                                                 │
        │  └──────────── re-page (unresolved) ◀── acknowledged ◀──┘ (acknowledge)
        └──acknowledge──▶ acknowledged
    triggered | acknowledged | exhausted ──▶ resolved (monitoring closed the episode)
                                          └─▶ superseded (a RED for the same episode)

A forbidden change raises ``ForbiddenTransition``. Acknowledging records ``PageAcknowledged``
(the unit of work publishes it on commit). Each armed timer is named by ``next_step_key``: a timer
that is not the one the escalation waits for finds it ``expects`` nothing and pages nobody.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from contracts import Event, PageAcknowledged
from services.notifications.domain import escalation as policy_rules
from services.notifications.domain.escalation import PolicyDefinition, Step

SEVERITY_RANK = {"AMBER": 1, "RED": 2}


class EscalationStatus(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    EXHAUSTED = "exhausted"
    RESOLVED = "resolved"
    SUPERSEDED = "superseded"


class PageStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"  # a channel accepted it
    UNDELIVERABLE = "undeliverable"  # every channel gave up


OPEN = (EscalationStatus.TRIGGERED, EscalationStatus.ACKNOWLEDGED, EscalationStatus.EXHAUSTED)
# A page still wanted: the walk goes on (or is spent, still unacknowledged).
PAGING = (EscalationStatus.TRIGGERED, EscalationStatus.EXHAUSTED)
_ALLOWED: dict[EscalationStatus, frozenset[EscalationStatus]] = {
    EscalationStatus.TRIGGERED: frozenset(EscalationStatus) - {EscalationStatus.TRIGGERED},
    EscalationStatus.ACKNOWLEDGED: frozenset(
        {EscalationStatus.TRIGGERED, EscalationStatus.RESOLVED, EscalationStatus.SUPERSEDED}
    ),
    EscalationStatus.EXHAUSTED: frozenset(
        {EscalationStatus.ACKNOWLEDGED, EscalationStatus.RESOLVED, EscalationStatus.SUPERSEDED}
    ),
    EscalationStatus.RESOLVED: frozenset(),
    EscalationStatus.SUPERSEDED: frozenset(),
}


class ForbiddenTransition(Exception):
    """A change the escalation's state does not allow (the API answers 409)."""

    def __init__(self, status: EscalationStatus, wanted: EscalationStatus) -> None:
        super().__init__(f"escalation is {status.value}")
        self.status = status
        self.wanted = wanted


@dataclass(eq=False)
class Escalation:
    """The aggregate; its recorded ``events`` go to the outbox when the unit of work commits."""

    id: uuid.UUID
    episode_id: uuid.UUID
    patient_id: uuid.UUID
    severity: str
    family: str | None
    reason_codes: list[str]
    threshold_event_id: uuid.UUID
    policy_key: str
    policy_version: int
    policy: PolicyDefinition  # the definition it started with
    status: EscalationStatus
    cycle: int  # counts re-triggers (a re-page after an unresolved acknowledgement)
    loop: int
    level: int  # 0: nothing paged yet in this cycle
    next_step_key: str | None
    next_step_at: datetime | None
    created_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_via: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    events: list[Event] = field(default_factory=list, repr=False)

    @classmethod
    def open(
        cls,
        *,
        episode_id: uuid.UUID,
        patient_id: uuid.UUID,
        severity: str,
        family: str | None,
        reason_codes: list[str],
        threshold_event_id: uuid.UUID,
        policy_key: str,
        policy_version: int,
        policy: PolicyDefinition,
        now: datetime,
    ) -> Escalation:
        """Triggered, its first step due now (RED) or when business hours open (AMBER)."""
        escalation_id = uuid.uuid4()
        step = policy_rules.first_step()
        return cls(
            id=escalation_id,
            episode_id=episode_id,
            patient_id=patient_id,
            severity=severity,
            family=family,
            reason_codes=reason_codes,
            threshold_event_id=threshold_event_id,
            policy_key=policy_key,
            policy_version=policy_version,
            policy=policy,
            status=EscalationStatus.TRIGGERED,
            cycle=0,
            loop=0,
            level=0,
            next_step_key=step.timer_key(escalation_id),
            next_step_at=policy_rules.first_page_at(policy, severity, now),
            created_at=now,
        )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    def outranks(self, severity: str) -> bool:
        """At least as severe as ``severity``: a new escalation for it is not needed."""
        return self.rank >= SEVERITY_RANK[severity]

    def expects(self, timer_key: str, status: EscalationStatus) -> bool:
        """Still waiting for exactly this timer, in ``status``: else the timer is stale."""
        return self.next_step_key == timer_key and self.status == status

    def first_step(self) -> Step:
        return policy_rules.first_step(cycle=self.cycle)

    def step_paged(self, step: Step, now: datetime) -> Step | None:
        """``step``'s targets were paged: wait for an acknowledgement until the level's timeout,
        then the following step (returned), or the end of the policy (None: exhausted then)."""
        self._check(EscalationStatus.TRIGGERED)
        due = now + policy_rules.ack_timeout(self.policy, step)
        following = policy_rules.step_after(self.policy, step)
        self.cycle, self.loop, self.level = step.cycle, step.loop, step.level
        self.next_step_key = (
            following.timer_key(self.id) if following else f"{self.id}:c{step.cycle}:exhausted"
        )
        self.next_step_at = due
        return following

    def exhaust(self) -> None:
        """The last level timed out on the last loop: nobody acknowledged."""
        self._move(EscalationStatus.EXHAUSTED)
        self.next_step_key = self.next_step_at = None

    def acknowledge(self, clinician: str, via: str, now: datetime) -> bool:
        """Stop the walk and arm the re-page (if the policy has one); records PageAcknowledged.
        False when it was acknowledged already (nothing changes)."""
        if self.status is EscalationStatus.ACKNOWLEDGED:
            return False
        self._move(EscalationStatus.ACKNOWLEDGED)
        repage = policy_rules.repage_at(self.policy, now)
        self.acknowledged_at, self.acknowledged_by, self.acknowledged_via = now, clinician, via
        self.next_step_key = f"{self.id}:c{self.cycle}:repage" if repage else None
        self.next_step_at = repage
        self.events.append(
            PageAcknowledged.create(
                patient_id=self.patient_id,
                occurred_at=now,
                episode_id=self.episode_id,
                severity=self.severity,
                acknowledged_by=clinician,
                channel=via,
            )
        )
        return True

    def repage(self, now: datetime) -> Step:
        """Acknowledged but not resolved in time: the policy starts again as a new cycle."""
        self._move(EscalationStatus.TRIGGERED)
        step = policy_rules.first_step(cycle=self.cycle + 1)
        self.cycle, self.loop, self.level = step.cycle, 0, 0
        self.next_step_key, self.next_step_at = step.timer_key(self.id), now
        self.acknowledged_at = self.acknowledged_by = self.acknowledged_via = None
        return step

    def supersede(self) -> None:
        """A RED for the same episode speaks for it now."""
        self._move(EscalationStatus.SUPERSEDED)
        self.next_step_key = self.next_step_at = None

    def resolve(self, resolution: str, now: datetime) -> None:
        self._move(EscalationStatus.RESOLVED)
        self.next_step_key = self.next_step_at = None
        self.resolved_at, self.resolution = now, resolution

    def pull_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def summary(self) -> dict[str, Any]:
        """What the live feed tells about it (service_layer/feed.py reads these keys)."""
        return {
            "id": self.id,
            "episode_id": self.episode_id,
            "patient_id": self.patient_id,
            "status": self.status.value,
            "severity": self.severity,
            "level": self.level,
            "loop": self.loop,
            "cycle": self.cycle,
        }

    def _check(self, expected: EscalationStatus) -> None:
        if self.status is not expected:
            raise ForbiddenTransition(self.status, expected)

    def _move(self, to: EscalationStatus) -> None:
        if to not in _ALLOWED[self.status]:
            raise ForbiddenTransition(self.status, to)
        self.status = to
