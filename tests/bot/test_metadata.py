"""Less metadata: rows that only say something happened go with what they point to."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from bot.app import build_core
from bot.retention import purge_old_records
from storage.db import migrate
from storage.models import Invite, OutboxItem, Role, utcnow
from tests.conftest import bare_people, make_settings


async def test_failed_sends_and_expired_invites_leave_after_a_week(data_dir: Path) -> None:
    core = build_core(make_settings(data_dir))
    await migrate(core.engine)
    now = utcnow()
    async with core.sessions() as session, session.begin():
        (staff,) = bare_people(1, Role.CASEWORKER)
        session.add(staff)
        await session.flush()
        for name, age, status in (
            ("failed-old", 8, "failed"),
            ("failed-new", 2, "failed"),
            ("pending-old", 8, "pending"),
        ):
            session.add(
                OutboxItem(
                    id=name,
                    recipient_id=staff.id,
                    status=status,
                    created_at=now - timedelta(days=age),
                    due_at=now,
                )
            )
        for name, expires in (("expired-old", -8), ("expired-new", -2), ("open", 1)):
            session.add(
                Invite(
                    id=name,
                    token_lookup=name.encode().ljust(32, b"."),
                    role="member",
                    created_by=staff.id,
                    expires_at=now + timedelta(days=expires),
                )
            )
    # When the daily retention job runs
    async with core.sessions() as session, session.begin():
        await purge_old_records(session, core.settings.retention_days)
    # Then week-old failures and invites expired a week ago are gone; the rest stays
    async with core.sessions() as session:
        outbox = set(await session.scalars(select(OutboxItem.id)))
        invites = set(await session.scalars(select(Invite.id)))
    await core.engine.dispose()
    assert outbox == {"failed-new", "pending-old"}
    assert invites == {"expired-new", "open"}
