"""cohort lifecycle: waiting time kept per membership, moderators active or not, lifecycle events
parked until the patient's first dose step

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.chassis.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "waited_since", services.chassis.db.UtcDateTime(timezone=True), nullable=True
            )
        )
    with op.batch_alter_table("moderators", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    op.create_table(
        "parked_stage_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column(
            "occurred_at", services.chassis.db.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("parked_at", services.chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("parked_stage_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_parked_stage_events_patient_id"), ["patient_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("parked_stage_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parked_stage_events_patient_id"))
    op.drop_table("parked_stage_events")
    with op.batch_alter_table("moderators", schema=None) as batch_op:
        batch_op.drop_column("active")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_column("waited_since")
