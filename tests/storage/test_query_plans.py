"""No hot query reads a whole table that grows with members or records (issue 9).

The statements are the ones the code really runs: each test calls real service functions on
a migrated SQLite database holding a few rows of everything, captures every statement they
execute, and asks SQLite how it would run each one (``EXPLAIN QUERY PLAN``). A ``SCAN``
of a growing table fails -- even one along an index, which still reads every entry -- and so
does a sort of the outbox selection, which runs before every single send. SQLite plans
without statistics here (no ``ANALYZE``), as it does in production, so what the test sees is
what the bot gets.

Foreign-key actions (``ON DELETE CASCADE``/``SET NULL``) never show in a query plan, so a
separate test checks that every foreign key column leads an index.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import Bot

from bot.broadcasts import (
    Audience,
    Notice,
    answer_rsvp,
    cancel_broadcast,
    create_broadcast,
    show_progress,
    sweep_broadcasts,
    tag,
)
from bot.cases import HelpRequest, cases_for, claim_case, escalate_due, open_case, resolve_case
from bot.chat import About, clear_all_now, copy_about, delete_due, remember, tidy_people
from bot.checkins import CheckInAnswers, record_checkin
from bot.core import Core
from bot.erasure import erase_member
from bot.people import (
    active_staff,
    actor_of,
    create_invite,
    find_actor,
    find_by_name,
    invites_of,
    member_and_caseworker,
    redeem_invite,
)
from bot.relay import relay_from_member, reply_target
from bot.retention import purge_old_records
from bot.schedules import ensure_schedules, not_now, pause_prompts, sweep_prompts
from bot.staff import revoke
from bot.welfare import checked_in, due_for, sweep_watch, unreachable
from storage import outbox
from storage.models import Base, OutboxItem, Person, Role, utcnow
from tests.conftest import bare_people

# PostgreSQL plans by statistics and table size: on a test's few rows it rightly reads whole
# tables, so a plan there says nothing about 10,000 members (bench/scale_bench.py measures
# that instead).
pytestmark = pytest.mark.sqlite_only("EXPLAIN QUERY PLAN of SQLite's planner")

# Tables whose rows grow with members or with what they do; a full read of one of these on
# a hot path costs more every month. (Tallies stay a few dozen rows.)
GROWING = {
    "people",
    "checkins",
    "cases",
    "notes",
    "outbox",
    "chat_messages",
    "invites",
    "schedules",
    "labels",
    "rsvps",
}
SORT = "USE TEMP B-TREE FOR ORDER BY"
VERBS = ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: Sequence[Any]

    def tables(self) -> dict[str, str]:
        """Alias (or name) -> table, for the growing tables this statement reads."""
        found = {name: name for name in GROWING if re.search(rf"\b{name}\b", self.sql)}
        for table, alias in re.findall(r"\b(\w+) AS (\w+)\b", self.sql):
            if table in GROWING:
                found[alias] = table
        return found


@dataclass
class Seeded:
    admin: Person
    caseworker: Person
    other_caseworker: Person
    members: list[Person]
    open_case: str
    urgent_case: str


@contextmanager
def captured(engine: AsyncEngine) -> Iterator[list[Statement]]:
    """Every data statement the engine runs inside the block, with its parameters."""
    statements: list[Statement] = []

    def record(
        _conn: Any, _cursor: Any, sql: str, parameters: Any, _context: Any, executemany: bool
    ) -> None:
        if not executemany and sql.lstrip().upper().startswith(VERBS):
            statements.append(Statement(sql, tuple(parameters or ())))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def plan_of(engine: AsyncEngine, statement: Statement) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {statement.sql}", statement.parameters
        )
        return [str(row[3]) for row in rows]


async def problems(
    engine: AsyncEngine, statements: list[Statement], *, no_sort_on: str | None = None
) -> list[str]:
    """A line for each full scan of a growing table (and each sort of ``no_sort_on``)."""
    assert statements, "nothing was captured: the test would pass without looking"
    found = []
    for statement in statements:
        tables = statement.tables()
        for detail in await plan_of(engine, statement):
            scan = re.match(r"SCAN (\w+)", detail)
            if scan and scan.group(1) in tables:
                found.append(f"{detail}\n    in: {statement.sql}")
            if (
                detail.startswith(SORT)
                and no_sort_on
                and re.search(rf"\bFROM {no_sort_on}\b", statement.sql)
            ):
                found.append(f"{detail}\n    in: {statement.sql}")
    return found


@pytest.fixture
async def seeded(core: Core) -> Seeded:
    """A few rows in every table: staff, members with and without a caseworker, old and new
    check-ins, open, urgent and resolved requests, relayed notes, queued and failed sends,
    chat messages and invites."""
    keys, settings = core.secrets, core.settings
    admin, caseworker, other = bare_people(1, Role.ADMIN) + bare_people(2, Role.CASEWORKER, start=1)
    members = bare_people(6, start=10)
    long_ago = utcnow() - timedelta(days=settings.retention_days + 30)
    async with core.sessions() as session, session.begin():
        session.add_all([admin, caseworker, other])
        await session.flush()
        for n, member in enumerate(members):
            member.caseworker_id = caseworker.id if n % 2 else None
            member.invited_by = caseworker.id
        session.add_all(members)
        await session.flush()
        for member in members:
            for at in (long_ago, None):
                await record_checkin(
                    session, keys.team_sealer, member.id, CheckInAnswers(3, False), at=at
                )
            await relay_from_member(session, keys, member.id, "a line")
            await remember(session, settings, member.id, [1, 2])
        await create_invite(session, keys, Role.MEMBER, created_by=caseworker.id)
    async with core.sessions() as session, session.begin():
        week = await open_case(session, core, members[0].id, HelpRequest("money", "week"))
        urgent = await open_case(session, core, members[1].id, HelpRequest("danger", "now"))
        done = await open_case(session, core, members[2].id, HelpRequest("talk", "week"))
    assert week and urgent and done
    async with core.sessions() as session, session.begin():
        staff = await session.get(Person, caseworker.id)
        assert staff is not None
        await remember(session, settings, staff.id, [7], about=About(members[0].id, week, "alert"))
        await resolve_case(session, keys, actor_of(staff, keys), done)
        blocked = await session.scalar(select(OutboxItem.id).limit(1))
        assert blocked is not None
        await outbox.mark_failed(session, blocked, "Forbidden")
    return Seeded(admin, caseworker, other, members, week, urgent)


async def test_lookups_of_people_read_no_whole_table(core: Core, seeded: Seeded) -> None:
    keys = core.secrets
    # When staff are listed, a name is looked up, a sender is recognised, a member is routed
    with captured(core.engine) as statements:
        async with core.sessions() as session:
            await active_staff(session)
            await find_by_name(session, keys, seeded.members[3].pseudonym.upper())
            await find_by_name(session, keys, "Someone Else 12", include_revoked=True)
            await find_actor(session, keys, 4242)
            await member_and_caseworker(session, seeded.members[1].id)
            await invites_of(session, seeded.caseworker.id)
    # Then no query reads all of people (or anything else that grows)
    assert await problems(core.engine, statements) == []


async def test_requests_are_made_listed_and_escalated_through_indexes(
    core: Core, seeded: Seeded
) -> None:
    keys = core.secrets
    # When a member asks for help right now and writes, staff list, claim and resolve
    # requests, and the sweep escalates what nobody claimed
    with captured(core.engine) as statements:
        async with core.sessions() as session, session.begin():
            await open_case(session, core, seeded.members[3].id, HelpRequest("danger", "now"))
            await relay_from_member(session, keys, seeded.members[3].id, "still here")
            for person in (seeded.admin, seeded.caseworker):
                await cases_for(session, keys, actor_of(person, keys))
            staff = actor_of(seeded.other_caseworker, keys)
            await claim_case(session, keys, staff, seeded.open_case)
            await resolve_case(session, keys, staff, seeded.open_case)
            await escalate_due(session, core, now=utcnow() + timedelta(hours=1))
    # Then each of them finds its rows through an index
    assert await problems(core.engine, statements) == []


async def test_the_outbox_selection_is_an_index_walk_without_a_sort(
    core: Core, seeded: Seeded
) -> None:
    # Given recipients whose chats must wait (a send in flight, their second not over)
    busy = [seeded.caseworker.id, seeded.admin.id]
    now = utcnow()
    # When the sender picks its next item (storage.outbox.next_item: before every send),
    # asks when the next one falls due, and queues are dropped and purged
    with captured(core.engine) as statements:
        async with core.sessions() as session, session.begin():
            await outbox.next_item(session, now, exclude=busy)
            await outbox.next_item(session, now)
            # (several processes: the claim that leases the choice, and the idle look)
            await outbox.claim_next(
                session, "sender", now, lease=timedelta(seconds=15), per_chat=1.05, exclude=busy
            )
            await outbox.next_unclaimed(session, now, exclude=busy)
            await outbox.next_due(session, now)
            await outbox.pending_count(session)
            await outbox.drop_collapsed(session, f"esc:{seeded.urgent_case}")
            await outbox.drop_for_recipient(session, seeded.members[5].id)
            await outbox.purge_failed(session, now)
    # Then each is an index search, and the selection needs no sort
    assert await problems(core.engine, statements, no_sort_on="outbox") == []


async def test_chat_upkeep_revoking_and_erasing_find_their_rows_through_indexes(
    core: Core, seeded: Seeded
) -> None:
    keys = core.secrets
    with captured(core.engine) as statements:
        # (nothing is due yet, so no Bot API call is made)
        assert await delete_due(core, cast(Bot, None)) == 0
        # The few-second sweep: erased members whose chat is clear (menus are looked at
        # only when something changed, and hourly)
        await tidy_people(core, cast(Bot, None), menus=False)
        async with core.sessions() as session, session.begin():
            admin = actor_of(seeded.admin, keys)
            staff = await session.get(Person, seeded.caseworker.id)
            assert staff is not None
            await revoke(session, admin, staff)
            await erase_member(session, keys, seeded.members[0].id, actor_id=admin.person_id)
            await clear_all_now(session, seeded.members[1].id)
            await copy_about(session, seeded.caseworker.id, 7)
            await reply_target(session, seeded.caseworker.id, 7)
    assert await problems(core.engine, statements) == []


async def test_enrolment_finds_its_invite_and_name_through_indexes(
    core: Core, seeded: Seeded
) -> None:
    keys = core.secrets
    async with core.sessions() as session, session.begin():
        made = await create_invite(session, keys, Role.MEMBER, created_by=seeded.caseworker.id)
    with captured(core.engine) as statements:
        async with core.sessions() as session, session.begin():
            await redeem_invite(
                session, keys, made.token, telegram_user_id=5151, chat_id=5151, language="en"
            )
    assert await problems(core.engine, statements) == []


async def test_the_retention_purge_reads_only_what_it_counts_and_deletes(
    core: Core, seeded: Seeded
) -> None:
    with captured(core.engine) as statements:
        await purge_old_records(core.sessions, core.settings.retention_days)
    assert await problems(core.engine, statements) == []


async def test_prompt_and_welfare_sweeps_find_due_members_through_indexes(
    core: Core, seeded: Seeded
) -> None:
    keys = core.secrets
    await ensure_schedules(core)
    member = seeded.members[1]
    async with core.sessions() as session, session.begin():
        await pause_prompts(session, keys, seeded.members[2].id, timedelta(days=7))
    # When prompts fall due, the watch climbs, a member answers, and staff look at who is due
    later = utcnow() + timedelta(days=40)
    with captured(core.engine) as statements:
        await sweep_prompts(core, now=later)
        await sweep_watch(core, now=later + timedelta(days=3))
        await sweep_watch(core, now=later + timedelta(days=6))
        async with core.sessions() as session, session.begin():
            await unreachable(session, core, seeded.members[4].id)
            await not_now(session, keys, seeded.members[3].id)
            await checked_in(session, keys, member.id)
            await due_for(session, actor_of(seeded.caseworker, keys))
    # Then each finds its rows through an index
    assert await problems(core.engine, statements) == []


async def test_broadcasts_find_their_audience_and_answers_through_indexes(
    core: Core, seeded: Seeded
) -> None:
    keys = core.secrets
    admin = actor_of(seeded.admin, keys)
    async with core.sessions() as session, session.begin():
        for member in seeded.members[:3]:
            await tag(session, keys, admin.person_id, member.id, "north")
        made = await create_broadcast(
            session,
            keys,
            admin,
            Notice(
                {"*": "Retreat"}, Audience(caseworker_id=seeded.caseworker.id, labels=("north",))
            ),
            rsvp=True,
            event_at=utcnow() + timedelta(days=3),
            send_at=utcnow(),
            progress_message_id=7,
        )
        assert made is not None
    # When it is queued, answered, counted, shown and cancelled
    with captured(core.engine) as statements:
        await sweep_broadcasts(core)
        async with core.sessions() as session, session.begin():
            await answer_rsvp(session, keys, seeded.members[1].id, made.id, "yes")
            await outbox.count_broadcast(session, made.id, delivered=True)
            await cancel_broadcast(session, admin, made.id)
        await show_progress(core, now=utcnow() + timedelta(days=4))
    # Then each finds its rows through an index
    assert await problems(core.engine, statements) == []


async def test_every_foreign_key_leads_an_index(core: Core) -> None:
    """Deleting a person or a request checks (and cascades into) every table that points at
    it; without an index led by the pointing column SQLite reads that whole table once per
    deleted row -- and no query plan shows it."""
    missing = []
    async with core.engine.connect() as connection:

        async def pragma(sql: str) -> list[Any]:
            return list(await connection.exec_driver_sql(sql))

        for table in Base.metadata.tables:
            leading = set()
            for index in await pragma(f"PRAGMA index_list({table})"):
                columns = await pragma(f"PRAGMA index_info({index[1]})")
                leading.add(columns[0][2])  # (seqno, cid, name): None for an expression
            for key in await pragma(f"PRAGMA foreign_key_list({table})"):
                if key[3] not in leading:  # (id, seq, table, from, to, ...)
                    missing.append(f"{table}.{key[3]}")
    assert missing == []
