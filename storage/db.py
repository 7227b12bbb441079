"""Engine, sessions and migrations."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers do not block the writer. synchronous=FULL: a commit is on the disk
    # before the member is told "sent" -- with NORMAL a power cut (not a crash of the bot)
    # could undo the last requests after the member was told they arrived (invariant I5).
    # It costs one fsync per commit, ~0.4-0.6 ms here, small beside a request's CPU
    # (bench/request_bench.py); PostgreSQL's synchronous_commit=on is the same promise.
    # secure_delete: deleted rows are overwritten, so erased records do not linger in free
    # pages. foreign_keys: SQLite leaves them off.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(url: str | URL) -> AsyncEngine:
    """An async engine; SQLite gets WAL and the pragmas above on every connection.

    PostgreSQL (asyncpg) is a server that can restart or drop idle connections under us:
    each connection is checked as it leaves the pool (one round trip), so an update after a
    database restart is handled instead of failing on a dead connection."""
    if make_url(url).get_backend_name() == "postgresql":
        return create_async_engine(url, pool_pre_ping=True)
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade(connection: Connection, url: str, revision: str = "head") -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision)


async def migrate(engine: AsyncEngine, revision: str = "head") -> bool:
    """Bring the schema to the newest revision. Returns whether anything changed."""
    # The connection is handed to Alembic, so its URL is only a name: no password in it.
    url = engine.url.render_as_string(hide_password=True)
    before = await current_revision(engine)
    if before == (head_revision(url) if revision == "head" else revision):
        return False
    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as connection:
        # SQLite alters a table by copying it and dropping the old one; with foreign keys on,
        # that drop would cascade and delete every child row (check-ins, cases...). The
        # pragma only takes effect outside a transaction, hence the commit around it.
        if sqlite:
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()
        try:
            await connection.run_sync(_upgrade, url, revision)
            await connection.commit()
        finally:
            if sqlite:
                await connection.rollback()
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()
    return True


async def wait_for_schema(engine: AsyncEngine, poll: float = 1.0) -> None:
    """Until another process (the one that takes updates) has brought the schema to the
    newest revision; a process that only sends and sweeps never migrates."""
    url = engine.url.render_as_string(hide_password=True)
    head = head_revision(url)
    told = False
    while True:
        try:
            if await current_revision(engine) == head:
                return
        except Exception:  # noqa: S110 - no table yet: the migrating process has not begun
            pass
        if not told:
            log.info("waiting for the process that takes updates to migrate the database")
            told = True
        await asyncio.sleep(poll)


async def truncate_wal(engine: AsyncEngine) -> bool:
    """Fold the write-ahead log into the main file and truncate it to zero bytes (SQLite;
    a no-op elsewhere). With secure_delete on, deleted rows are zeroed in the main file, so
    afterwards no copy of them is left in either file. False when a reader kept part of the
    log in use: try again a moment later."""
    if engine.dialect.name != "sqlite":
        return True
    async with engine.connect() as connection:
        row = (await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
    return int(row[0]) == 0  # (busy, log frames, checkpointed frames)
