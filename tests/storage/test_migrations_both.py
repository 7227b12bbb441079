"""Every migration on both databases the bot supports: SQLite (the embedded default) and
PostgreSQL (a real server, tests/postgres.py). The migrated schema equals the models on each,
indexes included, and every revision goes up and down again without losing rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import alembic_config, current_revision, head_revision, make_engine, migrate
from storage.models import Base

# SQLite cannot reflect an expression index (people: lower(pseudonym)); autogenerate skips
# it, saying so, and test_migrated_indexes_are_the_models_own compares it instead.
EXPRESSION_INDEX_SKIPPED = (
    "ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning"
)
EXPRESSION_INDEX_NOT_COMPARED = "ignore:autogenerate skipping metadata-specified expression-based"

MakeDatabase = Callable[[], AsyncEngine]


@pytest.fixture(params=["sqlite", "postgresql"])
async def new_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MakeDatabase]:
    """Makes empty databases (no schema) of one kind, disposed of afterwards."""
    engines: list[AsyncEngine] = []
    cluster = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    names: list[str] = []

    def make() -> AsyncEngine:
        if cluster is None:
            url = f"sqlite+aiosqlite:///{tmp_path / f'{len(engines)}.db'}"
        else:
            names.append(cluster.create_database())
            url = cluster.url(names[-1])
        engines.append(make_engine(url))
        return engines[-1]

    try:
        yield make
    finally:
        for engine in engines:
            await engine.dispose()
        for name in names:
            assert cluster is not None
            cluster.drop_database(name)


async def migrate_down(engine: AsyncEngine, revision: str) -> None:
    """Alembic's downgrade; on SQLite with foreign keys off, as storage.db.migrate does (a
    table copy would otherwise cascade-delete the children of the table it drops)."""
    url = engine.url.render_as_string(hide_password=True)
    sqlite = engine.dialect.name == "sqlite"

    def run(sync_connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = sync_connection
        command.downgrade(config, revision)

    async with engine.connect() as connection:
        if sqlite:
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()
        try:
            await connection.run_sync(run)
            await connection.commit()
        finally:
            if sqlite:
                await connection.rollback()
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.mark.filterwarnings(EXPRESSION_INDEX_SKIPPED)
@pytest.mark.filterwarnings(EXPRESSION_INDEX_NOT_COMPARED)
async def test_migrated_schema_matches_models(new_database: MakeDatabase) -> None:
    # Given a database made only by the migrations
    engine = new_database()
    assert await migrate(engine) is True

    # When it is compared with the models, types included
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    # Then nothing differs, and a second run changes nothing
    assert differences == []
    url = engine.url.render_as_string(hide_password=True)
    assert await current_revision(engine) == head_revision(url)
    assert await migrate(engine) is False


async def _index_definitions(engine: AsyncEngine) -> dict[str, str]:
    """Each index's own definition, as the database states it."""
    if engine.dialect.name == "sqlite":
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    else:
        query = (
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
    async with engine.connect() as connection:
        rows = await connection.execute(text(query))
        return {name: " ".join(sql.split()) for name, sql in rows}


async def test_migrated_indexes_are_the_models_own(new_database: MakeDatabase) -> None:
    """Every index exactly as the models declare it, including what autogenerate cannot
    compare: expressions (lower(pseudonym)) and partial indexes (WHERE ...)."""
    # Given one database made by the migrations and one made from the models
    migrated, declared = new_database(), new_database()
    await migrate(migrated)
    async with declared.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    # Then their indexes are the same, column for column and condition for condition
    indexes = await _index_definitions(migrated)
    assert indexes == await _index_definitions(declared)
    assert "WHERE" in indexes["ix_outbox_collapse_key"]
    assert "lower" in indexes["ix_people_pseudonym_lower"]


async def test_every_revision_goes_up_and_down_again_keeping_rows(
    new_database: MakeDatabase,
) -> None:
    # Given a database at the newest revision holding a member and a check-in, written with
    # bound parameters as the bot writes them (bytes, booleans, aware datetimes)
    engine = new_database()
    await migrate(engine)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    member = {"id": "p1", "tg": b"\x00" * 32, "ref": b"\x01", "word": b"\x02" * 32, "at": at}
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO people (id, tg_lookup, chat_ref, role, pseudonym, language,"
                " language_chosen, created_at, erased, code_word, duress_word) VALUES (:id,"
                " :tg, :ref, 'member', 'A B 10', 'ko', :yes, :at, :no, :word, :word)"
            ),
            {**member, "yes": True, "no": False},
        )
        await connection.execute(
            text(
                "INSERT INTO checkins (id, person_id, created_at, sealed) "
                "VALUES ('c1', 'p1', :at, :sealed)"
            ),
            {"at": at, "sealed": b"\x03"},
        )
    # When each revision is taken down one at a time to the first, then up again to the newest
    every = revisions()
    for revision in reversed(every[:-1]):
        await migrate_down(engine, revision)
        assert await current_revision(engine) == revision
    for revision in every[1:]:
        assert await migrate(engine, revision) is True
    # Then the rows are still there, as they were written
    async with engine.connect() as connection:
        checkins = (await connection.execute(text("SELECT id, sealed FROM checkins"))).all()
        person = (await connection.execute(text("SELECT tg_lookup, created_at FROM people"))).one()
    assert [tuple(row) for row in checkins] == [("c1", b"\x03")]
    assert bytes(person[0]) == member["tg"]
    stored = person[1]
    moment = stored if isinstance(stored, datetime) else datetime.fromisoformat(stored)
    assert moment.replace(tzinfo=moment.tzinfo or UTC) == at


