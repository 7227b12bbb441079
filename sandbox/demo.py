"""``saferelay demo``: the real bot against the local Bot API, and a page of phones on
127.0.0.1 to drive it.

Everything runs in one process and one event loop: the fake Bot API (sandbox.server), the
real ``build_application`` polling it, and the page (sandbox.page) that shows each fake
user's chat and turns clicks into that user's updates. No token, no network: only sockets on
127.0.0.1.

What it sets up, in order:

* a throwaway directory (``saferelay-demo-*`` in the system's temp dir), or ``--data DIR`` to
  keep one; inside it ``data/`` (the database) and, beside it, ``secrets/`` and the team key
  file, as ``saferelay init`` would lay them out (the secrets apart from the data);
* keys under a generated passphrase, printed once;
* demo timers: a member's chat clears after 2 minutes, an unclaimed "right now" request
  escalates after 1, the sweeps look every few seconds;
* the sample people, enrolled through real invites: the admin's comes from the shell's path
  (``saferelay invite --role admin``), the caseworker's from the admin's ``/invite
  caseworker``, the members' from the caseworker's ``/invite``; each member picks the
  language their Telegram reports (ko, en, zh) on the real language buttons;
* a stranger, who has never been invited.

Ctrl-C or SIGTERM stops the page, the bot and the Bot API, and removes the throwaway
directory (a kept ``--data`` directory stays). A SIGKILL cannot be caught: the directory is
then left in the temp dir, holding only the sample people's sealed data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.pwhash
from sqlalchemy import select

from bot.app import SafeApplication, build_application, shut_down
from bot.core import Core
from bot.i18n import LANGUAGE_NAMES
from bot.logs import configure_logging
from bot.people import create_invite
from bot.settings import Settings, load_settings
from crypto.errors import KeyFileError
from crypto.keyfile import KdfCost, check_passphrase
from crypto.keystore import TEAM_KEY_FILE, SecretsDir
from crypto.pseudonyms import ADJECTIVES, NOUNS
from sandbox.models import ChatMessage
from sandbox.server import FakeBotApi, FakeUser
from storage.models import Person, Role

log = logging.getLogger(__name__)

BOT_USERNAME = "saferelay_demo_bot"
# Demo timers (the product's defaults are 10 minutes and 15): short enough to watch.
DEMO_ENV = {
    "SAFERELAY_CLEAR_AFTER_MINUTES": "2",
    "SAFERELAY_ESCALATE_MINUTES": "1",
    # How often the escalation sweep looks; deletions are looked at at least this often.
    "SAFERELAY_SWEEP_SECONDS": "5",
}
# The team key of a demo guards only the sample people's sealed answers, and the person
# trying the demo waits for it: Argon2id at libsodium's interactive cost (64 MiB, well
# under a second) rather than the product's 1 GiB.
DEMO_KDF = KdfCost(
    nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
)
ENROL_TIMEOUT = 20.0
# Fake Telegram user ids: the sample people have fixed ones (so a kept --data directory
# finds them again by their keyed hash), people added from the page count up from ADDED.
FIRST_ID = 7_100_000_001
ADDED = 7_100_000_101


@dataclass
class Pane:
    """One phone on the page: a fake Telegram user and what the page calls them."""

    key: str
    label: str
    role: str  # "admin", "caseworker", "member" or "stranger"
    user: FakeUser

    @property
    def language(self) -> str:
        return self.user.language_code or "en"


@dataclass(frozen=True)
class Sample:
    key: str
    label: str
    role: Role | None  # None: a stranger
    language: str
    first_name: str
    staff_name: str | None = None


SAMPLES = (
    Sample("admin", "Admin", Role.ADMIN, "en", "Jiwoo", staff_name="Jiwoo"),
    Sample("caseworker", "Caseworker", Role.CASEWORKER, "en", "Mina", staff_name="Mina"),
    Sample("member-ko", "Member · 한국어", Role.MEMBER, "ko", "Eun-ji"),
    Sample("member-en", "Member · English", Role.MEMBER, "en", "Grace"),
    Sample("member-zh", "Member · 中文", Role.MEMBER, "zh", "Xiaoli"),
    Sample("stranger", "Stranger", None, "en", "Stranger"),
)


def generate_passphrase() -> str:
    """Six everyday words and a number from the pseudonym lists: easy to copy down, and
    well past the key file's strength check (about 80 bits)."""
    while True:
        words = [secrets.choice(ADJECTIVES if n % 2 == 0 else NOUNS) for n in range(6)]
        passphrase = "-".join(w.lower() for w in words) + f"-{secrets.randbelow(10_000):04d}"
        with contextlib.suppress(KeyFileError):
            check_passphrase(passphrase)
            return passphrase


