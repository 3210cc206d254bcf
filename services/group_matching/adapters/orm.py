"""Group matching's tables. It owns its database; the chassis adds outbox/inbox/timers/audit."""

from __future__ import annotations

import sqlalchemy as sa

from services.chassis.db import UtcDateTime, add_chassis_tables

metadata = sa.MetaData()
add_chassis_tables(metadata)

patient_stages = sa.Table(
    "patient_stages",
    metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column("plan_id", sa.Uuid, nullable=False),
    sa.Column("drug", sa.String(40), nullable=False),
    sa.Column("stage", sa.String(20), nullable=False),
    # The dose before the plan's first reduction we saw: the reference for "final phase".
    sa.Column("start_daily_dose_mg", sa.Numeric(12, 4), nullable=False),
    sa.Column("latest_daily_dose_mg", sa.Numeric(12, 4), nullable=False),
    sa.Column("last_step_number", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("last_event_id", sa.Uuid, nullable=False),
    # occurred_at of the newest event applied (any topic): an older one arriving late is stale.
    # Null on rows written before migration 0002 (then nothing counts as stale).
    sa.Column("last_event_at", UtcDateTime, nullable=True),
    # When the patient entered the current stage (hysteresis) and finished the taper (the
    # post-taper stages split at 6 months). Null on rows from before migration 0003.
    sa.Column("stage_since", UtcDateTime, nullable=True),
    sa.Column("completed_at", UtcDateTime, nullable=True),
)

# --- cohorts (issue 6) ------------------------------------------------------------------------

# A patient who opted in to peer support. The handle is what other members see: generated,
# never derived from the patient's identity.
participants = sa.Table(
    "participants",
    metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column("handle", sa.String(40), nullable=False, unique=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # waiting | placed | left
    sa.Column("cohort_id", sa.Uuid, nullable=True, index=True),
    sa.Column("waiting_since", UtcDateTime, nullable=True),
    # A cohort the patient was moved out of by this run (CohortChanged instead of Assigned).
    sa.Column("moved_from_cohort_id", sa.Uuid, nullable=True),
    sa.Column("override_red_by", sa.String(100), nullable=True),
    sa.Column("override_red_reason", sa.String(40), nullable=True),
    sa.Column("opted_in_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

cohorts = sa.Table(
    "cohorts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("stage_group", sa.String(30), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("drug", sa.String(40), nullable=True),  # null: mixed drugs
    sa.Column("on_diazepam", sa.Boolean, nullable=True),  # null: mixed
    sa.Column("session_weekday", sa.Integer, nullable=False),  # 0 = Monday (UTC)
    sa.Column("session_utc_minute", sa.Integer, nullable=False),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("moderator", sa.String(100), nullable=False, index=True),
    sa.Column("status", sa.String(10), nullable=False),  # active | closed
    sa.Column("created_at", UtcDateTime, nullable=False),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("cohort_id", sa.Uuid, nullable=False, index=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("joined_at", UtcDateTime, nullable=False),
    sa.Column("left_at", UtcDateTime, nullable=True),
    sa.Column("left_reason", sa.String(20), nullable=True),
    # The patient's waiting_since when placed: a member whose cohort closes goes back to the
    # waitlist with the waiting time they had (issue 17), not to its end.
    sa.Column("waited_since", UtcDateTime, nullable=True),
)

moderators = sa.Table(
    "moderators",
    metadata,
    sa.Column("subject", sa.String(100), primary_key=True),
    sa.Column("languages", sa.JSON, nullable=False),
    sa.Column("max_cohorts", sa.Integer, nullable=False),  # 0: paused (keeps their cohorts)
    # A deactivated moderator is given no new cohort; one that is removed is deleted.
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Open RED episodes (monitoring): such a patient is not placed in a new cohort until resolved.
red_episodes = sa.Table(
    "red_episodes",
    metadata,
    sa.Column("episode_id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("opened_at", UtcDateTime, nullable=False),
    sa.Column("resolved_at", UtcDateTime, nullable=True),
)

# Lifecycle events (TaperHeld/Resumed/Completed) for a patient whose first dose step has not
# arrived yet: valid, only early (the topics are not ordered with one another). Parked here and
# applied when the DoseReduced creates the patient's row; never dead-lettered (issue 17).
parked_stage_events = sa.Table(
    "parked_stage_events",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),  # a redelivery parks nothing twice
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("parked_at", UtcDateTime, nullable=False),
)
