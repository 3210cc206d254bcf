"""care teams (routing per team), clinicians' notification rules, the escalation list's index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.chassis.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "care_teams",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("routes", sa.JSON(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", services.chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "care_team_patients",
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("team_key", sa.String(length=64), nullable=False),
        sa.Column("assigned_by", sa.String(length=100), nullable=False),
        sa.Column("assigned_at", services.chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["team_key"], ["care_teams.key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("patient_id"),
    )
    with op.batch_alter_table("care_team_patients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_care_team_patients_team_key"), ["team_key"], unique=False
        )
    op.create_table(
        "clinician_notification_rules",
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", services.chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index("ix_escalations_created_at_id", ["created_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index("ix_escalations_created_at_id")
    op.drop_table("clinician_notification_rules")
    with op.batch_alter_table("care_team_patients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_care_team_patients_team_key"))
    op.drop_table("care_team_patients")
    op.drop_table("care_teams")
