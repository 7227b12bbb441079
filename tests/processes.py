"""Real bot processes (``python -m bot run``) against the local fake Bot API, for the tests
and benchmarks of several processes sharing one database (issue 13)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bot.core import Core
from bot.delivery import Outgoing, enqueue
from sandbox import FakeBotApi, FakeUser
from storage.models import Role
from tests.conftest import PASSPHRASE, eventually, make_settings, secrets_of, seed_people


def process_env(data_dir: Path, api: FakeBotApi, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    return {
        **keep,
        "HOME": str(data_dir.parent / "home"),
        "SAFERELAY_DATA_DIR": str(data_dir),
        "SAFERELAY_SECRETS_DIR": str(secrets_of(data_dir)),
        "SAFERELAY_PASSPHRASE": PASSPHRASE,
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_BASE_URL": api.base_url,
        # The test's database: SQLite in the data directory, or on the PostgreSQL pass the
        # database the data_dir fixture made.
        "DATABASE_URL": make_settings(data_dir).database_url,
        **extra,
    }


@dataclass
class BotProcess:
    """One ``saferelay run``; its log lines (stderr) are read as they come, so the pipe
    never fills and a test can wait for one."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def ready(self, within: float = 60.0) -> None:
        async def said_so() -> bool:
            if self.process.returncode is not None:
                raise AssertionError("the bot process ended:\n" + "\n".join(self.lines[-30:]))
            return any("bot ready" in line for line in self.lines)

        await eventually(said_so, within=within, what="the bot process to be ready")

    async def stop(self) -> None:
        """SIGINT, as Ctrl-C or systemd would, and wait for a clean end."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._done()

    async def kill(self) -> None:
        """SIGKILL: a crash, nothing tidied up."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        await self._done()

    async def _done(self) -> None:
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


async def start_process(
    data_dir: Path, api: FakeBotApi, *, updates: bool, **env: str
) -> BotProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=data_dir.parent,
        env=process_env(data_dir, api, SAFERELAY_UPDATES="on" if updates else "off", **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    running = BotProcess(process)
    running.reader = asyncio.create_task(running._read())
    return running


async def seed(
    core: Core, api: FakeBotApi, count: int, first_uid: int, role: Role = Role.MEMBER
) -> list[tuple[str, FakeUser]]:
    """``count`` people straight into the database, their chats opened on the fake server
    (as tests.conftest.RunningBot.seed, without a bot in this process)."""
    return await seed_people(core, api, count, first_uid, role)


async def queue(core: Core, messages: list[tuple[str, str]], priority: int) -> None:
    """(person id, text) pairs into the outbox in one transaction, as a service would."""
    async with core.sessions() as session, session.begin():
        for person_id, text in messages:
            enqueue(session, core.secrets, person_id, Outgoing(text, priority=priority))
