"""Migrations on SQLite itself: its pragmas, its table copies (batch mode) and its partial
indexes, on data older versions wrote. The schema against the models, and every revision
up and down, are tested on both databases in test_migrations_both.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import make_engine, migrate

# A member row as every schema since 0004 takes it (id 'p1').
A_MEMBER = text(
    "INSERT INTO people (id, tg_lookup, chat_ref, role, pseudonym, language, language_chosen, "
    "created_at, erased, code_word, duress_word) VALUES ('p1', x'00', x'00', 'member', "
    "'A B 10', 'ko', 1, '2026-01-01 00:00:00', 0, x'00', x'00')"
)

pytestmark = pytest.mark.sqlite_only("SQLite's pragmas, table copies and sqlite_master")


async def _index_definitions(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        )
        return {name: " ".join(sql.split()) for name, sql in rows}


async def test_sqlite_runs_in_wal_mode_with_secure_delete(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await connection.execute(text("PRAGMA secure_delete"))).scalar() == 1
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    await engine.dispose()


async def test_upgrading_keeps_existing_rows(tmp_path: Path) -> None:
    # Given a database at the first revision with a person and a check-in
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'u.db'}")
    await migrate(engine, "0001")
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO people (id, tg_lookup, chat_ref, role, pseudonym, language, "
                "language_chosen, created_at) VALUES ('p1', x'00', x'00', 'member', 'A B 10', "
                "'ko', 1, '2026-01-01 00:00:00')"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO checkins (id, person_id, created_at, sealed) "
                "VALUES ('c1', 'p1', '2026-01-01 00:00:00', x'00')"
            )
        )
    # When it is upgraded (SQLite rebuilds the people table to add columns)
    assert await migrate(engine) is True
    # Then nothing was lost to a cascading delete, and foreign keys are back on
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM checkins"))).scalar() == 1
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    await engine.dispose()


async def test_0005_adds_only_indexes_and_its_downgrade_takes_them_away(tmp_path: Path) -> None:
    from tests.storage.test_migration_0004 import migrate_down

    # Given a database at 0004 with a member and a check-in
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'i.db'}")
    await migrate(engine, "0004")
    async with engine.begin() as connection:
        await connection.execute(A_MEMBER)
        await connection.execute(
            text(
                "INSERT INTO checkins (id, person_id, created_at, sealed) "
                "VALUES ('c1', 'p1', '2026-01-01 00:00:00', x'00')"
            )
        )
    before = await _index_definitions(engine)
    # When it is upgraded, then downgraded again
    await migrate(engine, "0005")
    after = await _index_definitions(engine)
    await migrate_down(engine, "0004")
    # Then the upgrade added the hot-path indexes (and replaced two outbox ones), the
    # downgrade left 0004's indexes exactly, and the rows stayed throughout
    assert set(after) - set(before) == {
        "ix_people_role",
        "ix_people_pseudonym_lower",
        "ix_people_invited_by",
        "ix_people_caseworker_id",
        "ix_people_erased",
        "ix_invites_expires_at",
        "ix_checkins_created_at",
        "ix_cases_status_created_at",
        "ix_notes_created_at",
        "ix_outbox_next_item",
        "ix_outbox_collapse_key",
    }
    assert set(before) - set(after) == {"ix_outbox_status"}
    assert await _index_definitions(engine) == before
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM checkins"))).scalar() == 1
    await engine.dispose()


async def test_0007_copies_the_outbox_with_its_pending_messages_and_indexes(
    tmp_path: Path,
) -> None:
    from tests.storage.test_migration_0004 import migrate_down

    # Given a database at 0006 with a message waiting in the outbox
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    await migrate(engine, "0006")
    async with engine.begin() as connection:
        await connection.execute(A_MEMBER)
        await connection.execute(
            text(
                "INSERT INTO outbox (id, recipient_id, status, priority, created_at, due_at, "
                "attempts, payload, collapse_key) VALUES ('o1', 'p1', 'pending', 1, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 0, x'01', 'esc:c1')"
            )
        )
    before = await _index_definitions(engine)
    try:
        # When it is upgraded (the outbox is copied to gain broadcast_id), then downgraded
        await migrate(engine)
        after = await _index_definitions(engine)
        async with engine.connect() as connection:
            kept = (await connection.execute(text("SELECT id, broadcast_id FROM outbox"))).all()
        await migrate_down(engine, "0006")
        async with engine.connect() as connection:
            back = (await connection.execute(text("SELECT id, collapse_key FROM outbox"))).all()
        # Then the message waits on, and the outbox keeps every index (the partial one too)
        assert kept == [("o1", None)]
        assert back == [("o1", "esc:c1")]
        outbox = {k: v for k, v in before.items() if k.startswith("ix_outbox")}
        assert {k: v for k, v in after.items() if k in outbox} == outbox
        assert "WHERE collapse_key IS NOT NULL" in after["ix_outbox_collapse_key"]
    finally:
        await engine.dispose()
