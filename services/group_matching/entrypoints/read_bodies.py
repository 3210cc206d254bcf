"""Typed bodies of group matching's reads that return ``service_layer.cohorts``' rows as they are.

They document the answer for clients (issue 18) without re-serializing it, so every field and its
format stay as clients see them today; a field added to those rows must be added here too (the
gateway's schema fuzzing checks each answer against these). Handles and opaque ids only.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

_COHORT_ID = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"


class MyCohortOut(BaseModel):
    """The patient's cohort as they see it: handles only, sessions in their timezone. While
    waiting, only ``status``, ``waiting_since`` and ``handle``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "placed",
                    "handle": "quiet-heron",
                    "cohort_id": _COHORT_ID,
                    "stage_group": "active",
                    "language": "en",
                    "members": ["amber-fox", "quiet-heron", "steady-oak"],
                    "next_sessions": ["2026-12-08T18:00:00-06:00", "2026-12-15T18:00:00-06:00"],
                },
                {
                    "status": "waiting",
                    "waiting_since": "2026-12-01T10:00:00+00:00",
                    "handle": "quiet-heron",
                },
            ]
        }
    )

    status: str = Field(description="waiting | placed.")
    handle: str = Field(description="The name other members see (generated, not the patient's).")
    waiting_since: datetime | None = Field(None, description="Only while waiting.")
    cohort_id: uuid.UUID | None = Field(None, description="Only when placed.")
    stage_group: str | None = Field(None, description="The cohort's taper-stage group.")
    language: str | None = Field(None, description="The sessions' language (ISO 639-1).")
    members: list[str] | None = Field(None, description="Every member's handle, sorted.")
    next_sessions: list[datetime] | None = Field(
        None, description="The next weekly sessions, in the patient's timezone."
    )


class RosterMember(BaseModel):
    patient_id: uuid.UUID = Field(description="Opaque: clinical details only via a panel.")
    handle: str = Field(description="The name other members see.")
    member_since: datetime = Field(description="When the patient joined this cohort.")


class RosterCohortOut(BaseModel):
    """One of a moderator's active cohorts and its members (facts of membership only)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cohort_id": _COHORT_ID,
                    "stage_group": "active",
                    "language": "en",
                    "session_weekday": 1,
                    "session_utc_minute": 0,
                    "next_session": "2026-12-09T00:00:00+00:00",
                    "size": 1,
                    "capacity": 8,
                    "members": [
                        {
                            "patient_id": "5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
                            "handle": "quiet-heron",
                            "member_since": "2026-11-20T10:00:00+00:00",
                        }
                    ],
                }
            ]
        }
    )

    cohort_id: uuid.UUID = Field(description="The cohort's id.")
    stage_group: str = Field(description="The cohort's taper-stage group.")
    language: str = Field(description="The sessions' language (ISO 639-1).")
    session_weekday: int = Field(description="0 (Monday) to 6, in UTC.")
    session_utc_minute: int = Field(description="Minute of the day the session starts, UTC.")
    next_session: datetime = Field(description="The next session, in UTC.")
    size: int = Field(description="Members now.")
    capacity: int = Field(description="Members at most.")
    members: list[RosterMember] = Field(description="Sorted by handle.")
