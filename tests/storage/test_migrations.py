"""Alembic owns the schema: the migrated database must equal the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from storage.db import current_revision, head_revision, make_engine, migrate
from storage.models import Base


async def test_migrated_schema_matches_models(tmp_path: Path) -> None:
    # Given a database made only by the migrations
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    engine = make_engine(url)
    assert await migrate(engine) is True

    # When it is compared with the models
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    # Then nothing differs, and a second run changes nothing
    assert differences == []
    assert await current_revision(engine) == head_revision(url)
    assert await migrate(engine) is False
    await engine.dispose()


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
