"""device keys and sealed replies: the Mini App's device public keys, and the deadlines of
staff answers sealed to a member's phone (issue 15)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 15:40:00.000000

New tables, no data moves.
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

    op.create_table(
        "sealed_replies",
        sa.Column("note_id", sa.String(length=22), nullable=False),
        sa.Column("staff_id", sa.String(length=22), nullable=True),
        sa.Column("delete_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_id"],
            ["notes.id"],
            name=op.f("fk_sealed_replies_note_id_notes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["people.id"],
            name=op.f("fk_sealed_replies_staff_id_people"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("note_id", name=op.f("pk_sealed_replies")),
    )
    op.create_index(
        op.f("ix_sealed_replies_delete_at"), "sealed_replies", ["delete_at"], unique=False
    )
    op.create_index(
        op.f("ix_sealed_replies_staff_id"), "sealed_replies", ["staff_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sealed_replies_staff_id"), table_name="sealed_replies")
    op.drop_index(op.f("ix_sealed_replies_delete_at"), table_name="sealed_replies")
    op.drop_table("sealed_replies")
    op.drop_index(op.f("ix_device_keys_person_id"), table_name="device_keys")
    op.drop_index(op.f("ix_device_keys_approved_by"), table_name="device_keys")
    op.drop_table("device_keys")