def _demo_token() -> str:
    """A fresh bot token each run: nobody else on the machine can poll this Bot API."""
    bot_id = 7_000_000_000 + secrets.randbelow(999_999_999)
    return f"{bot_id}:{secrets.token_urlsafe(30)}"


@dataclass
class Layout:
    root: Path
    throwaway: bool

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def team_key(self) -> Path:
        return self.root / TEAM_KEY_FILE


def make_layout(keep: Path | None) -> Layout:
    if keep is None:
        return Layout(Path(tempfile.mkdtemp(prefix="saferelay-demo-")), throwaway=True)
    keep.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Layout(keep.resolve(), throwaway=False)


@dataclass
class Demo:
    """The running demo: Bot API, bot, panes. Create with :func:`start_demo`."""

    api: FakeBotApi
    app: SafeApplication
    settings: Settings
    layout: Layout
    passphrase: str | None
    panes: dict[str, Pane] = field(default_factory=dict)
    changed: Callable[[], None] = lambda: None
    """Set by the page: called after anything a pane's user does (the bot's side is seen
    through :meth:`FakeBotApi.observe`)."""
    _next_id: int = ADDED
    _adding: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def core(self) -> Core:
        core: Core = self.app.bot_data["core"]
        return core

    def label_of(self, chat_id: Any) -> str:
        """What the API log shows for a chat: the pane's label, never the id."""
        for pane in self.panes.values():
            if pane.user.chat_id == chat_id:
                return pane.label
        return "—" if chat_id is None else "another chat"

    def label_of_query(self, query_id: Any) -> str:
        """Whose button press a callback answer is for (the call names no chat)."""
        for pane in self.panes.values():
            if any(a["callback_query_id"] == query_id for a in pane.user.answered_callbacks()):
                return pane.label
        return "—"

    # -- people ------------------------------------------------------------------------

    def _new_user(self, user_id: int, sample: Sample) -> FakeUser:
        return self.api.user(user_id, sample.first_name, language_code=sample.language)

    async def _enrolled(self, user_id: int) -> Person | None:
        lookup = self.core.secrets.pepper.user_lookup(user_id)
        async with self.core.sessions() as session:
            person: Person | None = await session.scalar(
                select(Person).where(Person.tg_lookup == lookup)
            )
            return person

    async def _shell_invite(self, role: Role) -> str:
        """The path of ``saferelay invite --role ...`` at the server's shell."""
        async with self.core.sessions() as session, session.begin():
            made = await create_invite(session, self.core.secrets, role, hours=24)
        token: str = made.token
        return token

    async def _chat_invite(self, inviter: FakeUser, role: Role) -> str:
        """An invite made in the inviter's chat with ``/invite``, as staff make them."""
        before = inviter.inbox()[-1] if inviter.inbox() else None
        await inviter.send_command("invite", None if role is Role.MEMBER else role.value)
        self.changed()
        message = await inviter.wait_for_message("?start=", since=before, timeout=ENROL_TIMEOUT)
        return (message.text or "").rsplit("?start=", 1)[1].split()[0].strip()

    async def _redeem(self, user: FakeUser, token: str, *, language: str | None) -> None:
        """``/start <token>``; then, unless the person is left to choose on the page, the
        language their Telegram reports, on the real buttons."""
        await user.send_command("start", token)
        self.changed()
        if language is None:
            return
        label = LANGUAGE_NAMES[language]
        await self.api.wait_for(
            lambda: any(text == label for m in user.inbox() for text, _ in m.buttons()),
            timeout=ENROL_TIMEOUT,
        )
        await user.press(label)
        self.changed()
        await self.api.wait_idle(timeout=ENROL_TIMEOUT)

    async def _name_staff(self, user: FakeUser, name: str) -> None:
        await user.send_text(name)
        self.changed()
        await self.api.wait_idle(timeout=ENROL_TIMEOUT)

    async def enrol_samples(self) -> None:
        """The sample people, each through a real invite; those a kept data directory
        already holds are only given their panes back."""
        inviter_of = {Role.ADMIN: None, Role.CASEWORKER: "admin", Role.MEMBER: "caseworker"}
        for n, sample in enumerate(SAMPLES):
            user = self._new_user(FIRST_ID + n, sample)
            self.panes[sample.key] = Pane(sample.key, sample.label, sample.key.split("-")[0], user)
            if sample.role is None:
                continue
            if await self._enrolled(user.user_id) is not None:
                user.started = True  # they wrote to the bot in an earlier run
                continue
            inviter = inviter_of[sample.role]
            if inviter is None:
                token = await self._shell_invite(sample.role)
            else:
                token = await self._chat_invite(self.panes[inviter].user, sample.role)
            await self._redeem(user, token, language=sample.language)
            if sample.staff_name is not None:
                await self._name_staff(user, sample.staff_name)
        await self._restore_added()
        self.changed()

    async def _restore_added(self) -> None:
        """Members added from the page in an earlier run of a kept data directory."""
        while (person := await self._enrolled(self._next_id)) is not None:
            number = self._next_id - ADDED + 1
            user = self.api.user(self._next_id, f"Member {number}", language_code=person.language)
            user.started = True
            key = f"added-{number}"
            label = f"Member {number} · {LANGUAGE_NAMES.get(person.language, person.language)}"
            self.panes[key] = Pane(key, label, "member", user)
            self._next_id += 1

    async def add_member(self, language: str) -> Pane:
        """A new phone that redeems a fresh invite from the caseworker's chat, then picks
        its language on the page."""
        if language not in LANGUAGE_NAMES:
            raise ValueError(language)
        async with self._adding:
            number = self._next_id - ADDED + 1
            user = self.api.user(self._next_id, f"Member {number}", language_code=language)
            self._next_id += 1
            key = f"added-{number}"
            pane = Pane(key, f"Member {number} · {LANGUAGE_NAMES[language]}", "member", user)
            self.panes[key] = pane
            self.changed()
            token = await self._chat_invite(self.panes["caseworker"].user, Role.MEMBER)
            await self._redeem(user, token, language=None)
            return pane

    def add_stranger(self, language: str) -> Pane:
        """A new phone that was never invited."""
        if language not in LANGUAGE_NAMES:
            raise ValueError(language)
        number = self._next_id - ADDED + 1
        user = self.api.user(self._next_id, f"Stranger {number}", language_code=language)
        self._next_id += 1
        key = f"stranger-{number}"
        pane = Pane(key, f"Stranger {number} · {LANGUAGE_NAMES[language]}", "stranger", user)
        self.panes[key] = pane
        self.changed()
        return pane

    # -- what a pane's user does -------------------------------------------------------

    def pane(self, key: str) -> Pane:
        try:
            return self.panes[key]
        except KeyError:
            raise LookupError(key) from None

    async def send(self, key: str, text: str, reply_to: int | None = None) -> ChatMessage:
        user = self.pane(key).user
        keyboard = user.reply_keyboard() or []
        if reply_to is None and any(text in row for row in keyboard):
            sent = await user.tap(text)
        else:
            sent = await user.send_text(text, reply_to=reply_to)
        self.changed()
        return sent

    async def press(self, key: str, message_id: int, data: str) -> None:
        user = self.pane(key).user
        message = next(
            (m for m in user.inbox() if m.message_id == message_id),
            None,
        )
        if message is None:
            raise LookupError("message")
        await user.press(data, message=message, timeout=0)
        self.changed()


