"""Shared fixtures: a fresh data directory per test, a fast KDF, the real bot against the
local fake Bot API server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.pwhash
import pytest

from bot.app import ALLOWED_UPDATES, SafeApplication, build_application, build_core, shut_down
from bot.core import Core
from bot.logs import configure_logging, forget_remembered
from bot.people import create_invite
from bot.settings import Settings, load_settings
from crypto.boxes import TeamOpener
from crypto.keyfile import KdfCost
from crypto.keystore import TEAM_KEY_FILE, SecretsDir, unlock_team_key
from sandbox import FakeBotApi, FakeUser
from storage.db import make_engine, migrate
from storage.models import Person, Role, new_id
from tests.postgres import TEMPLATE, PostgresCluster, start_cluster

# Which database the `data_dir` (hence `core`, `bot`, `make_settings`) tests run on:
# "sqlite" (the embedded default) or "postgresql" (a throwaway cluster, tests/postgres.py).
# tests/run runs the storage, service and end-to-end tests a second time with "postgresql".
TEST_DATABASE = os.environ.get("SAFERELAY_TEST_DATABASE", "sqlite").strip() or "sqlite"
if TEST_DATABASE not in ("sqlite", "postgresql"):
    raise RuntimeError("SAFERELAY_TEST_DATABASE must be sqlite or postgresql")
# A test's data directory -> the PostgreSQL database made for it (make_settings reads it).
_DATABASE_OF: dict[Path, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the PostgreSQL pass, skip the tests that are about SQLite itself, saying why."""
    if TEST_DATABASE != "postgresql":
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "a test of SQLite itself"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))


def database_env(data_dir: Path) -> dict[str, str]:
    """DATABASE_URL for a command run on this test's data directory: the PostgreSQL database
    made for it on the PostgreSQL pass, nothing (the SQLite default) otherwise."""
    url = _DATABASE_OF.get(data_dir)
    return {"DATABASE_URL": url} if url else {}


@pytest.fixture(autouse=True, scope="session")
def _no_real_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test may read or write the real ~/.config/saferelay: whatever a test forgets to
    point elsewhere lands in a throwaway home."""
    home = tmp_path_factory.mktemp("home")
    os.environ["HOME"] = str(home)
    os.environ["XDG_CONFIG_HOME"] = str(home / ".config")


# Argon2id at its minimum cost: for tests only (production: SENSITIVE, 1 GiB, a few seconds).
FAST_KDF = KdfCost(nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)
PASSPHRASE = "test passphrase for the team"
LANGUAGE_BUTTON = {"ko": "한국어", "en": "English", "zh": "中文"}


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = "condition"
) -> None:
    """Wait until ``check()`` holds (something a user or an auditor would see), polling;
    fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def bare_people(count: int, role: Role = Role.MEMBER, *, start: int = 0) -> list[Person]:
    """People made directly in the database (service tests that need no Telegram side)."""
    return [
        Person(
            id=new_id(),
            tg_lookup=bytes([role is Role.MEMBER, n]) * 16,
            chat_ref=b"x",
            role=role.value,
            pseudonym=f"{role.value} {n}",
            language="en",
        )
        for n in range(start, start + count)
    ]


def secrets_of(data_dir: Path) -> Path:
    """Tests keep the secrets beside the data directory, never in the real ~/.config."""
    return data_dir.parent / "secrets"


def team_key_of(data_dir: Path) -> Path:
    return data_dir.parent / TEAM_KEY_FILE


def make_keys(data_dir: Path) -> None:
    """Keys for a test's bot, and its (empty) data directory, as `saferelay init` leaves them."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    SecretsDir(secrets_of(data_dir)).create(team_key_of(data_dir), PASSPHRASE, FAST_KDF)


def make_settings(data_dir: Path, api: FakeBotApi | None = None, **extra: str) -> Settings:
    """Settings for a test's bot; on the PostgreSQL pass, with the database the `data_dir`
    fixture made for it (unless ``extra`` names a DATABASE_URL of its own)."""
    env = {
        "SAFERELAY_DATA_DIR": str(data_dir),
        "SAFERELAY_SECRETS_DIR": str(secrets_of(data_dir)),
        **({"DATABASE_URL": _DATABASE_OF[data_dir]} if data_dir in _DATABASE_OF else {}),
        **extra,
    }
    if api is not None:
        env |= {"TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.base_url}
    return load_settings(env)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the whole session (started on first use), stopped at the end."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def _run_async(coroutine: Awaitable[object]) -> None:
    """Run a coroutine to completion from synchronous code, in a thread of its own (a
    session fixture may be set up while a test's event loop is running)."""

    async def wrapped() -> None:
        await coroutine

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, wrapped()).result()


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresCluster) -> str:
    """A database migrated to the newest revision once, that each test's database copies."""
    name = postgres.create_database(TEMPLATE)

    async def migrated() -> None:
        engine = make_engine(postgres.url(name))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    _run_async(migrated())
    return name


