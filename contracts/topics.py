"""Every topic, who produces it and who consumes it: the map of the system.

Start here to find where an event is produced and consumed: ``Topic.producer`` names the one service
that writes the topic (through its outbox), ``Topic.consumers`` the consumer groups that read it
(each is the consuming service's name, and its handler lives in
``services/<consumer>/entrypoints/consumers.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from contracts.envelope import Event
from contracts.events.group_matching import CohortAssigned, CohortChanged, CohortLeft
from contracts.events.monitoring import (
    CheckInDue,
    EscalationResolved,
    SymptomReported,
    ThresholdExceeded,
)
from contracts.events.notifications import PageAcknowledged
from contracts.events.scheduler import (
    DoseReduced,
    DoseRestored,
    TaperCompleted,
    TaperHeld,
    TaperResumed,
)

DLQ_SUFFIX = ".dlq"


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


@dataclass(frozen=True)
class Topic:
    event: type[Event]
    consumers: tuple[str, ...]
    partitions: int = 6

    @property
    def producer(self) -> str:
        return self.event.PRODUCER

    @property
    def name(self) -> str:
        """``taper.<producer>.<event-kebab>.v<major>``."""
        return f"taper.{self.producer}.{_kebab(self.event.EVENT_TYPE)}.v{self.event.VERSION}"

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


DOSE_REDUCED = Topic(DoseReduced, consumers=("monitoring", "group_matching", "notifications"))
# Monitoring records it in the dose history (an increase: no withdrawal window of its own);
# notifications tells the patient about the restored dose.
DOSE_RESTORED = Topic(DoseRestored, consumers=("monitoring", "notifications"))
SYMPTOM_REPORTED = Topic(SymptomReported, consumers=())
THRESHOLD_EXCEEDED = Topic(
    ThresholdExceeded, consumers=("notifications", "scheduler", "group_matching")
)
# Notifications stops paging for the episode; the scheduler resumes the taper when asked to.
ESCALATION_RESOLVED = Topic(
    EscalationResolved, consumers=("scheduler", "notifications", "group_matching")
)
CHECK_IN_DUE = Topic(CheckInDue, consumers=("notifications",))
# Produced by notifications' acknowledge endpoint and signed links.
PAGE_ACKNOWLEDGED = Topic(PageAcknowledged, consumers=("monitoring",))
TAPER_HELD = Topic(TaperHeld, consumers=("group_matching",))
TAPER_RESUMED = Topic(TaperResumed, consumers=("group_matching",))
TAPER_COMPLETED = Topic(TaperCompleted, consumers=("group_matching",))
# Group matching places, moves and removes patients; notifications tells them.
COHORT_ASSIGNED = Topic(CohortAssigned, consumers=("notifications",))
COHORT_CHANGED = Topic(CohortChanged, consumers=("notifications",))
COHORT_LEFT = Topic(CohortLeft, consumers=("notifications",))

ALL_TOPICS: tuple[Topic, ...] = (
    DOSE_REDUCED,
    DOSE_RESTORED,
    SYMPTOM_REPORTED,
    THRESHOLD_EXCEEDED,
    ESCALATION_RESOLVED,
    CHECK_IN_DUE,
    PAGE_ACKNOWLEDGED,
    TAPER_HELD,
    TAPER_RESUMED,
    TAPER_COMPLETED,
    COHORT_ASSIGNED,
    COHORT_CHANGED,
    COHORT_LEFT,
)

_BY_EVENT_TYPE = {t.event.EVENT_TYPE: t for t in ALL_TOPICS}


def topic_for(event: Event | type[Event]) -> Topic:
    return _BY_EVENT_TYPE[event.EVENT_TYPE]


def event_class(event_type: str) -> type[Event]:
    """The event model for an ``event_type``; ``KeyError`` for a type no topic carries."""
    return _BY_EVENT_TYPE[event_type].event


def topics_consumed_by(service: str) -> tuple[Topic, ...]:
    return tuple(t for t in ALL_TOPICS if service in t.consumers)


def topics_produced_by(service: str) -> tuple[Topic, ...]:
    return tuple(t for t in ALL_TOPICS if t.producer == service)
