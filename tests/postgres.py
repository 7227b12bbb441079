"""A throwaway PostgreSQL cluster for the tests and benchmarks: Debian's own server binaries,
``initdb`` into a temporary directory, listening only on a Unix socket inside it (no TCP port,
so nothing else on the machine can reach it and two clusters never collide), stopped and
deleted at the end. Nothing is mocked: the bot talks to a real server through asyncpg.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the Debian
``postgres`` user (``runuser``), in a directory that user owns. Either way the superuser is
called ``saferelay`` and local connections are trusted -- acceptable only because the socket
lives in a private temporary directory and the cluster holds test data.

Each test gets a fresh database copied from a template migrated once (``CREATE DATABASE ...
TEMPLATE``, a file copy: milliseconds, where migrating takes about a second).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "saferelay"
TEMPLATE = "saferelay_template"


def server_bindir() -> Path | None:
    """Where the server's own binaries are (``pg_dump`` must match the server's major
    version, so everything is taken from beside ``postgres``): ``pg_config --bindir``, else
    the newest of Debian's ``/usr/lib/postgresql/*/bin``."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found:
            candidates.append(Path(found))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += debian
    for bindir in candidates:
        if (bindir / "postgres").exists() and (bindir / "initdb").exists():
            return bindir
    return None


@dataclass
class PostgresCluster:
    """One running server; ``url(name)`` is an asyncpg URL for a database in it."""

    bindir: Path
    root: Path  # temporary directory: data/ and the socket
    as_postgres: bool
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )

    def psql(self, sql: str, database: str = "postgres") -> str:
        """One statement through ``psql`` (as the test process's user: the socket is
        trusted), for what must not run inside a transaction (CREATE/DROP DATABASE)."""
        done = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", str(self.socket_dir), "-U", SUPERUSER, "-d", database, "-c", sql,
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str | None = None, *, template: str = "template0") -> str:
        """A new, empty (``template0``) or copied database; returns its name."""
        name = name or f"t{os.getpid()}_{next(self._counter)}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(*, durable: bool = False) -> PostgresCluster:
    """initdb + pg_ctl start in a new temporary directory; raises with the reason if the
    server binaries are missing (``tests/run`` installs Debian's ``postgresql``).
    ``durable``: PostgreSQL's own defaults (fsync, synchronous commit), for benchmarks."""
    bindir = server_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin):"
            " install Debian's postgresql package (tests/run does)."
        )
    as_postgres = os.geteuid() == 0
    # A short path: a Unix socket's path must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="saferelay-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    cluster = PostgresCluster(bindir=bindir, root=root, as_postgres=as_postgres)
    try:
        cluster._run(
            "initdb", "-D", str(cluster.data), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        # No TCP at all, the socket only in our directory; durability off (fsync, full
        # pages): a crash of a test cluster loses nothing anyone needs, and it is faster.
        fast = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{cluster.socket_dir}' "
            + ("" if durable else fast)
            + "-c max_connections=200 "
            # Not UTC, on purpose: a timestamp that depends on the session's zone shows up.
            "-c timezone=Asia/Seoul"
        )
        cluster._run(
            "pg_ctl", "start", "-D", str(cluster.data), "-w", "-s",
            "-l", str(cluster.root / "server.log"), "-o", options,
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster
