"""audit: the hash-chained trail of staff actions (issue 12)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 10:00:00.000000

A new table, no data moves. Its rows name other rows by plain id, with no foreign key, so
that erasing or revoking someone never changes an entry of the chain.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=22), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=22), nullable=True),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit")),
    )


def downgrade() -> None:
    op.drop_table("audit")
