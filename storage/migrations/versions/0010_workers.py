"""workers: outbox leases, the shared send budget and sweep leases (issue 13)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 10:00:00.000000

Several processes may now send from one outbox and run the sweeps: an outbox item carries
the lease of the process sending it, ``send_pace`` keeps Telegram's flood budget for all of
them, and ``sweep_leases`` lets one process at a time run each sweep. Two nullable columns
are added in place (no copy of the table) and two small tables created.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("claimed_by", sa.String(length=22), nullable=True))
    op.add_column("outbox", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f("ix_outbox_claimed_by"),
        "outbox",
        ["claimed_by"],
        unique=False,
        sqlite_where=sa.text("claimed_by IS NOT NULL"),
        postgresql_where=sa.text("claimed_by IS NOT NULL"),
    )
    op.create_table(
        "send_pace",
        sa.Column("key", sa.String(length=22), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_send_pace")),
    )
    op.create_table(
        "sweep_leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=22), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sweep_leases")),
    )


def downgrade() -> None:
    op.drop_table("sweep_leases")
    op.drop_table("send_pace")
    op.drop_index(op.f("ix_outbox_claimed_by"), table_name="outbox")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ and PostgreSQL): no copy of the
    # outbox, so its indexes, partial one included, stay as they are.
    op.execute("ALTER TABLE outbox DROP COLUMN claimed_until")
    op.execute("ALTER TABLE outbox DROP COLUMN claimed_by")
