"""schedules: each member's wellbeing prompts and welfare watch (issue 10)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:40:00.000000

A new table, no data moves. Members enrolled before it get their schedule (the defaults
from settings) when the bot next starts: the plan is sealed under the server key, which a
migration does not hold (bot.schedules.ensure_schedules).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("person_id", sa.String(length=22), nullable=False),
        sa.Column("plan", sa.LargeBinary(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_prompt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("watch_step", sa.Integer(), nullable=False),
        sa.Column("watch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("watch_paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("silent_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("watch_case_id", sa.String(length=22), nullable=True),
        sa.CheckConstraint("watch_step BETWEEN 0 AND 3", name=op.f("ck_schedules_watch_step")),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_schedules_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["watch_case_id"],
            ["cases.id"],
            name=op.f("fk_schedules_watch_case_id_cases"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_schedules")),
    )
    op.create_index(op.f("ix_schedules_next_at"), "schedules", ["next_at"], unique=False)
    op.create_index(op.f("ix_schedules_watch_at"), "schedules", ["watch_at"], unique=False)
    op.create_index(
        op.f("ix_schedules_watch_case_id"), "schedules", ["watch_case_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_schedules_watch_case_id"), table_name="schedules")
    op.drop_index(op.f("ix_schedules_watch_at"), table_name="schedules")
    op.drop_index(op.f("ix_schedules_next_at"), table_name="schedules")
    op.drop_table("schedules")
