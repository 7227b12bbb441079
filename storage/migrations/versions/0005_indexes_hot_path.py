"""indexes for the hot path: every foreign key, and every column a sweep, purge or lookup
filters or sorts on (issue 9)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:12:30.118204

No data moves. Indexes only, created in place (no table copy), so the upgrade takes as long
as building them on the rows already there.

- people: ``role, revoked_at`` (active staff), ``lower(pseudonym)`` (names are matched
  case-insensitively), the two foreign keys ``invited_by`` and ``caseworker_id``, and
  ``erased`` (the chat upkeep's few-second look for erased members whose chat is clear);
- checkins ``created_at, person_id``, notes ``created_at``, invites ``expires_at`` and
  cases ``status, created_at``: what the daily purge deletes (and what /cases lists);
- outbox ``status, priority, due_at, created_at, recipient_id``: the sender's choice before
  every send, walked in order with no sort. It replaces ``status, due_at``, which SQLite
  preferred for that choice (and then sorted every due item before each send).
  ``collapse_key`` (partial: only re-alerts carry one); ``recipient_id`` alone replaces
  ``recipient_id, collapse_key``, whose second column no query used.

``lower(pseudonym)`` is an expression index: SQLite cannot reflect it, so a later batch
migration of ``people`` (which copies the table) must create it again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_COLLAPSE_KEY = "collapse_key IS NOT NULL"


def upgrade() -> None:
    op.create_index(op.f("ix_people_role"), "people", ["role", "revoked_at"], unique=False)
    op.create_index(
        op.f("ix_people_pseudonym_lower"), "people", [sa.text("lower(pseudonym)")], unique=False
    )
    op.create_index(op.f("ix_people_invited_by"), "people", ["invited_by"], unique=False)
    op.create_index(op.f("ix_people_caseworker_id"), "people", ["caseworker_id"], unique=False)
    op.create_index(op.f("ix_people_erased"), "people", ["erased"], unique=False)

    op.create_index(op.f("ix_invites_expires_at"), "invites", ["expires_at"], unique=False)
    op.create_index(
        op.f("ix_checkins_created_at"), "checkins", ["created_at", "person_id"], unique=False
    )
    op.create_index(
        op.f("ix_cases_status_created_at"), "cases", ["status", "created_at"], unique=False
    )
    op.create_index(op.f("ix_notes_created_at"), "notes", ["created_at"], unique=False)

    op.create_index(
        op.f("ix_outbox_next_item"),
        "outbox",
        ["status", "priority", "due_at", "created_at", "recipient_id"],
        unique=False,
    )
    op.drop_index(op.f("ix_outbox_status"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_recipient_id"), table_name="outbox")
    op.create_index(op.f("ix_outbox_recipient_id"), "outbox", ["recipient_id"], unique=False)
    op.create_index(
        op.f("ix_outbox_collapse_key"),
        "outbox",
        ["collapse_key"],
        unique=False,
        sqlite_where=sa.text(HAS_COLLAPSE_KEY),
        postgresql_where=sa.text(HAS_COLLAPSE_KEY),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_collapse_key"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_recipient_id"), table_name="outbox")
    op.create_index(
        op.f("ix_outbox_recipient_id"), "outbox", ["recipient_id", "collapse_key"], unique=False
    )
    op.create_index(op.f("ix_outbox_status"), "outbox", ["status", "due_at"], unique=False)
    op.drop_index(op.f("ix_outbox_next_item"), table_name="outbox")

    op.drop_index(op.f("ix_notes_created_at"), table_name="notes")
    op.drop_index(op.f("ix_cases_status_created_at"), table_name="cases")
    op.drop_index(op.f("ix_checkins_created_at"), table_name="checkins")
    op.drop_index(op.f("ix_invites_expires_at"), table_name="invites")

    op.drop_index(op.f("ix_people_erased"), table_name="people")
    op.drop_index(op.f("ix_people_caseworker_id"), table_name="people")
    op.drop_index(op.f("ix_people_invited_by"), table_name="people")
    op.drop_index(op.f("ix_people_pseudonym_lower"), table_name="people")
    op.drop_index(op.f("ix_people_role"), table_name="people")
