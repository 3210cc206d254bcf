"""Monitoring's tables. It owns its database; the chassis adds outbox/inbox/timers/audit."""

from __future__ import annotations

import sqlalchemy as sa

from services.chassis.db import UtcDateTime, add_chassis_tables

metadata = sa.MetaData()
add_chassis_tables(metadata)

symptom_reports = sa.Table(
    "symptom_reports",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("idempotency_key", sa.String(100), nullable=True),
    sa.Column("instrument", sa.String(40), nullable=False),
    sa.Column("instrument_version", sa.String(20), nullable=False),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("answers", sa.JSON, nullable=False),
    sa.Column("red_flags", sa.JSON, nullable=False),
    sa.Column("total_score", sa.Integer, nullable=False),
    sa.Column("band", sa.String(40), nullable=False),
    sa.Column("severity", sa.String(10), nullable=True),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("submitted_by", sa.String(100), nullable=False),
    sa.Column("reported_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("patient_id", "idempotency_key", name="uq_reports_idempotency"),
)

dose_history = sa.Table(
    "dose_history",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("drug", sa.String(40), nullable=False),
    sa.Column("new_daily_dose_mg", sa.Numeric(12, 4), nullable=False),
    sa.Column("effective_on", sa.Date, nullable=False),
    sa.Column("half_life_class", sa.String(20), nullable=False),
)