@pytest.fixture
def postgres_url(postgres: PostgresCluster, postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test alone (dropped afterwards)."""
    name = postgres.create_database(template=postgres_template)
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


@pytest.fixture
def empty_postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    """A fresh PostgreSQL database with no schema at all (migration and restore tests)."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


@pytest.fixture
def data_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh data directory with keys; on the PostgreSQL pass also a fresh database."""
    path = tmp_path / "data"
    make_keys(path)
    if TEST_DATABASE == "postgresql":
        _DATABASE_OF[path] = request.getfixturevalue("postgres_url")
    try:
        yield path
    finally:
        _DATABASE_OF.pop(path, None)


@pytest.fixture
async def core(data_dir: Path) -> AsyncIterator[Core]:
    """The services' wiring on a migrated database, without Telegram (service tests)."""
    core = build_core(make_settings(data_dir))
    await migrate(core.engine)
    try:
        yield core
    finally:
        await core.engine.dispose()


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


async def seed_people(
    core: Core,
    api: FakeBotApi,
    count: int,
    first_uid: int,
    role: Role = Role.MEMBER,
    language: str = "en",
) -> list[tuple[str, FakeUser]]:
    """``count`` people straight into the database, as enrolment would leave them, and their
    chats opened on the fake server (also for tests whose bot runs in another process)."""
    from bot.people import chat_place

    keys = core.secrets
    people: list[tuple[str, FakeUser]] = []
    async with core.sessions() as session, session.begin():
        for n in range(count):
            uid = first_uid + n
            person_id = new_id()
            session.add(
                Person(
                    id=person_id,
                    tg_lookup=keys.pepper.user_lookup(uid),
                    chat_ref=keys.server_box.seal_int(uid, chat_place(person_id)),
                    role=role.value,
                    pseudonym=f"Seeded {uid}",
                    language=language,
                    language_chosen=True,
                )
            )
            user = api.user(uid, f"U{uid}", language_code=language)
            user.started = True  # as if they had written /start
            people.append((person_id, user))
    return people


@dataclass
class RunningBot:
    """The real Application, polling the fake server, with its log output captured."""

    api: FakeBotApi
    app: SafeApplication
    settings: Settings
    log: io.StringIO

    @property
    def core(self) -> Any:
        return self.app.bot_data["core"]

    def opener(self) -> TeamOpener:
        return unlock_team_key(team_key_of(self.settings.data_dir), PASSPHRASE)

    async def drained(self) -> None:
        """Until the outbox has nothing pending. A message shows in the fake chat a moment
        before the sender records it as delivered (which is what makes it answerable), so
        tests that answer an alert at machine speed wait for this first."""
        from sqlalchemy import func, select

        from storage.models import OutboxItem

        async def pending() -> int:
            async with self.core.sessions() as session:
                query = select(func.count()).select_from(OutboxItem)
                return int(await session.scalar(query.where(OutboxItem.status == "pending")) or 0)

        async with asyncio.timeout(10):
            while await pending():  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.01)

    async def invite(self, role: Role = Role.MEMBER, *, hours: int = 72) -> str:
        async with self.core.sessions() as session, session.begin():
            made = await create_invite(session, self.core.secrets, role, hours=hours)
        token: str = made.token
        return token

    async def enrol(
        self,
        user: FakeUser,
        role: Role = Role.MEMBER,
        language: str = "ko",
        *,
        token: str | None = None,
        name: str | None = None,
    ) -> None:
        """Drive a newcomer through the invite link and the language buttons; staff also
        choose the name members see (``name``, or "Staff <id>")."""
        await user.send_command("start", token or await self.invite(role))
        label = LANGUAGE_BUTTON[language]
        await self.api.wait_for(
            lambda: any(text == label for m in user.inbox() for text, _ in m.buttons())
        )
        await user.press(label)
        await self.api.wait_idle()
        if role is not Role.MEMBER:
            await user.send_text(name or f"Staff {user.user_id}")
            await self.api.wait_idle()

    async def seed(
        self, count: int, first_uid: int, role: Role = Role.MEMBER, language: str = "en"
    ) -> list[tuple[str, FakeUser]]:
        """``count`` people written straight into the database, as enrolment would leave
        them, and their chats opened on the fake server: for tests and benchmarks of the
        outbox that need thousands of recipients (enrolling each through an invite would
        take minutes and test nothing more)."""
        return await seed_people(self.core, self.api, count, first_uid, role, language)

    async def queue(self, person_ids: list[str], text: str, priority: int) -> float:
        """Put one message per person in the outbox in one transaction, wake the sender,
        and return the moment (monotonic) they were committed."""
        from bot.delivery import Outgoing, enqueue

        async with self.core.sessions() as session, session.begin():
            for person_id in person_ids:
                enqueue(session, self.core.secrets, person_id, Outgoing(text, priority=priority))
        committed = time.monotonic()
        self.app.bot_data["sender"].wake()
        return committed


async def start_bot(api: FakeBotApi, settings: Settings) -> SafeApplication:
    """What run_polling (or, with SAFERELAY_WEBHOOK_URL, run_without_polling) does, step by step,
    without taking over the event loop."""
    app = build_application(settings)
    await app.initialize()
    assert app.post_init is not None
    await app.post_init(app)
    await app.start()
    if app.updater is not None:
        await app.updater.start_polling(
            poll_interval=0.0, timeout=1, allowed_updates=ALLOWED_UPDATES
        )
    return app


stop_bot = shut_down  # the tests stop the bot exactly as ``saferelay run`` does


def free_port() -> int:
    """A port nobody listens on now, for a webhook URL that must name it before the bot
    binds it (the same as an operator choosing one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def bot(
    api: FakeBotApi, data_dir: Path, request: pytest.FixtureRequest
) -> AsyncIterator[RunningBot]:
    """The bot, with settings from ``@pytest.mark.bot_env(NAME="value", ...)`` if given."""
    log = io.StringIO()
    forget_remembered()
    handler = configure_logging(logging.DEBUG, log)
    marker = request.node.get_closest_marker("bot_env")
    settings = make_settings(data_dir, api, **(marker.kwargs if marker else {}))
    app = await start_bot(api, settings)
    try:
        yield RunningBot(api=api, app=app, settings=settings, log=log)
    finally:
        await stop_bot(app)
        logging.getLogger().removeHandler(handler)
