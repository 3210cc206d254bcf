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
)
