"""symptom_reports: the body fingerprint stored with an Idempotency-Key, and the refused items

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 22:10:00

``body_fingerprint``: SHA-256 of the canonical request body, so a key reused with a different
body is refused instead of silently returning the first report (rows from before have none and
are treated as a different body: refused, never swallowed). ``refused_items``: the items a
leniently accepted report refused, returned again on a replay.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("symptom_reports") as batch_op:
        batch_op.add_column(sa.Column("body_fingerprint", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("refused_items", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("symptom_reports") as batch_op:
        batch_op.drop_column("refused_items")
        batch_op.drop_column("body_fingerprint")
