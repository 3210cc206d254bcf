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
    sa.Column("pulse_bpm", sa.Integer, nullable=True),
    sa.Column("submitted_by", sa.String(100), nullable=False),
    sa.Column("reported_at", UtcDateTime, nullable=False),
    # SHA-256 of the canonical body sent with the idempotency key (a reused key, other body: 422)
    sa.Column("body_fingerprint", sa.String(64), nullable=True),
    sa.Column("refused_items", sa.JSON, nullable=True),  # [{instrument, item, reason}]
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
    # reduction (DoseReduced) | restore (DoseRestored: back up to the dose before the last step).
    # Only a reduction opens a withdrawal window; a restore is charted as a dose change.
    sa.Column("change", sa.String(10), nullable=False, server_default="reduction"),
)

# --- issue 4: episodes, per-patient rule thresholds, check-ins --------------------------------
episodes = sa.Table(
    "episodes",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("family", sa.String(20), nullable=False),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # open | resolved
    sa.Column("opened_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("last_source_id", sa.Uuid, nullable=False),
    sa.Column("source_count", sa.Integer, nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("history", sa.JSON, nullable=False),
    sa.Column("acknowledged_at", UtcDateTime, nullable=True),
    sa.Column("resolved_at", UtcDateTime, nullable=True),
    sa.Column("resolved_by", sa.String(100), nullable=True),
    sa.Column("resolution", sa.String(20), nullable=True),
    # The clinician's note: kept here only (free text may hold PHI; events carry codes).
    sa.Column("resolution_note", sa.Text, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    # One open episode per patient and family, even under concurrent reports.
    sa.Index(
        "uq_episodes_open_family",
        "patient_id",
        "family",
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    ),
)

rule_overrides = sa.Table(
    "rule_overrides",
    metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column("thresholds", sa.JSON, nullable=False),  # {"band:ciwa-b:amber": 25, ...}
    sa.Column("set_by", sa.String(100), nullable=False),
    sa.Column("reason_code", sa.String(40), nullable=False),
    sa.Column("set_at", UtcDateTime, nullable=False),
)

checkins = sa.Table(
    "checkins",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("after_dose_event_id", sa.Uuid, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("window_closes_at", UtcDateTime, nullable=False),
    sa.Column("instruments", sa.JSON, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # domain.checkins.CheckInStatus
    sa.Column("completed_by_report_id", sa.Uuid, nullable=True),
    sa.UniqueConstraint("after_dose_event_id", "due_at", name="uq_checkins_step_due"),
)