async def _start_bot(settings: Settings) -> SafeApplication:
    """What ``run_polling`` does, step by step, inside our own event loop."""
    app = build_application(settings)
    await app.initialize()
    assert app.post_init is not None
    await app.post_init(app)
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0.0, timeout=10)
    return app


def _make_keys(layout: Layout) -> str | None:
    """Keys under a new passphrase (returned); ``None`` when a kept directory has them."""
    secrets_dir = SecretsDir(layout.secrets_dir)
    if secrets_dir.exists():
        return None
    passphrase = generate_passphrase()
    layout.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets_dir.create(layout.team_key, passphrase, DEMO_KDF)
    return passphrase


async def start_demo(layout: Layout, timers: Mapping[str, str] | None = None) -> Demo:
    """Keys, Bot API and bot; the people come with :meth:`Demo.enrol_samples`. ``timers``
    override the demo's settings (tests watch a chat clear in seconds)."""
    passphrase = await asyncio.to_thread(_make_keys, layout)
    layout.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    api = FakeBotApi(_demo_token(), BOT_USERNAME, bot_first_name="SafeRelay", control_api=False)
    await api.start()
    env = {
        "SAFERELAY_DATA_DIR": str(layout.data_dir),
        "SAFERELAY_SECRETS_DIR": str(layout.secrets_dir),
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_BASE_URL": api.base_url,
        **DEMO_ENV,
        **(timers or {}),
    }
    try:
        settings = load_settings(env)
        app = await _start_bot(settings)
    except BaseException:
        await api.stop()
        raise
    return Demo(api=api, app=app, settings=settings, layout=layout, passphrase=passphrase)


