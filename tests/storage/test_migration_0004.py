"""Migration 0004 on a 0003 database holding data: every data move its docstring promises
(delivered copies, word filler, used invites, outbox priorities, coarser timestamps), that
nothing else is lost, and that its downgrade runs on the same data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import alembic_config, current_revision, make_engine, make_sessionmaker, migrate
from storage.models import (
    Case,
    ChatMessage,
    CheckIn,
    Invite,
    Note,
    OutboxItem,
    Person,
    Tally,
)

# 0004 ran only on SQLite installations (PostgreSQL came later); its schema steps run on
# PostgreSQL in tests/storage/test_migrations_both.py.
pytestmark = pytest.mark.sqlite_only("data written by versions that ran only on SQLite")

# What the bot wrote at 0003: UTC without an offset, to the microsecond.
OLD_CODE = b"\xaa" * 32  # keyed BLAKE2b digests at 0003: 32 bytes
OLD_DURESS = b"\xbb" * 32
OLD_CODE_M3 = b"\xcc" * 32

PEOPLE: list[dict[str, Any]] = [
    # An admin without a chosen name, a caseworker with one (staff first: members point at
    # them), a member with both words, a member with none and a revoked member with one.
    {
        "id": "a1", "tg": b"\x05" * 32, "role": "admin", "pseudonym": "I J 14",
        "created": "2025-12-31 23:00:00.5", "revoked": None, "invited_by": None,
        "caseworker": None, "clear": None, "code": None, "duress": None, "name": None,
    },
    {
        "id": "s1", "tg": b"\x04" * 32, "role": "caseworker", "pseudonym": "G H 13",
        "created": "2026-01-01 09:00:00", "revoked": None, "invited_by": "a1",
        "caseworker": None, "clear": None, "code": None, "duress": None, "name": b"\xbe\xef",
    },
    {
        "id": "m1", "tg": b"\x01" * 32, "role": "member", "pseudonym": "A B 10",
        "created": "2026-03-04 05:06:07.891234", "revoked": None, "invited_by": "s1",
        "caseworker": "s1", "clear": 10, "code": OLD_CODE, "duress": OLD_DURESS, "name": None,
    },
    {
        "id": "m2", "tg": b"\x02" * 32, "role": "member", "pseudonym": "C D 11",
        "created": "2026-03-04 23:59:59.999999", "revoked": None, "invited_by": None,
        "caseworker": None, "clear": None, "code": None, "duress": None, "name": None,
    },
    {
        "id": "m3", "tg": b"\x03" * 32, "role": "member", "pseudonym": "E F 12",
        "created": "2026-02-01 12:00:00", "revoked": "2026-05-06 07:08:09.100000",
        "invited_by": "a1", "caseworker": "a1", "clear": 60, "code": OLD_CODE_M3,
        "duress": None, "name": None,
    },
]  # fmt: skip

INVITES: list[dict[str, Any]] = [
    {"id": "i-used", "tok": b"\x10" * 32, "by": "s1", "created": "2026-03-01 00:00:00",
     "expires": "2026-03-04 00:00:00", "used": "2026-03-02 10:11:12"},
    {"id": "i-used-shell", "tok": b"\x11" * 32, "by": None, "created": "2026-03-01 00:00:00",
     "expires": "2099-03-04 00:00:00", "used": "2026-03-03 10:11:12"},
    {"id": "i-open", "tok": b"\x12" * 32, "by": "s1", "created": "2026-03-01 00:00:00",
     "expires": "2099-01-01 00:00:00.250000", "used": None},
    {"id": "i-expired", "tok": b"\x13" * 32, "by": None, "created": "2026-01-01 00:00:00",
     "expires": "2026-01-04 00:00:00", "used": None},
]  # fmt: skip

CASES: list[dict[str, Any]] = [
    {"id": "c-open", "member": "m1", "status": "open", "by": None,
     "created": "2026-03-04 05:06:07.500000", "claimed": None, "resolved": None,
     "escalate": "2026-03-04 05:21:07.500000", "escalations": 1, "sealed": b"\x01\x02",
     "brief": b"\x03"},
    {"id": "c-claimed", "member": "m2", "status": "claimed", "by": "s1",
     "created": "2026-03-04 05:07:59.999999", "claimed": "2026-03-04 06:00:00",
     "resolved": None, "escalate": None, "escalations": 0, "sealed": b"\x04",
     "brief": b"\x05"},
    {"id": "c-done", "member": "m2", "status": "resolved", "by": "s1",
     "created": "2026-03-04 23:06:07", "claimed": "2026-03-04 23:30:00",
     "resolved": "2026-03-05 07:00:00", "escalate": None, "escalations": 0,
     "sealed": b"\x06", "brief": None},
]  # fmt: skip

DELIVERED: list[dict[str, Any]] = [
    {"id": "d1", "staff": "s1", "msg": 42, "member": "m1", "case": "c-open", "kind": "alert",
     "created": "2026-03-04 05:06:08.123456"},
    {"id": "d2", "staff": "a1", "msg": 42, "member": "m2", "case": None, "kind": "relay",
     "created": "2026-03-05 10:00:00"},
    {"id": "d3", "staff": "s1", "msg": 43, "member": "m2", "case": "c-done", "kind": "reply",
     "created": "2026-03-06 23:30:00"},
]  # fmt: skip

# A member's chat row, as 0003 kept them (staff chats were not tracked then).
CHAT: list[dict[str, Any]] = [
    {"id": "cm1", "person": "m1", "msg": 7, "sent": "2026-03-04 05:06:07.250000",
     "delete": "2026-03-04 05:16:07.250000", "attempts": 2},
]  # fmt: skip

OUTBOX: list[dict[str, Any]] = [
    {"id": "o-urgent", "to": "s1", "status": "pending", "priority": 0, "error": None,
     "payload": b"\x20", "about": "m1"},
    {"id": "o-normal", "to": "a1", "status": "pending", "priority": 1, "error": None,
     "payload": b"\x21", "about": "m2"},
    {"id": "o-failed", "to": "m3", "status": "failed", "priority": 1, "error": "Forbidden",
     "payload": None, "about": None},
]  # fmt: skip

CHECKINS: list[dict[str, Any]] = [
    {"id": "k1", "person": "m1", "created": "2026-03-04 05:06:07.891000", "sealed": b"\x30"},
    {"id": "k2", "person": "m2", "created": "2026-02-28 23:59:59.999999", "sealed": b"\x31"},
    {"id": "k3", "person": "m3", "created": "2026-02-02 00:00:00", "sealed": b"\x32"},
]

NOTES: list[dict[str, Any]] = [
    {"id": "n1", "member": "m1", "staff": "s1", "from": 0, "case": "c-open",
     "created": "2026-03-04 05:06:07", "sealed": b"\x40"},
    {"id": "n2", "member": "m2", "staff": None, "from": 1, "case": None,
     "created": "2026-03-05 18:30:00.000001", "sealed": b"\x41"},
]  # fmt: skip

INSERTS = [
    (
        "INSERT INTO people (id, tg_lookup, chat_ref, role, pseudonym, language,"
        " language_chosen, invited_by, created_at, revoked_at, display_name, caseworker_id,"
        " clear_after_minutes, code_word, duress_word) VALUES (:id, :tg, x'00', :role,"
        " :pseudonym, 'en', 1, :invited_by, :created, :revoked, :name, :caseworker, :clear,"
        " :code, :duress)",
        PEOPLE,
    ),
    (
        "INSERT INTO invites (id, token_lookup, role, created_by, created_at, expires_at,"
        " used_at) VALUES (:id, :tok, 'member', :by, :created, :expires, :used)",
        INVITES,
    ),
    (
        "INSERT INTO cases (id, member_id, status, claimed_by, created_at, claimed_at,"
        " resolved_at, escalate_at, escalations, sealed, brief) VALUES (:id, :member, :status,"
        " :by, :created, :claimed, :resolved, :escalate, :escalations, :sealed, :brief)",
        CASES,
    ),
    (
        "INSERT INTO delivered (id, staff_id, message_id, member_id, case_id, kind, created_at)"
        " VALUES (:id, :staff, :msg, :member, :case, :kind, :created)",
        DELIVERED,
    ),
    (
        "INSERT INTO chat_messages (id, person_id, message_id, sent_at, delete_at, attempts)"
        " VALUES (:id, :person, :msg, :sent, :delete, :attempts)",
        CHAT,
    ),
    (
        "INSERT INTO outbox (id, recipient_id, status, priority, created_at, due_at, attempts,"
        " last_error, payload, about_member_id) VALUES (:id, :to, :status, :priority,"
        " '2026-03-04 05:06:08.000001', '2026-03-04 05:06:09.000002', 3, :error, :payload,"
        " :about)",
        OUTBOX,
    ),
    (
        "INSERT INTO checkins (id, person_id, created_at, sealed)"
        " VALUES (:id, :person, :created, :sealed)",
        CHECKINS,
    ),
    (
        "INSERT INTO notes (id, member_id, staff_id, from_member, case_id, created_at, sealed)"
        " VALUES (:id, :member, :staff, :from, :case, :created, :sealed)",
        NOTES,
    ),
    (
        "INSERT INTO tallies (period, name, value) VALUES (:period, :name, :value)",
        [{"period": "2025", "name": "checkins_purged", "value": 6.0}],
    ),
]


def when(value: object) -> datetime:
    """A stored SQLite timestamp (text, naive UTC) as a datetime."""
    assert isinstance(value, str), value
    return datetime.fromisoformat(value)


async def rows(engine: AsyncEngine, query: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as connection:
        return [tuple(r) for r in (await connection.execute(text(query))).all()]


async def by_id(engine: AsyncEngine, query: str) -> dict[Any, tuple[Any, ...]]:
    """The first column of each row as a key, the rest as its value."""
    return {r[0]: r[1:] for r in await rows(engine, query)}


async def migrate_down(engine: AsyncEngine, revision: str) -> None:
    """Alembic's downgrade, with foreign keys off as storage.db.migrate does for SQLite (a
    table copy would otherwise cascade-delete the children of the table it drops)."""
    url = engine.url.render_as_string(hide_password=False)

    def run(sync_connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = sync_connection
        command.downgrade(config, revision)

    async with engine.connect() as connection:
        await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await connection.commit()
        try:
            await connection.run_sync(run)
            await connection.commit()
        finally:
            await connection.rollback()
            await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            await connection.commit()


@pytest.fixture
async def old_db(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A database at 0003 holding one of everything 0004 moves, written with raw SQL."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        assert await migrate(engine, "0003") is True
        async with engine.begin() as connection:
            for statement, params in INSERTS:
                await connection.execute(text(statement), params)
        yield engine
    finally:
        await engine.dispose()


async def test_delivered_copies_become_staff_chat_messages_cleared_a_day_later(
    old_db: AsyncEngine,
) -> None:
    # Given delivered copies in two staff chats and a tracked message in a member's chat
    # When the database is upgraded to 0004
    assert await migrate(old_db, "0004") is True
    assert await current_revision(old_db) == "0004"
    # Then each delivered copy is a message in the staff member's chat, with the link it
    # held (member, request, kind), sent when it was delivered and deleted 24 hours later
    chat = await by_id(
        old_db,
        "SELECT person_id || ':' || message_id, about_member_id, case_id, kind, outgoing,"
        " attempts, sent_at, delete_at FROM chat_messages",
    )
    assert set(chat) == {"s1:42", "a1:42", "s1:43", "m1:7"}
    for copy in DELIVERED:
        about, case, kind, outgoing, attempts, sent, delete = chat[f"{copy['staff']}:{copy['msg']}"]
        assert (about, case, kind, outgoing, attempts) == (
            copy["member"],
            copy["case"],
            copy["kind"],
            1,
            0,
        )
        assert when(sent) == datetime.fromisoformat(copy["created"])
        assert when(delete) - when(sent) == timedelta(hours=24)
    # ... the member's own chat row is kept as it was: outgoing, about nobody
    about, case, kind, outgoing, attempts, sent, delete = chat["m1:7"]
    assert (about, case, kind, outgoing, attempts) == (None, None, None, 1, 2)
    assert when(sent) == datetime.fromisoformat(CHAT[0]["sent"])
    assert when(delete) == datetime.fromisoformat(CHAT[0]["delete"])
    # ... and the delivered table is gone, with its indexes
    names = {r[0] for r in await rows(old_db, "SELECT name FROM sqlite_master")}
    assert not {n for n in names if "delivered" in n}


async def test_every_word_becomes_random_filler_of_one_shape(old_db: AsyncEngine) -> None:
    # Given members with both words, with none and with one, and staff with none
    # When the database is upgraded to 0004
    await migrate(old_db, "0004")
    # Then every person's two word columns hold a 32-byte blob: nothing tells who had a word
    words = await by_id(
        old_db,
        "SELECT id, typeof(code_word), length(code_word), typeof(duress_word),"
        " length(duress_word) FROM people",
    )
    assert set(words) == {p["id"] for p in PEOPLE}
    assert set(words.values()) == {("blob", 32, "blob", 32)}
    # ... all different from each other (no shared "unset" value) and from the old digests
    values = await by_id(old_db, "SELECT id, code_word, duress_word FROM people")
    every = [v for pair in values.values() for v in pair]
    assert len(set(every)) == len(every) == 2 * len(PEOPLE)
    assert not set(every) & {OLD_CODE, OLD_DURESS, OLD_CODE_M3}
    # ... and the columns may no longer be NULL
    with pytest.raises(IntegrityError):
        async with old_db.begin() as connection:
            await connection.execute(text("UPDATE people SET code_word = NULL WHERE id = 'm2'"))


async def test_used_invites_are_deleted_and_unused_ones_kept(old_db: AsyncEngine) -> None:
    # Given used invites (one made by staff, one at the shell), an open and an expired one
    # When the database is upgraded to 0004
    await migrate(old_db, "0004")
    # Then the used ones are gone; the unused ones are kept as they were
    invites = await by_id(old_db, "SELECT id, token_lookup, created_by, expires_at FROM invites")
    assert set(invites) == {"i-open", "i-expired"}
    for invite in INVITES[2:]:
        token, by, expires = invites[invite["id"]]
        assert (token, by) == (invite["tok"], invite["by"])
        assert when(expires) == datetime.fromisoformat(invite["expires"])  # a deadline: exact
    # ... and no column says when an invite was made or used any more
    columns = {r[1] for r in await rows(old_db, "PRAGMA table_info(invites)")}
    assert not columns & {"created_at", "used_at"}


async def test_normal_outbox_priority_1_becomes_2(old_db: AsyncEngine) -> None:
    # Given an urgent (0) and two normal (1) outbox rows, one of them failed
    # When the database is upgraded to 0004
    await migrate(old_db, "0004")
    # Then normal is 2 (escalations took 1), urgent stays 0, and nothing else changed
    outbox = await by_id(
        old_db,
        "SELECT id, priority, recipient_id, status, last_error, payload, about_member_id,"
        " attempts, created_at, due_at, collapse_key FROM outbox",
    )
    assert {k: v[0] for k, v in outbox.items()} == {"o-urgent": 0, "o-normal": 2, "o-failed": 2}
    for item in OUTBOX:
        _, to, status, error, payload, about, attempts, created, due, key = outbox[item["id"]]
        assert (to, status, error, payload, about, attempts, key) == (
            item["to"],
            item["status"],
            item["error"],
            item["payload"],
            item["about"],
            3,
            None,
        )
        # Transient rows keep full precision (the sender orders by it)
        assert when(created) == datetime(2026, 3, 4, 5, 6, 8, 1)
        assert when(due) == datetime(2026, 3, 4, 5, 6, 9, 2)


async def test_timestamps_are_rounded_to_the_day_or_the_minute_for_open_requests(
    old_db: AsyncEngine,
) -> None:
    # Given timestamps to the microsecond, some a moment before midnight or a minute's end
    # When the database is upgraded to 0004
    await migrate(old_db, "0004")
    # Then people's enrolment and revocation, check-ins and notes are rounded down to the day
    people = await by_id(old_db, "SELECT id, created_at, revoked_at FROM people")
    assert {k: when(v[0]) for k, v in people.items()} == {
        "m1": datetime(2026, 3, 4),
        "m2": datetime(2026, 3, 4),
        "m3": datetime(2026, 2, 1),
        "s1": datetime(2026, 1, 1),
        "a1": datetime(2025, 12, 31),
    }
    assert {k: v[1] and when(v[1]) for k, v in people.items()} == {
        "m1": None,
        "m2": None,
        "m3": datetime(2026, 5, 6),
        "s1": None,
        "a1": None,
    }
    checkins = await by_id(old_db, "SELECT id, created_at FROM checkins")
    assert {k: when(v[0]) for k, v in checkins.items()} == {
        "k1": datetime(2026, 3, 4),
        "k2": datetime(2026, 2, 28),
        "k3": datetime(2026, 2, 2),
    }
    notes = await by_id(old_db, "SELECT id, created_at FROM notes")
    assert {k: when(v[0]) for k, v in notes.items()} == {
        "n1": datetime(2026, 3, 4),
        "n2": datetime(2026, 3, 5),
    }
    # ... requests not yet resolved keep their age to the minute; a resolved one to the day
    cases = await by_id(old_db, "SELECT id, created_at, escalate_at FROM cases")
    assert {k: when(v[0]) for k, v in cases.items()} == {
        "c-open": datetime(2026, 3, 4, 5, 6),
        "c-claimed": datetime(2026, 3, 4, 5, 7),
        "c-done": datetime(2026, 3, 4),
    }
    # ... a deadline stays exact, and nothing says when a request was claimed or resolved
    assert when(cases["c-open"][1]) == datetime(2026, 3, 4, 5, 21, 7, 500000)
    columns = {r[1] for r in await rows(old_db, "PRAGMA table_info(cases)")}
    assert not columns & {"claimed_at", "resolved_at"}


async def test_nothing_else_is_lost_and_foreign_keys_are_back_on(old_db: AsyncEngine) -> None:
    # Given people, requests, check-ins, notes and tallies at 0003
    # When the database is upgraded to 0004 (SQLite copies whole tables to alter them)
    await migrate(old_db, "0004")
    # Then every row is still there with what it held
    people = await by_id(
        old_db,
        "SELECT id, tg_lookup, chat_ref, role, pseudonym, language, language_chosen,"
        " invited_by, caseworker_id, clear_after_minutes, erased, menu, name_lookup"
        " FROM people",
    )
    assert people == {
        p["id"]: (
            p["tg"],
            b"\x00",
            p["role"],
            p["pseudonym"],
            "en",
            1,
            p["invited_by"],
            p["caseworker"],
            p["clear"],
            0,
            None,
            None,
        )
        for p in PEOPLE
    }
    cases = await by_id(
        old_db, "SELECT id, member_id, status, claimed_by, escalations, sealed, brief FROM cases"
    )
    assert cases == {
        c["id"]: (c["member"], c["status"], c["by"], c["escalations"], c["sealed"], c["brief"])
        for c in CASES
    }
    checkins = await by_id(old_db, "SELECT id, person_id, sealed FROM checkins")
    assert checkins == {k["id"]: (k["person"], k["sealed"]) for k in CHECKINS}
    notes = await by_id(
        old_db, "SELECT id, member_id, staff_id, from_member, case_id, sealed FROM notes"
    )
    assert notes == {
        n["id"]: (n["member"], n["staff"], n["from"], n["case"], n["sealed"]) for n in NOTES
    }
    assert await rows(old_db, "SELECT period, name, value FROM tallies") == [
        ("2025", "checkins_purged", 6.0)
    ]
    # ... except the staff names, which staff choose again (their lookup needs the pepper)
    names = await by_id(old_db, "SELECT id, display_name FROM people")
    assert {k: v[0] for k, v in names.items()} == {p["id"]: None for p in PEOPLE}
    # ... the references all hold, and foreign keys are enforced again
    assert await rows(old_db, "PRAGMA foreign_key_check") == []
    assert await rows(old_db, "PRAGMA integrity_check") == [("ok",)]
    assert await rows(old_db, "PRAGMA foreign_keys") == [(1,)]
    with pytest.raises(IntegrityError):
        async with old_db.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO checkins (id, person_id, created_at, sealed)"
                    " VALUES ('k-orphan', 'nobody', '2026-03-04 00:00:00', x'00')"
                )
            )
    # ... and the bot's models read every row (at head, whatever came after 0004)
    await migrate(old_db)
    async with make_sessionmaker(old_db)() as session:
        counts = {
            model.__tablename__: len(list(await session.scalars(select(model))))
            for model in (Person, Invite, Case, Note, CheckIn, OutboxItem, ChatMessage, Tally)
        }
    assert counts == {
        "people": 5,
        "invites": 2,
        "cases": 3,
        "notes": 2,
        "checkins": 3,
        "outbox": 3,
        "chat_messages": 4,
        "tallies": 1,
    }


async def test_downgrade_to_0003_runs_on_the_migrated_data(old_db: AsyncEngine) -> None:
    # Given the data above upgraded to 0004
    await migrate(old_db, "0004")
    # When it is downgraded to 0003
    await migrate_down(old_db, "0003")
    # Then the schema is 0003's again and no person, request, check-in or note is lost
    assert await current_revision(old_db) == "0003"
    for table, count in (("people", 5), ("cases", 3), ("checkins", 3), ("notes", 2)):
        query = f"SELECT count(*) FROM {table}"  # noqa: S608 (a fixed table name)
        assert await rows(old_db, query) == [(count,)], table
    # ... the staff copies are delivered rows again, as they were; the member's row stays
    delivered = await by_id(
        old_db, "SELECT id, staff_id, message_id, member_id, case_id, kind, created_at"
        " FROM delivered"
    )  # fmt: skip
    assert {k: v[:5] for k, v in delivered.items()} == {
        d["id"]: (d["staff"], d["msg"], d["member"], d["case"], d["kind"]) for d in DELIVERED
    }
    for copy in DELIVERED:
        assert when(delivered[copy["id"]][5]) == datetime.fromisoformat(copy["created"])
    assert await rows(old_db, "SELECT id FROM chat_messages") == [("cm1",)]
    # ... no word survives (filler is not a digest), normal priority is 1 again
    assert await rows(old_db, "SELECT DISTINCT code_word, duress_word FROM people") == [
        (None, None)
    ]
    priorities = await by_id(old_db, "SELECT id, priority FROM outbox")
    assert {k: v[0] for k, v in priorities.items()} == {
        "o-urgent": 0,
        "o-normal": 1,
        "o-failed": 1,
    }
    # ... the references hold, foreign keys are on, and 0004 applies again
    assert await rows(old_db, "PRAGMA foreign_key_check") == []
    assert await rows(old_db, "PRAGMA foreign_keys") == [(1,)]
    assert await migrate(old_db, "0004") is True
    assert await rows(old_db, "SELECT count(*) FROM chat_messages") == [(4,)]
