"""Cross-service contracts: the events, their envelope and the topics that carry them.

``contracts`` imports nothing else of this project; every service imports it.
"""

from contracts.envelope import Envelope, Event
from contracts.events.group_matching import CohortAssigned, CohortChanged, CohortLeft
from contracts.events.monitoring import (
    CheckInDue,
    EscalationResolved,
    Severity,
    SymptomReported,
    ThresholdExceeded,
    ThresholdReason,
)
from contracts.events.notifications import PageAcknowledged
from contracts.events.scheduler import (
    DoseReduced,
    DoseRestored,
    DrugDose,
    TaperCompleted,
    TaperHeld,
    TaperResumed,
    TaperStage,
)
from contracts.topics import (
    ALL_TOPICS,
    CHECK_IN_DUE,
    COHORT_ASSIGNED,
    COHORT_CHANGED,
    COHORT_LEFT,
    DOSE_REDUCED,
    DOSE_RESTORED,
    ESCALATION_RESOLVED,
    PAGE_ACKNOWLEDGED,
    SYMPTOM_REPORTED,
    TAPER_COMPLETED,
    TAPER_HELD,
    TAPER_RESUMED,
    THRESHOLD_EXCEEDED,
    Topic,
    event_class,
    topic_for,
    topics_consumed_by,
    topics_produced_by,
)

__all__ = [
    "ALL_TOPICS",
    "CHECK_IN_DUE",
    "COHORT_ASSIGNED",
    "COHORT_CHANGED",
    "COHORT_LEFT",
    "DOSE_REDUCED",
    "DOSE_RESTORED",
    "ESCALATION_RESOLVED",
    "PAGE_ACKNOWLEDGED",
    "SYMPTOM_REPORTED",
    "TAPER_COMPLETED",
    "TAPER_HELD",
    "TAPER_RESUMED",
    "THRESHOLD_EXCEEDED",
    "CheckInDue",
    "CohortAssigned",
    "CohortChanged",
    "CohortLeft",
    "DoseReduced",
    "DoseRestored",
    "DrugDose",
    "Envelope",
    "EscalationResolved",
    "Event",
    "PageAcknowledged",
    "Severity",
    "SymptomReported",
    "TaperCompleted",
    "TaperHeld",
    "TaperResumed",
    "TaperStage",
    "ThresholdExceeded",
    "ThresholdReason",
    "Topic",
    "event_class",
    "topic_for",
    "topics_consumed_by",
    "topics_produced_by",
]
