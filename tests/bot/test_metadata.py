"""Less metadata: rows that only say something happened go with what they point to, and
the times kept in the clear are no finer than a feature needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text

from bot.app import build_core
from bot.cases import HelpRequest, Outcome, open_case, resolve_case
from bot.checkins import CheckInAnswers, record_checkin
from bot.core import Core
from bot.people import actor_of, create_invite, redeem_invite
from bot.retention import purge_old_records
from storage.db import migrate
from storage.models import Case, CheckIn, Invite, OutboxItem, Person, Role, utcnow
from tests.conftest import bare_people, make_settings


async def test_failed_sends_and_expired_invites_leave_after_a_week(data_dir: Path) -> None:
    core = build_core(make_settings(data_dir))
    await migrate(core.engine)
    now = utcnow()
    async with core.sessions() as session, session.begin():
        (staff,) = bare_people(1, Role.CASEWORKER)
        session.add(staff)
        await session.flush()
        # (made days ago, failed days ago): a failed row's due_at is when it failed
        for name, made, failed, status in (
            ("failed-old", 8, 8, "failed"),
            ("failed-new", 2, 2, "failed"),
            ("failed-late", 10, 0, "failed"),  # waited ten days, failed just now
            ("pending-old", 8, 0, "pending"),
        ):
            session.add(
                OutboxItem(
                    id=name,
                    recipient_id=staff.id,
                    status=status,
                    created_at=now - timedelta(days=made),
                    due_at=now - timedelta(days=failed),
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
    await purge_old_records(core.sessions, core.settings.retention_days)
    # Then week-old failures and invites expired a week ago are gone; the rest stays
    async with core.sessions() as session:
        outbox = set(await session.scalars(select(OutboxItem.id)))
        invites = set(await session.scalars(select(Invite.id)))
    await core.engine.dispose()
    assert outbox == {"failed-new", "failed-late", "pending-old"}
    assert invites == {"expired-new", "open"}


async def stored(core: Core, query: str, **params: str) -> list[datetime]:
    """Timestamps as the database holds them, as naive UTC (SQLite: text; PostgreSQL: a
    timestamptz, read back as an aware datetime)."""
    async with core.engine.connect() as connection:
        values = (await connection.execute(text(query), params)).scalars().all()
    return [
        v.astimezone(UTC).replace(tzinfo=None)
        if isinstance(v, datetime)
        else datetime.fromisoformat(v)
        for v in values
    ]


async def test_a_week_is_counted_to_the_hour_for_failed_sends_and_expired_invites(
    core: Core,
) -> None:
    # Given failed sends and invites either side of the seven-day mark, and open invites
    now = utcnow()
    week = timedelta(days=7)
    async with core.sessions() as session, session.begin():
        (staff,) = bare_people(1, Role.CASEWORKER)
        session.add(staff)
        await session.flush()
        for name, age in (
            ("failed-past", week + timedelta(hours=1)),
            ("failed-within", week - timedelta(hours=1)),
        ):
            session.add(
                OutboxItem(
                    id=name,
                    recipient_id=staff.id,
                    status="failed",
                    created_at=now - age,
                    due_at=now - age,
                )
            )
        for name, expires in (
            ("expired-past", -(week + timedelta(hours=1))),
            ("expired-within", -(week - timedelta(hours=1))),
            ("expired-just-now", -timedelta(minutes=1)),
            ("open", timedelta(hours=1)),
        ):
            session.add(
                Invite(
                    id=name,
                    token_lookup=name.encode().ljust(32, b"."),
                    role="member",
                    created_by=None,
                    expires_at=now + expires,
                )
            )
    # When the daily retention job runs
    purged = await purge_old_records(core.sessions, core.settings.retention_days)
    # Then only what ended more than seven days ago is gone
    async with core.sessions() as session:
        outbox = set(await session.scalars(select(OutboxItem.id)))
        invites = set(await session.scalars(select(Invite.id)))
    assert outbox == {"failed-within"}
    assert invites == {"expired-within", "expired-just-now", "open"}
    assert purged == 2


async def test_a_used_invite_leaves_no_row(core: Core) -> None:
    # Given two open invites from a caseworker
    async with core.sessions() as session, session.begin():
        (staff,) = bare_people(1, Role.CASEWORKER)
        session.add(staff)
        await session.flush()
        used = await create_invite(session, core.secrets, Role.MEMBER, created_by=staff.id)
        other = await create_invite(session, core.secrets, Role.MEMBER, created_by=staff.id)
    # When a newcomer redeems one of them
    async with core.sessions() as session, session.begin():
        actor = await redeem_invite(
            session, core.secrets, used.token, telegram_user_id=710001, chat_id=710001,
            language="en",
        )  # fmt: skip
    assert actor is not None
    # Then the used invite's row is gone (nothing records that, when or by whom it was
    # used); the other stays; the link cannot be used a second time
    async with core.sessions() as session:
        assert set(await session.scalars(select(Invite.id))) == {other.invite_id}
    async with core.sessions() as session, session.begin():
        again = await redeem_invite(
            session, core.secrets, used.token, telegram_user_id=710002, chat_id=710002,
            language="en",
        )  # fmt: skip
    assert again is None
    # ... and the new member's enrolment is kept to the day
    query = "SELECT created_at FROM people WHERE id = :id"
    (enrolled,) = await stored(core, query, id=actor.person_id)
    assert enrolled == datetime.combine(enrolled.date(), datetime.min.time())


async def test_a_checkin_is_dated_to_the_day(core: Core) -> None:
    # Given a member
    (member,) = bare_people(1)
    async with core.sessions() as session, session.begin():
        session.add(member)
    # When they check in in the afternoon, and once more now
    afternoon = datetime(2026, 3, 4, 13, 45, 12, 345678, tzinfo=UTC)
    before = utcnow()
    async with core.sessions() as session, session.begin():
        first = await record_checkin(
            session, core.secrets.team_sealer, member.id, CheckInAnswers(3, False), at=afternoon
        )
        second = await record_checkin(
            session, core.secrets.team_sealer, member.id, CheckInAnswers(4, False)
        )
    after = utcnow()
    # Then the database holds midnight of each day, not the time of day
    async with core.sessions() as session:
        times = {c.id: c.created_at for c in await session.scalars(select(CheckIn))}
    assert times[first] == datetime(2026, 3, 4, tzinfo=UTC)
    assert times[second] in {
        datetime.combine(moment.date(), datetime.min.time(), UTC) for moment in (before, after)
    }
    for value in await stored(core, "SELECT created_at FROM checkins"):
        assert value.time() == datetime.min.time()


async def test_a_request_is_dated_to_the_minute_then_to_the_day_once_resolved(
    core: Core,
) -> None:
    # Given a member with a caseworker
    (staff,) = bare_people(1, Role.CASEWORKER)
    (member,) = bare_people(1)
    member.caseworker_id = staff.id
    async with core.sessions() as session, session.begin():
        session.add(staff)
        await session.flush()
        session.add(member)
    # When the member asks for help
    before = utcnow().replace(tzinfo=None)
    async with core.sessions() as session, session.begin():
        case_id = await open_case(session, core, member.id, HelpRequest("money", "week"))
    assert case_id is not None
    # Then the open request's age is kept to the minute: no seconds, no fractions
    (opened,) = await stored(core, "SELECT created_at FROM cases")
    assert (opened.second, opened.microsecond) == (0, 0)
    assert before - timedelta(minutes=1) < opened <= utcnow().replace(tzinfo=None)
    # When the caseworker resolves it
    async with core.sessions() as session, session.begin():
        staff_row = await session.get(Person, staff.id)
        assert staff_row is not None
        result = await resolve_case(
            session, core.secrets, actor_of(staff_row, core.secrets), case_id
        )
    assert result.outcome is Outcome.DONE
    # Then only its day is kept
    async with core.sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None and case.status == "resolved"
    (resolved,) = await stored(core, "SELECT created_at FROM cases")
    assert resolved == datetime.combine(opened.date(), datetime.min.time())
