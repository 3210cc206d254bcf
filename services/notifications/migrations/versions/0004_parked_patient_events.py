"""parked_patient_events: valid events waiting for the patient's notification profile

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.chassis.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parked_patient_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column(
            "occurred_at", services.chassis.db.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("parked_at", services.chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("released_at", services.chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "kind", name="uq_parked_patient_events_event_kind"),
    )
    with op.batch_alter_table("parked_patient_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_parked_patient_events_patient_id"), ["patient_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("parked_patient_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parked_patient_events_patient_id"))
    op.drop_table("parked_patient_events")