async def test_base_to_head_and_back_to_nothing(new_database: MakeDatabase) -> None:
    # Given an empty database brought to the newest revision
    engine = new_database()
    await migrate(engine)
    # When every revision is taken down
    await migrate_down(engine, "base")
    # Then no table of ours is left (Alembic's own bookkeeping aside), and up works again
    async with engine.connect() as connection:
        tables = await connection.run_sync(
            lambda sync: set(sync.dialect.get_table_names(sync)) - {"alembic_version"}
        )
    assert tables == set()
    assert await migrate(engine) is True


async def test_0011_sends_uncertified_staff_keys_back_to_pending_and_keeps_members(
    new_database: MakeDatabase,
) -> None:
    # Given a database at 0010 with a caseworker's key approved by the old chat button, and
    # a member's key (approved at registration)
    engine = new_database()
    assert await migrate(engine, "0010") is True
    at = datetime(2026, 1, 1, tzinfo=UTC)
    async with engine.begin() as connection:
        for pid, role, lookup in (("cw", "caseworker", b"\x01"), ("m1", "member", b"\x02")):
            await connection.execute(
                text(
                    "INSERT INTO people (id, tg_lookup, chat_ref, role, pseudonym, language,"
                    " language_chosen, created_at, erased, code_word, duress_word) VALUES"
                    " (:id, :tg, :ref, :role, :id, 'ko', :yes, :at, :no, :word, :word)"
                ),
                {
                    "id": pid,
                    "tg": lookup * 32,
                    "ref": b"\x01",
                    "role": role,
                    "at": at,
                    "yes": True,
                    "no": False,
                    "word": b"\x02" * 32,
                },
            )
            await connection.execute(
                text(
                    "INSERT INTO device_keys (id, person_id, public_key, status, created_at)"
                    " VALUES (:id, :id, :pk, 'approved', :at)"
                ),
                {"id": pid, "pk": lookup * 32, "at": at},
            )
    # When it is brought to 0011
    assert await migrate(engine, "0011") is True
    # Then the caseworker's key waits for a certificate again; the member's stays approved
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT id, status FROM device_keys ORDER BY id"))
        assert [tuple(r) for r in rows] == [("cw", "pending"), ("m1", "approved")]
    # And down again leaves both rows
    await migrate_down(engine, "0010")
    async with engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM device_keys"))
    assert count == 2