async def stop_demo(demo: Demo) -> None:
    try:
        await asyncio.wait_for(shut_down(demo.app), timeout=15)
    finally:
        await demo.api.stop()


async def run_demo(
    *, port: int = 0, keep: Path | None = None, ready: Callable[[str], None] | None = None
) -> None:
    """Run until Ctrl-C or SIGTERM; print the page's address (and the passphrase, once)."""
    from sandbox.page import DemoPage

    configure_logging(logging.WARNING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C and SIGTERM set an event rather than interrupting what is running, so the
    # shutdown below always runs to its end and the throwaway directory goes with it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    layout = make_layout(keep)
    try:
        print(
            "Starting the demo: keys, a local Bot API, the bot, and six phones…",
            file=sys.stderr,
            flush=True,
        )
        demo = await start_demo(layout)
        page = DemoPage(demo)
        try:
            # The page watches from the start, so its API log shows the enrolments too.
            await page.start(port)
            await demo.enrol_samples()
            _announce(demo, page.url)
            if ready is not None:
                ready(page.url)
            await stop.wait()
            print("\nStopping…", file=sys.stderr, flush=True)
        finally:
            await page.stop()
            await stop_demo(demo)
    finally:
        if layout.throwaway:
            shutil.rmtree(layout.root, ignore_errors=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if layout.throwaway:
        print("Stopped; the demo's directory is gone.", file=sys.stderr, flush=True)
    else:
        print(f"Stopped; the demo's data stays in {layout.root}.", file=sys.stderr, flush=True)


def _announce(demo: Demo, url: str) -> None:
    out = sys.stderr
    if demo.passphrase is not None:
        print(
            f"Team passphrase (shown once; it opens {demo.layout.team_key.name}): "
            f"{demo.passphrase}",
            file=out,
        )
    where = "removed when you stop" if demo.layout.throwaway else "kept"
    print(f"Demo data in {demo.layout.root} ({where}).", file=out)
    print(
        "Chats clear after 2 minutes; an unclaimed 'right now' request escalates after 1.",
        file=out,
    )
    print("Open this address in a browser on this machine; Ctrl-C stops everything.", file=out)
    # The one line on stdout: the address, so a script can read it.
    print(url, flush=True)
