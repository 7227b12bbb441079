"""device keys: the Mini App's staff and member device public keys (issue 15)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 15:40:00.000000

A new table, no data moves.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_keys",
        sa.Column("id", sa.String(length=22), nullable=False),
        sa.Column("person_id", sa.String(length=22), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(length=22), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'revoked')", name=op.f("ck_device_keys_status")
        ),
        sa.ForeignKeyConstraint(
            ["approved_by"],
            ["people.id"],
            name=op.f("fk_device_keys_approved_by_people"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_device_keys_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_keys")),
        sa.UniqueConstraint("public_key", name=op.f("uq_device_keys_public_key")),
    )
    op.create_index(
        op.f("ix_device_keys_approved_by"), "device_keys", ["approved_by"], unique=False
    )
    op.create_index(
        op.f("ix_device_keys_person_id"), "device_keys", ["person_id", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_device_keys_person_id"), table_name="device_keys")
    op.drop_index(op.f("ix_device_keys_approved_by"), table_name="device_keys")
    op.drop_table("device_keys")
