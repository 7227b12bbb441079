"""``saferelay backup PATH`` and ``saferelay restore PATH``: the database, and only it.

A backup is a copy of ciphertext -- chat ids under the server key, everything members wrote
sealed to the team key -- so alone it opens nothing; but with ``server.json`` it tells who is
enrolled, and with the team key everything. Keep it apart from both (README, "Backups").

- SQLite: the online backup API (a consistent copy while the bot runs; readers never block
  the writer in WAL mode), written to a temporary file beside PATH and renamed into place, in
  rollback-journal mode so the backup is one self-contained file.
- PostgreSQL: ``pg_dump --format=custom`` (compressed; ``pg_restore`` reads it), taken from
  the directory of the server's own major version, since a dump tool older than the server
  refuses and one of another version may write what an older pg_restore cannot read. The
  password reaches it in a private temporary passfile, never on a command line or in the
  environment of a process list.

Restoring refuses a target that holds any row unless told to overwrite it; it brings the
restored schema up to the newest revision (a backup may come from an older version) and then
checks that the server secrets here open the backup's chat ids, so a restore with the wrong
``server.json`` is caught at once, not by a bot that cannot reach anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, exists, func, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.people import chat_place
from bot.settings import Settings
from crypto.errors import CryptoError
from crypto.keystore import ServerSecrets
from storage.db import make_engine, migrate
from storage.models import Base, Person

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
SQLITE = "SQLite"
POSTGRESQL = "PostgreSQL"


class BackupError(Exception):
    """A backup or restore cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Done:
    """What a backup or restore did, for the person at the shell."""

    kind: str  # SQLITE or POSTGRESQL
    path: Path
    size: int
    people: int = 0
    migrated: bool = False


# --- backup -----------------------------------------------------------------------------


def backup(settings: Settings, target: Path, *, overwrite: bool = False) -> Done:
    """Write a backup of the database to ``target`` (mode 0600). Synchronous: a command
    at the shell, whose file and process work would only block an event loop."""
    target = target.expanduser()
    if target.exists() and not overwrite:
        raise BackupError(f"{target} already exists: choose a new name, or add --force.")
    if not target.parent.is_dir():
        raise BackupError(f"No directory {target.parent} to write the backup into.")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        if settings.database_dialect == "sqlite":
            kind = SQLITE
            _backup_sqlite(_sqlite_file(settings), partial)
        else:
            kind = POSTGRESQL
            _backup_postgresql(settings, partial)
        os.chmod(partial, 0o600)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return Done(kind, target, target.stat().st_size)


def _sqlite_file(settings: Settings) -> Path:
    name = make_url(settings.database_url).database
    assert name, "settings validate that an SQLite URL names a file"
    return Path(name)


