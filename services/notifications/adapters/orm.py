"""Notifications' tables."""

from __future__ import annotations

import sqlalchemy as sa

from services.chassis.db import UtcDateTime, add_chassis_tables

metadata = sa.MetaData()
add_chassis_tables(metadata)

pages = sa.Table(
    "pages",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("episode_id", sa.Uuid, nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("reason_codes", sa.JSON, nullable=False),
    sa.Column("dedup_key", sa.String(120), nullable=False, unique=True),
    sa.Column("threshold_event_id", sa.Uuid, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending | delivered
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    # Delivery intent recorded before sending: one row per episode and level, ever.
    sa.UniqueConstraint("episode_id", "level", name="uq_pages_episode_level"),
)
