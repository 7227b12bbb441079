"""broadcasts: notices to many members, with RSVP; group labels (issue 11)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 13:00:00.000000

New tables ``labels``, ``broadcasts`` and ``rsvps``, and ``outbox.broadcast_id`` (a copy of
a broadcast counts there and goes when it is cancelled). No data moves.
"""

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", sa.String(length=22), nullable=False),
        sa.Column("person_id", sa.String(length=22), nullable=False),
        sa.Column("lookup", sa.LargeBinary(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_labels_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
    )
    op.create_index(op.f("ix_labels_person_id"), "labels", ["person_id", "lookup"], unique=True)
    op.create_index(op.f("ix_labels_lookup"), "labels", ["lookup"], unique=False)
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.String(length=22), nullable=False),
        sa.Column("created_by", sa.String(length=22), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("rsvp", sa.Boolean(), nullable=False),
        sa.Column("send_at", WHEN, nullable=False),
        sa.Column("event_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("progress_message_id", sa.Integer(), nullable=True),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.Column("cursor", sa.String(length=22), nullable=True),
        sa.Column("expanded", sa.Boolean(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("unreachable", sa.Integer(), nullable=False),
        sa.Column("yes", sa.Integer(), nullable=False),
        sa.Column("no", sa.Integer(), nullable=False),
        sa.Column("maybe", sa.Integer(), nullable=False),
        sa.Column("people", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'sending', 'done', 'cancelled')",
            name=op.f("ck_broadcasts_status"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["people.id"],
            name=op.f("fk_broadcasts_created_by_people"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    op.create_index(op.f("ix_broadcasts_status"), "broadcasts", ["status", "send_at"])
    op.create_index(op.f("ix_broadcasts_dirty"), "broadcasts", ["dirty"])
    op.create_index(op.f("ix_broadcasts_created_by"), "broadcasts", ["created_by"])
    op.create_table(
        "rsvps",
        sa.Column("broadcast_id", sa.String(length=22), nullable=False),
        sa.Column("member_id", sa.String(length=22), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_rsvps_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["people.id"], name=op.f("fk_rsvps_member_id_people"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("broadcast_id", "member_id", name=op.f("pk_rsvps")),
    )
    op.create_index(op.f("ix_rsvps_member_id"), "rsvps", ["member_id"])
    # SQLite cannot add a constraint to a table: batch mode copies the outbox (pending
    # messages included) into a new one with the column, then swaps them.
    # Reflecting the outbox reflects the tables it refers to as well: people's expression
    # index cannot be reflected (and is not touched: only the outbox is copied).
    with (
        warnings.catch_warnings(),
        op.batch_alter_table("outbox") as batch,
    ):
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
        batch.add_column(sa.Column("broadcast_id", sa.String(length=22), nullable=True))
        batch.create_foreign_key(
            op.f("fk_outbox_broadcast_id_broadcasts"),
            "broadcasts",
            ["broadcast_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.create_index(op.f("ix_outbox_broadcast_id"), "outbox", ["broadcast_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_broadcast_id"), table_name="outbox")
    with warnings.catch_warnings(), op.batch_alter_table("outbox") as batch:
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
        batch.drop_column("broadcast_id")
    op.drop_index(op.f("ix_rsvps_member_id"), table_name="rsvps")
    op.drop_table("rsvps")
    op.drop_index(op.f("ix_broadcasts_created_by"), table_name="broadcasts")
    op.drop_index(op.f("ix_broadcasts_dirty"), table_name="broadcasts")
    op.drop_index(op.f("ix_broadcasts_status"), table_name="broadcasts")
    op.drop_table("broadcasts")
    op.drop_index(op.f("ix_labels_lookup"), table_name="labels")
    op.drop_index(op.f("ix_labels_person_id"), table_name="labels")
    op.drop_table("labels")
