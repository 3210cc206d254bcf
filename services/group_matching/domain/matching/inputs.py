"""What matching takes and gives: candidates and cohorts in, placements and new cohorts out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

_NAMESPACE = uuid.UUID("5b0f2d8e-7d54-4c1e-9a53-3f7a8c1e6b21")


@dataclass(frozen=True)
class Candidate:
    """A waiting patient: an opaque id and what matching needs, nothing else (no PHI)."""

    patient_id: uuid.UUID
    stage: str  # one of MATCHING_STAGES
    drug: str  # original benzodiazepine, e.g. "alprazolam"
    on_diazepam: bool  # switched (crossed over) to diazepam
    utc_offset_minutes: int  # current offset of the patient's IANA timezone
    language: str  # BCP 47 primary tag, e.g. "en"
    waiting_since: datetime  # timezone-aware


class CohortLike(Protocol):
    """What scoring needs of a cohort, existing or formed by this run."""

    @property
    def stage_group(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def session_utc_minute(self) -> int: ...
    @property
    def drug(self) -> str | None: ...
    @property
    def on_diazepam(self) -> bool | None: ...
    @property
    def existing(self) -> bool: ...


@dataclass(frozen=True)
class OpenCohort:
    """An existing cohort with ``capacity - size`` empty seats."""

    cohort_id: uuid.UUID
    stage_group: str
    language: str
    session_utc_minute: int  # weekly live session start, minute of the day in UTC
    drug: str | None  # None: a mixed-drug group
    size: int
    capacity: int
    on_diazepam: bool | None = None  # None: mixed

    @property
    def existing(self) -> bool:
        return True

    @property
    def room(self) -> int:
        return max(0, self.capacity - self.size)


@dataclass(frozen=True)
class NewCohort:
    """A cohort formed by this run. ``key`` is derived from the members, so a retried run that
    forms the same group proposes the same key (idempotent creation downstream)."""

    key: str
    stage_group: str
    language: str
    session_utc_minute: int
    drug: str | None
    on_diazepam: bool | None
    members: tuple[uuid.UUID, ...]

    @property
    def existing(self) -> bool:
        return False


@dataclass(frozen=True)
class Placement:
    """Exactly one of ``cohort_id`` (an existing cohort) and ``new_cohort_key`` is set."""

    patient_id: uuid.UUID
    cohort_id: uuid.UUID | None = None
    new_cohort_key: str | None = None

    def __post_init__(self) -> None:
        if (self.cohort_id is None) == (self.new_cohort_key is None):
            raise ValueError("a placement names either an existing or a new cohort")


@dataclass(frozen=True)
class MatchResult:
    placements: tuple[Placement, ...]
    new_cohorts: tuple[NewCohort, ...]
    waiting: tuple[uuid.UUID, ...]
    score: float


def new_cohort_key(members: Iterable[uuid.UUID]) -> str:
    return str(uuid.uuid5(_NAMESPACE, ",".join(sorted(str(m) for m in members))))
