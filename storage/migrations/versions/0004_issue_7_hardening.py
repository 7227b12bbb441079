"""hardening: chat messages replace delivered, word filler, staff name lookups, invites
deleted on use, outbox collapse keys and priorities, coarser timestamps

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 06:18:42.562422

Data moves:
- every ``delivered`` row becomes a ``chat_messages`` row in the staff member's chat, due for
  deletion 24 hours after it was delivered (staff chats now clear themselves);
- safety and clear words were keyed BLAKE2b digests; they are Argon2id digests now and the
  old ones cannot be converted, so every row gets random filler: members set their words
  again (the README says so);
- used invites are deleted; outbox priority 1 (normal) becomes 2 (escalations took 1);
- timestamps are rounded to what the features need (day, or minute for open requests).
"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAFF_CLEAR = timedelta(hours=24)


def _table(name: str, *columns: str, dates: Sequence[str] = ()) -> sa.TableClause:
    cols: list[sa.ColumnClause[object]] = [sa.column(c) for c in columns]
    cols += [sa.column(c, sa.DateTime(timezone=True)) for c in dates]
    return sa.table(name, *cols)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _round(table: str, column: str, how: str, where: str | None = None) -> None:
    """Round ``table.column`` down to the day or the minute, row by row (portable)."""
    connection = op.get_bind()
    t = _table(table, "id", dates=[column])
    query = sa.select(t.c.id, t.c[column]).where(t.c[column].is_not(None))
    if where is not None:
        query = query.where(sa.text(where))
    for row_id, value in connection.execute(query).all():
        moment = _utc(value)
        if how == "day":
            moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        else:
            moment = moment.replace(second=0, microsecond=0)
        connection.execute(sa.update(t).where(t.c.id == row_id).values({column: moment}))


def upgrade() -> None:
    connection = op.get_bind()

    # chat_messages grows the link that delivered held.
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outgoing", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(sa.Column("about_member_id", sa.String(length=22), nullable=True))
        batch_op.add_column(sa.Column("case_id", sa.String(length=22), nullable=True))
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_chat_messages_about_member_id"), ["about_member_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_chat_messages_case_id"), ["case_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_chat_messages_about_member_id_people"),
            "people",
            ["about_member_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_chat_messages_case_id_cases"),
            "cases",
            ["case_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.alter_column("outgoing", server_default=None)

    delivered = _table(
        "delivered", "id", "staff_id", "message_id", "member_id", "case_id", "kind",
        dates=["created_at"],
    )  # fmt: skip
    chat = _table(
        "chat_messages", "id", "person_id", "message_id", "attempts", "outgoing",
        "about_member_id", "case_id", "kind", dates=["sent_at", "delete_at"],
    )  # fmt: skip
    for row in connection.execute(sa.select(delivered)).mappings().all():
        sent = _utc(row["created_at"])
        connection.execute(
            sa.insert(chat).values(
                id=row["id"],
                person_id=row["staff_id"],
                message_id=row["message_id"],
                sent_at=sent,
                delete_at=sent + STAFF_CLEAR,
                attempts=0,
                outgoing=True,
                about_member_id=row["member_id"],
                case_id=row["case_id"],
                kind=row["kind"],
            )
        )
    with op.batch_alter_table("delivered", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivered_case_id"))
        batch_op.drop_index(batch_op.f("ix_delivered_staff_id"))
    op.drop_table("delivered")

    _round("cases", "created_at", "day", "status = 'resolved'")
    _round("cases", "created_at", "minute", "status != 'resolved'")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_claimed_by"), ["claimed_by"], unique=False)
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("claimed_at")

    op.execute("DELETE FROM invites WHERE used_at IS NOT NULL")
    with op.batch_alter_table("invites", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_invites_created_by"), ["created_by"], unique=False)
        batch_op.drop_constraint(batch_op.f("fk_invites_created_by_people"), type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_invites_created_by_people"),
            "people",
            ["created_by"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.drop_column("used_at")
        batch_op.drop_column("created_at")

    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notes_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notes_staff_id"), ["staff_id"], unique=False)
    _round("notes", "created_at", "day")
    _round("checkins", "created_at", "day")

    op.execute("UPDATE outbox SET priority = 2 WHERE priority = 1")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("collapse_key", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_outbox_recipient_id"), ["recipient_id", "collapse_key"], unique=False
        )

    people = _table("people", "id", "code_word", "duress_word")
    for (person_id,) in connection.execute(sa.select(people.c.id)).all():
        connection.execute(
            sa.update(people)
            .where(people.c.id == person_id)
            .values(code_word=secrets.token_bytes(32), duress_word=secrets.token_bytes(32))
        )
    _round("people", "created_at", "day")
    _round("people", "revoked_at", "day")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("erased", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("menu", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("name_lookup", sa.LargeBinary(length=32), nullable=True))
        batch_op.alter_column("code_word", existing_type=sa.LargeBinary(length=32), nullable=False)
        batch_op.alter_column(
            "duress_word", existing_type=sa.LargeBinary(length=32), nullable=False
        )
        batch_op.create_unique_constraint(batch_op.f("uq_people_name_lookup"), ["name_lookup"])
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.alter_column("erased", server_default=None)
    # Staff name lookups are keyed with the pepper, which migrations do not hold: staff are
    # asked to choose their name again (the bot re-asks when a staff member has none).
    op.execute("UPDATE people SET display_name = NULL WHERE role != 'member'")


def downgrade() -> None:
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_people_name_lookup"), type_="unique")
        batch_op.alter_column("duress_word", existing_type=sa.LargeBinary(length=32), nullable=True)
        batch_op.alter_column("code_word", existing_type=sa.LargeBinary(length=32), nullable=True)
        batch_op.drop_column("name_lookup")
        batch_op.drop_column("menu")
        batch_op.drop_column("erased")
    # Filler is not a digest of anything: no word survives a downgrade.
    op.execute("UPDATE people SET code_word = NULL, duress_word = NULL")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_recipient_id"))
        batch_op.drop_column("collapse_key")
    op.execute("UPDATE outbox SET priority = 1 WHERE priority >= 1")

    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notes_staff_id"))
        batch_op.drop_index(batch_op.f("ix_notes_case_id"))

    with op.batch_alter_table("invites", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.current_timestamp(),
            )
        )
        batch_op.add_column(sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(batch_op.f("fk_invites_created_by_people"), type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_invites_created_by_people"),
            "people",
            ["created_by"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.drop_index(batch_op.f("ix_invites_created_by"))
        batch_op.drop_column("message_id")

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_index(batch_op.f("ix_cases_claimed_by"))

    op.create_table(
        "delivered",
        sa.Column("id", sa.String(length=22), nullable=False),
        sa.Column("staff_id", sa.String(length=22), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.String(length=22), nullable=False),
        sa.Column("case_id", sa.String(length=22), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_delivered_case_id_cases"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["people.id"],
            name=op.f("fk_delivered_member_id_people"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["people.id"],
            name=op.f("fk_delivered_staff_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivered")),
    )
    with op.batch_alter_table("delivered", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivered_staff_id"), ["staff_id", "message_id"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_delivered_case_id"), ["case_id"], unique=False)
    op.execute(
        "INSERT INTO delivered (id, staff_id, message_id, member_id, case_id, kind, created_at) "
        "SELECT id, person_id, message_id, about_member_id, case_id, coalesce(kind, 'relay'), "
        "sent_at FROM chat_messages WHERE about_member_id IS NOT NULL"
    )
    op.execute("DELETE FROM chat_messages WHERE about_member_id IS NOT NULL")

    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_chat_messages_case_id_cases"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_chat_messages_about_member_id_people"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_chat_messages_case_id"))
        batch_op.drop_index(batch_op.f("ix_chat_messages_about_member_id"))
        batch_op.drop_column("kind")
        batch_op.drop_column("case_id")
        batch_op.drop_column("about_member_id")
        batch_op.drop_column("outgoing")
