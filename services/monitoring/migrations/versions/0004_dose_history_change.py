"""dose_history.change: reduction | restore (monitoring consumes DoseRestored)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every row so far came from DoseReduced.
    with op.batch_alter_table("dose_history", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("change", sa.String(length=10), nullable=False, server_default="reduction")
        )


def downgrade() -> None:
    with op.batch_alter_table("dose_history", schema=None) as batch_op:
        batch_op.drop_column("change")