def _backup_sqlite(database: Path, target: Path) -> None:
    if not database.exists():
        raise BackupError(f"No database at {database}: nothing to back up.")
    # Created empty and private first: sqlite3 would create it with the umask's mode.
    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    with (
        contextlib.closing(sqlite3.connect(database)) as source,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        source.execute("PRAGMA busy_timeout=5000")
        source.backup(copy)
        # One self-contained file: out of WAL mode, no -wal or -shm beside it.
        copy.execute("PRAGMA journal_mode=DELETE")


def _backup_postgresql(settings: Settings, target: Path) -> None:
    url = settings.engine_url()
    major = asyncio.run(_server_major(url))
    with _libpq(url) as (args, env):
        _run(
            _pg_tool("pg_dump", major),
            [*args, "--format=custom", "--no-owner", "--no-privileges", f"--file={target}"],
            env,
        )


# --- restore ----------------------------------------------------------------------------


def restore(
    settings: Settings, secrets: ServerSecrets, source: Path, *, overwrite: bool = False
) -> Done:
    """Restore the database from ``source`` into the configured (empty) database."""
    source = source.expanduser()
    if not source.is_file():
        raise BackupError(f"No backup file at {source}.")
    with source.open("rb") as file:
        head = file.read(len(SQLITE_MAGIC))
    dialect = settings.database_dialect
    if head.startswith(PG_DUMP_MAGIC):
        kind = POSTGRESQL
    elif head == SQLITE_MAGIC:
        kind = SQLITE
    else:
        raise BackupError(f"{source} is not a saferelay backup (neither SQLite nor pg_dump).")
    if (kind == SQLITE) != (dialect == "sqlite"):
        raise BackupError(
            f"{source} is a {kind} backup but DATABASE_URL names a "
            f"{POSTGRESQL if dialect == 'postgresql' else SQLITE} database: restore it into "
            "the kind it was made from."
        )
    if kind == SQLITE:
        _check_sqlite_backup(source)
        _sqlite_file(settings).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = settings.engine_url()
    if asyncio.run(_holds_rows(url)) and not overwrite:
        raise BackupError(
            "The database named by DATABASE_URL already holds data: restore into a fresh "
            "data directory (or an empty database), or add --force to replace it (stop the "
            "bot first)."
        )
    if kind == SQLITE:
        _restore_sqlite(source, _sqlite_file(settings))
    else:
        asyncio.run(_drop_our_tables(url))
        major = asyncio.run(_server_major(url))
        with _libpq(url) as (args, env):
            _run(
                _pg_tool("pg_restore", major),
                [*args, "--no-owner", "--no-privileges", "--single-transaction",
                 "--exit-on-error", str(source)],
                env,
            )  # fmt: skip
    migrated, people = asyncio.run(_finish(url, secrets))
    return Done(kind, source, source.stat().st_size, people=people, migrated=migrated)


async def _finish(url: URL, secrets: ServerSecrets) -> tuple[bool, int]:
    """Bring the restored schema to the newest revision and check the secrets open it."""
    engine = make_engine(url)
    try:
        migrated = await migrate(engine)
        return migrated, await _check_secrets_open(engine, secrets)
    finally:
        await engine.dispose()


def _check_sqlite_backup(source: Path) -> None:
    uri = f"{source.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            (result,) = db.execute("PRAGMA quick_check").fetchone()
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{source} cannot be read as a database ({exc}).") from None
    if result != "ok":
        raise BackupError(f"{source} is damaged (SQLite says: {result}).")
    if "alembic_version" not in tables or "people" not in tables:
        raise BackupError(f"{source} is an SQLite file but not a saferelay database.")


def _restore_sqlite(source: Path, target: Path) -> None:
    if not target.exists():
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    uri = f"{source.resolve().as_uri()}?mode=ro"
    with (
        contextlib.closing(sqlite3.connect(uri, uri=True)) as backup_db,
        contextlib.closing(sqlite3.connect(target)) as live,
    ):
        live.execute("PRAGMA busy_timeout=5000")
        backup_db.backup(live)
        live.execute("PRAGMA journal_mode=WAL")


async def _holds_rows(url: URL) -> bool:
    """Whether any of our tables exists with a row in it (a schema alone is empty: that is
    what `saferelay init` leaves)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            present = await connection.run_sync(
                lambda sync: set(sync.dialect.get_table_names(sync))
            )
            for table in Base.metadata.sorted_tables:
                if table.name not in present:
                    continue
                if await connection.scalar(select(exists().select_from(table))):
                    return True
        return False
    finally:
        await engine.dispose()


async def _drop_our_tables(url: URL) -> None:
    """Make room for pg_restore: our tables and Alembic's, in one transaction (a schema
    left by `saferelay init`, or by a newer version than the backup's)."""
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
            await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        await engine.dispose()


async def _check_secrets_open(engine: AsyncEngine, secrets: ServerSecrets) -> int:
    """How many people the restored database holds; raises if this server's key does not
    open their chat ids (a backup restored beside the wrong server.json)."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(Person.id, Person.chat_ref).where(Person.erased.is_(False)).limit(3)
            )
        ).all()
        people = int(await connection.scalar(select(func.count()).select_from(Person)) or 0)

    def opens(person_id: str, chat_ref: bytes) -> bool:
        try:
            secrets.server_box.open_int(bytes(chat_ref), chat_place(person_id))
        except CryptoError:
            return False
        return True

    if rows and not any(opens(person_id, chat_ref) for person_id, chat_ref in rows):
        raise BackupError(
            "Restored, but the server secrets here do not open this backup's chat ids: "
            "put back the server.json that was in use when the backup was made (in "
            "SAFERELAY_SECRETS_DIR), or the bot cannot reach anyone."
        )
    return people


# --- PostgreSQL tools -------------------------------------------------------------------


async def _server_major(url: URL) -> int:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            number = await connection.scalar(text("SHOW server_version_num"))
    finally:
        await engine.dispose()
    return int(str(number)) // 10000


def _pg_tool(name: str, major: int) -> Path:
    """``pg_dump``/``pg_restore`` of the server's major version: Debian's versioned
    directory first, then the one on PATH -- if it is that version or newer."""
    candidates = [Path(f"/usr/lib/postgresql/{major}/bin/{name}")]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    seen: list[str] = []
    for tool in candidates:
        if not tool.exists():
            continue
        version = subprocess.run(  # noqa: S603 - a fixed tool of ours
            [str(tool), "--version"], capture_output=True, text=True, check=False
        ).stdout
        found = re.search(r"(\d+)(?:\.\d+)*\s*(\(|$)", version.strip())
        tool_major = int(found.group(1)) if found else 0
        if tool_major >= major:
            return tool
        seen.append(f"{tool} is version {tool_major}")
    raise BackupError(
        f"No {name} for PostgreSQL {major} ({'; '.join(seen) or 'none found'}): install the "
        f"client tools of the server's version (Debian: postgresql-client-{major})."
    )


@contextlib.contextmanager
def _libpq(url: URL) -> Iterator[tuple[list[str], dict[str, str]]]:
    """Command-line arguments and environment for libpq tools from a SQLAlchemy URL; the
    password goes into a temporary passfile (mode 0600) that is deleted afterwards."""
    query = url.query
    host = query.get("host") or url.host
    args = [f"--dbname={url.database}"]
    if host:
        args.append(f"--host={host if isinstance(host, str) else host[0]}")
    if url.port:
        args.append(f"--port={url.port}")
    if url.username:
        args.append(f"--username={url.username}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "15"
    sslmode = query.get("sslmode") or query.get("ssl")
    if isinstance(sslmode, str):
        env["PGSSLMODE"] = sslmode
    with tempfile.TemporaryDirectory(prefix="saferelay-") as private:
        if url.password is not None:
            passfile = Path(private) / "pgpass"
            escaped = str(url.password).replace("\\", "\\\\").replace(":", "\\:")
            fd = os.open(passfile, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(f"*:*:*:*:{escaped}\n")
            env["PGPASSFILE"] = str(passfile)
        else:
            env["PGPASSFILE"] = os.devnull
        yield args, env


def _run(tool: Path, args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(  # noqa: S603 - a fixed tool, arguments from the settings
        [str(tool), *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise BackupError(f"{tool.name} failed: {' / '.join(said[-3:]) or done.returncode}")
