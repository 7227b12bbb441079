"""Migration 0004 on a database with data: every promised data move, and nothing lost."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import make_engine, migrate

ROWS = [
    # people: a member with a word, a member without, a caseworker with a chosen name
    "INSERT INTO people (id, tg_lookup, chat_ref, role, pseudonym, language, language_chosen,"
    " created_at, code_word, duress_word, display_name) VALUES"
    " ('m1', x'01', x'00', 'member', 'A B 10', 'ko', 1, '2026-03-04 05:06:07.891', x'aa', NULL,"
    " NULL),"
    " ('m2', x'02', x'00', 'member', 'C D 11', 'en', 1, '2026-03-04 05:06:07', NULL, NULL, NULL),"
    " ('s1', x'03', x'00', 'caseworker', 'E F 12', 'en', 1, '2026-01-01 09:00:00', NULL, NULL,"
    " x'beef')",
    "INSERT INTO invites (id, token_lookup, role, created_by, created_at, expires_at, used_at)"
    " VALUES ('i-used', x'10', 'member', 's1', '2026-03-01 00:00:00', '2026-03-04 00:00:00',"
    " '2026-03-02 10:11:12'),"
    " ('i-open', x'11', 'member', 's1', '2026-03-01 00:00:00', '2099-01-01 00:00:00', NULL)",
    "INSERT INTO cases (id, member_id, status, claimed_by, created_at, claimed_at, resolved_at,"
    " escalations, sealed) VALUES"
    " ('c-open', 'm1', 'open', NULL, '2026-03-04 05:06:07.5', NULL, NULL, 0, x'00'),"
    " ('c-done', 'm2', 'resolved', 's1', '2026-03-04 05:06:07', '2026-03-04 06:00:00',"
    " '2026-03-05 07:00:00', 0, x'00')",
    "INSERT INTO delivered (id, staff_id, message_id, member_id, case_id, kind, created_at)"
    " VALUES ('d1', 's1', 42, 'm1', 'c-open', 'alert', '2026-03-04 05:06:08')",
    "INSERT INTO outbox (id, recipient_id, status, priority, created_at, due_at, attempts)"
    " VALUES ('o1', 's1', 'pending', 1, '2026-03-04 05:06:08', '2026-03-04 05:06:08', 0),"
    " ('o0', 's1', 'pending', 0, '2026-03-04 05:06:08', '2026-03-04 05:06:08', 0)",
    "INSERT INTO checkins (id, person_id, created_at, sealed) VALUES"
    " ('k1', 'm1', '2026-03-04 05:06:07', x'00')",
    "INSERT INTO notes (id, member_id, staff_id, from_member, case_id, created_at, sealed)"
    " VALUES ('n1', 'm1', NULL, 1, NULL, '2026-03-04 05:06:07', x'00')",
]


async def rows(engine: AsyncEngine, query: str) -> list[tuple[object, ...]]:
    async with engine.connect() as connection:
        return [tuple(r) for r in (await connection.execute(text(query))).all()]


def moment(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


async def test_upgrading_0003_data_moves_everything_as_promised(tmp_path: Path) -> None:
    # Given a database at 0003 with people, invites, cases, delivered copies and the rest
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'up.db'}")
    await migrate(engine, "0003")
    async with engine.begin() as connection:
        for statement in ROWS:
            await connection.execute(text(statement))
    # When it is upgraded to 0004
    assert await migrate(engine, "0004") is True
    # Then a delivered copy is a chat message in the staff chat, due 24 h after delivery
    chat = await rows(
        engine,
        "SELECT person_id, message_id, about_member_id, case_id, kind, outgoing, sent_at,"
        " delete_at FROM chat_messages",
    )
    assert [c[:6] for c in chat] == [("s1", 42, "m1", "c-open", "alert", 1)]
    assert (moment(chat[0][7]) - moment(chat[0][6])).total_seconds() == 24 * 3600
    tables = {r[0] for r in await rows(engine, "SELECT name FROM sqlite_master")}
    assert "delivered" not in tables
    # ... every member has two 32-byte word values, all different: no row says who had one
    words = await rows(engine, "SELECT code_word, duress_word FROM people")
    values = [v for row in words for v in row]
    assert all(isinstance(v, bytes) and len(v) == 32 for v in values)
    assert len(set(values)) == len(values) and b"\xaa" not in values
    # ... the used invite is gone, the open one kept
    assert await rows(engine, "SELECT id FROM invites") == [("i-open",)]
    # ... normal outbox priority 1 became 2 (escalations took 1); urgent 0 stayed
    assert sorted(await rows(engine, "SELECT id, priority FROM outbox")) == [
        ("o0", 0),
        ("o1", 2),
    ]
    # ... times are rounded: open case to the minute, resolved case, check-in, note and
    # people to the day; nothing says when a case was claimed or resolved
    created = dict(await rows(engine, "SELECT id, created_at FROM cases"))
    assert moment(created["c-open"]) == datetime(2026, 3, 4, 5, 6)
    assert moment(created["c-done"]) == datetime(2026, 3, 4)
    columns = {r[1] for r in await rows(engine, "PRAGMA table_info(cases)")}
    assert not columns & {"claimed_at", "resolved_at"}
    for table in ("checkins", "notes", "people"):
        query = f"SELECT created_at FROM {table}"  # noqa: S608 (a fixed table name)
        for (value,) in await rows(engine, query):
            assert moment(value).time() == datetime.min.time(), table
    # ... staff choose their name again (the lookup needs the pepper), members untouched
    assert await rows(engine, "SELECT display_name FROM people WHERE id = 's1'") == [(None,)]
    # ... and nothing else was lost, with foreign keys back on
    for table, count in (("people", 3), ("cases", 2), ("checkins", 1), ("notes", 1)):
        query = f"SELECT count(*) FROM {table}"  # noqa: S608 (a fixed table name)
        assert await rows(engine, query) == [(count,)], table
    assert await rows(engine, "PRAGMA foreign_keys") == [(1,)]
    # And a downgrade to 0003 runs on that data and keeps the rows
    await migrate_down(engine)
    assert await rows(engine, "SELECT count(*) FROM people") == [(3,)]
    await engine.dispose()


async def migrate_down(engine: AsyncEngine) -> None:
    """Alembic's downgrade, with foreign keys off as storage.db.migrate does for SQLite."""
    from alembic import command
    from sqlalchemy import Connection

    from storage.db import alembic_config

    url = engine.url.render_as_string(hide_password=False)

    def run(sync_connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = sync_connection
        command.downgrade(config, "0003")

    async with engine.connect() as connection:
        await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await connection.commit()
        await connection.run_sync(run)
        await connection.commit()
        await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        await connection.commit()
