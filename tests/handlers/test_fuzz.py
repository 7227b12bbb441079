"""Fuzz the handlers with random and malformed updates (Hypothesis): no crash, no unexpected
row, no reply leaks anything to a stranger.

Each Hypothesis example starts a fresh bot -- the real Application polling the fake Bot API
on 127.0.0.1, so the real PTB HTTP path runs -- enrols a small team through real invites,
then plays a generated list of actions: well-formed and malformed messages, commands,
button presses (real, repeated and forged), media, edits, group and channel posts, other
bots, inline queries and member updates, from the team and from strangers. After every
action it waits for the bot to go idle and looks for an error in the log; after the whole
list it checks the database, every call the bot made and every stranger's chat.

The examples are derandomized (the same on every run) and not shrunk (one example takes
seconds); a failure names the action that caused it. The bugs it found are reproduced one
by one at the end of this file, as regression tests.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.cases import CATEGORIES, URGENCIES
from bot.i18n import t
from bot.logs import NOISY, configure_logging, forget_remembered
from bot.people import find_actor
from sandbox import (
    DEFAULT_TOKEN,
    MEDIA_KINDS,
    FakeBotApi,
    FakeUser,
    command_entities,
    utf16_len,
)
from sandbox import ChatMessage as FakeMessage
from storage.models import (
    Case,
    ChatMessage,
    CheckIn,
    Invite,
    Note,
    OutboxItem,
    Person,
    Role,
)
from tests.conftest import (
    RunningBot,
    make_keys,
    make_settings,
    start_bot,
    stop_bot,
)
from tests.handlers.conftest import ask, staff_invite

MAX_TEXT = 4096  # Telegram's limit for one message
STRANGER_LINES = frozenset(t(lang, "stranger") for lang in ("ko", "en", "zh"))
NOT_MODIFIED = "message is not modified"
BOT_ID = int(DEFAULT_TOKEN.split(":")[0])


@dataclass(frozen=True)
class Teammate:
    key: str
    user_id: int
    language: str
    role: Role
    name: str | None = None


# The team every example enrols: an admin, a caseworker, a member the caseworker invited
# and a member invited from the shell (no caseworker: their messages go to all staff).
TEAM = (
    Teammate("admin", 610001, "en", Role.ADMIN, "Coordinator"),
    Teammate("caseworker", 610002, "ko", Role.CASEWORKER, "Mina"),
    Teammate("member", 610003, "zh", Role.MEMBER),
    Teammate("lone", 610004, "en", Role.MEMBER),
)
TEAM_IDS = frozenset(p.user_id for p in TEAM)
STAFF_KEYS = ("admin", "caseworker")

# ---------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------

# Telegram sends valid UTF-8 only: no lone surrogates; and no NUL.
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
SPECIAL_TEXTS = (
    "",
    " ",
    "\n\t \n",
    "\u200b",
    "\u200b\u200c\u200d\ufeff",
    "\u202eevil.exe\u202c",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466" * 20,
    "e\u0301" * 50,
    "<b>bold</b> & <i>",
    "*_`[]()~>#+-=|{}.!\\",
    "/",
    "//",
    "/ start",
    "@",
    "@saferelay_test_bot",
    "https://t.me/saferelay_test_bot?start=abc",
    "\r\n",
    "\U0001f9f9",
    "%s %d {} {0} {name}",
    "' OR 1=1 --",
    "a" * 4096,
    "a" * 4097,
    "\uac00" * 5000,
    "\U0001f600" * 3000,
    "line\n" * 900,
)


def long_texts() -> st.SearchStrategy[str]:
    return st.builds(
        lambda chunk, size: (chunk * (size // len(chunk) + 1))[:size],
        st.text(CHARS, min_size=1, max_size=8),
        st.integers(1000, 5000),
    )


TEXTS = st.one_of(
    st.text(CHARS, max_size=60),
    st.sampled_from(SPECIAL_TEXTS),
    st.text(CHARS, max_size=400),
    long_texts(),
)

COMMANDS = (
    "start",
    "checkin",
    "ask",
    "cases",
    "invite",
    "revoke",
    "forget",
    "settings",
    "clear",
    "menu",
    "language",
    "cancel",
    "name",
)
# Placeholders in {braces} are filled in at run time (see Fuzzer.fill).
COMMAND_ARGS = st.one_of(
    st.none(),
    st.sampled_from(
        (
            "admin",
            "caseworker",
            "member",
            "ADMIN",
            "\uff21\uff24\uff2d\uff29\uff2e",
            "x",
            "Coordinator",
            "Mina",
            "{member_pseudonym}",
            "{lone_pseudonym}",
            "{member_pid}",
            "' OR 1=1 --",
            "a" * 64,
            "a" * 65,
            "A-_" * 30,
        )
    ),
    st.text(CHARS, max_size=80),
    long_texts(),
)
COMMAND_SUFFIXES = ("", "@saferelay_test_bot", "@SafeRelay_Test_Bot", "@other_bot")


@st.composite
def command_texts(draw: st.DrawFn) -> str:
    name = draw(
        st.one_of(st.sampled_from(COMMANDS), st.from_regex(r"[a-z_]{1,32}", fullmatch=True))
    )
    suffix = draw(st.sampled_from(COMMAND_SUFFIXES))
    arg = draw(COMMAND_ARGS)
    separator = draw(st.sampled_from((" ", " ", "  ", "\n", "\u00a0", "\t")))
    return f"/{name}{suffix}" + (f"{separator}{arg}" if arg is not None else "")


PLAUSIBLE_DATA = (
    "menu:checkin",
    "menu:ask",
    "menu:clear",
    "menu:settings",
    "menu:language",
    *(f"ci:h:{n}" for n in range(10)),
    "ci:t:yes",
    "ci:t:no",
    "ci:t:maybe",
    "ci:skip",
    *(f"ask:c:{c}" for c in CATEGORIES),
    "ask:c:weapons",
    *(f"ask:u:{u}" for u in URGENCIES),
    "ask:u:never",
    "ask:skip",
    "case:claim:{case}",
    "case:resolve:{case}",
    "case:claim:doesnotexist0000000000",
    "case:resolve:' OR 1=1 --",
    "case:claim:" + "A" * 40,
    "case:claim:" + "A" * 41,
    "case:drop:{case}",
    "rp",
    "rp:x",
    *(f"set:clear:{m}" for m in (2, 3, 10, 60, 1440, -1)),
    "set:word:code",
    "set:word:duress",
    "set:word:none",
    "set:word:other",
    "forget:me",
    "forget:me:yes",
    "forget:no",
    "forget:p:x:yes",
    "forget:p:{member_pid}:yes",
    "forget:p:{admin_pid}:yes",
    "forget:p:{self_pid}:yes",
    "forget:p:../../etc:yes",
    "lang:ko",
    "lang:en",
    "lang:zh",
    "lang:xx",
    "lang:",
    "lang:en:x",
)


def _fit_64_bytes(text: str) -> str:
    return text.encode("utf-8")[:64].decode("utf-8", "ignore")


CALLBACK_DATA = st.one_of(
    st.sampled_from(PLAUSIBLE_DATA),
    st.text(CHARS, max_size=64).map(_fit_64_bytes),
)

SENDERS = st.sampled_from(
    ("admin", "caseworker", "member", "member", "lone", "s0", "s1", "s2", "s3", "s4")
)
PRIVATE_STYLES = st.sampled_from(("client", "client", "raw", "bare", "formatted", "reply"))
EXTRA_MEDIA = ("venue", "dice", "video_note", "animation", "audio", "contact_other")


# Well-formed conversations with random content: a check-in, a help request, a staff
# answer, a safety word (set, then typed), the /cases buttons.
FLOWS = ("checkin", "ask", "answer", "word", "cases")


@dataclass(frozen=True)
class Action:
    """One thing that happens to the bot. ``sender`` is a TEAM key, or ``sN`` (stranger N)."""

    sender: str
    kind: str
    text: str | None = None
    style: str = "client"
    data: str | None = None
    pick: int = 0
    double: bool = False

    def __repr__(self) -> str:
        def short(value: str | None) -> str:
            if value is None or len(value) <= 80:
                return repr(value)
            return f"{value[:40]!r}...({len(value)} chars)"

        return (
            f"Action({self.sender!r}, {self.kind!r}, text={short(self.text)}, "
            f"style={self.style!r}, data={short(self.data)}, pick={self.pick}, "
            f"double={self.double})"
        )


def actions() -> st.SearchStrategy[Action]:
    pick = st.integers(0, 50)
    texts = st.builds(Action, SENDERS, st.just("text"), TEXTS, PRIVATE_STYLES, pick=pick)
    commands = st.builds(
        Action, SENDERS, st.just("text"), command_texts(), PRIVATE_STYLES, pick=pick
    )
    presses = st.builds(Action, SENDERS, st.just("press"), pick=pick, double=st.booleans())
    forged = st.builds(
        Action, SENDERS, st.just("forge"), data=CALLBACK_DATA, pick=pick, double=st.booleans()
    )
    rare = st.one_of(
        st.builds(
            Action,
            SENDERS,
            st.just("media"),
            st.one_of(st.none(), TEXTS),
            st.sampled_from(("client", "raw")),
            data=st.sampled_from(MEDIA_KINDS + EXTRA_MEDIA),
        ),
        st.builds(Action, SENDERS, st.just("inline_callback"), data=CALLBACK_DATA),
        st.builds(Action, SENDERS, st.just("edited"), st.one_of(TEXTS, command_texts())),
        st.builds(
            Action,
            SENDERS,
            st.just("group"),
            st.one_of(TEXTS, command_texts()),
            st.sampled_from(("group", "supergroup", "channel")),
            pick=pick,
        ),
        st.builds(Action, SENDERS, st.just("no_from"), st.one_of(TEXTS, command_texts())),
        st.builds(Action, SENDERS, st.just("from_bot"), st.one_of(TEXTS, command_texts())),
        st.builds(Action, SENDERS, st.just("forwarded"), st.one_of(TEXTS, command_texts())),
        st.builds(
            Action, SENDERS, st.just("chat_member"), style=st.sampled_from(("kicked", "member"))
        ),
        st.builds(Action, SENDERS, st.just("inline_query"), TEXTS),
    )
    flows = st.builds(
        Action,
        SENDERS,
        st.just("flow"),
        st.one_of(st.none(), TEXTS),
        st.sampled_from(FLOWS),
        pick=pick,
        double=st.booleans(),
    )
    # Most updates are texts, commands, button presses and whole flows; the rest share a
    # sixth.
    weighted = {"text": 4, "command": 4, "press": 4, "forge": 3, "flow": 5, "rare": 4}
    branches = {
        "text": texts,
        "command": commands,
        "press": presses,
        "forge": forged,
        "flow": flows,
        "rare": rare,
    }
    names = [name for name, weight in weighted.items() for _ in range(weight)]
    return st.sampled_from(names).flatmap(branches.__getitem__)


@dataclass(frozen=True)
class Stranger:
    user_id: int
    first_name: str
    last_name: str | None
    username: str | None
    language_code: str | None


STRANGERS = st.lists(
    st.builds(
        Stranger,
        st.integers(100_000, 2**40).filter(lambda i: i not in TEAM_IDS and i != BOT_ID),
        st.text(CHARS, min_size=1, max_size=64),
        st.one_of(st.none(), st.text(CHARS, min_size=1, max_size=64)),
        st.one_of(st.none(), st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{4,31}", fullmatch=True)),
        st.sampled_from((None, "", "ko", "en", "zh-hans", "en-US", "ru", "xx-yy")),
    ),
    min_size=2,
    max_size=5,
    unique_by=lambda s: s.user_id,
)

# ---------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------

ERROR_LINE = re.compile(r"^\S+ \S+ (?:ERROR|CRITICAL) .*$", re.MULTILINE)
EDITS = frozenset({"editmessagetext", "editmessagereplymarkup"})
BARE = ("bare", "formatted")  # styles whose text carries no (leading) command entity


def starts_with_start(text: str | None) -> bool:
    first = (text or "").split(maxsplit=1)
    return bool(first) and first[0].lower().startswith("/start")


def media_payload(kind: str, user: FakeUser, serial: int) -> dict[str, Any]:
    """Shapes of the message kinds the fake's send_media does not make."""
    file = {"file_id": f"FUZZ{kind}{serial}", "file_unique_id": f"U{serial}", "file_size": 1}
    if kind == "venue":
        location = {"latitude": 41.8, "longitude": 129.7}
        return {"venue": {"location": location, "title": "x", "address": "y"}, "location": location}
    if kind == "dice":
        return {"dice": {"emoji": "\U0001f3b2", "value": 4}}
    if kind == "video_note":
        return {"video_note": {**file, "length": 240, "duration": 3}}
    if kind == "animation":
        return {"animation": {**file, "width": 1, "height": 1, "duration": 1}}
    if kind == "audio":
        return {"audio": {**file, "duration": 1}}
    if kind == "contact_other":  # someone else's phone number and Telegram id
        return {"contact": {"phone_number": "+8613800138000", "first_name": "K", "user_id": 42}}
    if kind == "photo":
        return {"photo": [{**file, "width": 1, "height": 1}]}
    if kind == "sticker":
        sticker = {**file, "type": "regular", "width": 1, "height": 1}
        return {"sticker": {**sticker, "is_animated": False, "is_video": False}}
    if kind == "voice":
        return {"voice": {**file, "duration": 1}}
    if kind == "document":
        return {"document": file}
    if kind == "location":
        return {"location": {"latitude": 37.5, "longitude": 127.0}}
    if kind == "contact":
        return {"contact": {"phone_number": "+821000000000", "first_name": user.first_name}}
    raise ValueError(kind)


@dataclass
class Fuzzer:
    bot: RunningBot
    users: dict[str, FakeUser]
    strangers: list[FakeUser]
    person_ids: dict[str, str]
    raw_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1_000_000))
    private_writers: set[int] = field(default_factory=set)
    outsiders: set[int] = field(default_factory=set)  # group chats and other bots
    staff_invites: int = 0
    failures: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def api(self) -> FakeBotApi:
        return self.bot.api

    def user(self, sender: str) -> FakeUser:
        if sender.startswith("s"):
            return self.strangers[int(sender[1:]) % len(self.strangers)]
        return self.users[sender]

    async def is_stranger(self, user: FakeUser) -> bool:
        """Not enrolled now (never was, or was revoked or erased during this run)."""
        async with self.bot.core.sessions() as session:
            actor = await find_actor(session, self.bot.core.secrets, user.user_id)
        return actor is None

    async def fill(self, text: str, sender: str) -> str:
        """Replace {placeholders} with ids and pseudonyms that exist in this run."""
        if "{" not in text:
            return text
        async with self.bot.core.sessions() as session:
            case = await session.scalar(select(Case.id).order_by(Case.created_at.desc()))
            pseudonyms = {
                key: await session.scalar(select(Person.pseudonym).where(Person.id == pid))
                for key, pid in self.person_ids.items()
            }
        values = {
            "case": case or "nocase",
            "member_pid": self.person_ids["member"],
            "admin_pid": self.person_ids["admin"],
            "self_pid": self.person_ids.get(sender, "nobody"),
            "member_pseudonym": pseudonyms["member"] or "gone",
            "lone_pseudonym": pseudonyms["lone"] or "gone",
        }
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        return text

    def raw_message(
        self,
        user: FakeUser,
        text: str | None,
        *,
        entities: bool = True,
        chat: dict[str, Any] | None = None,
        sender: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self.raw_ids),
            "date": int(time.time()),
            "chat": chat if chat is not None else user.chat_dict(),
        }
        if sender is not None:
            message["from"] = sender
        if text is not None:
            message["text"] = text
            found = command_entities(text) if entities else []
            if found:
                message["entities"] = found
        message.update(extra)
        return message

    def started(self, user: FakeUser) -> None:
        """A private update from ``user``: from now on the bot may answer them."""
        user.started = True
        self.private_writers.add(user.user_id)

    async def play(self, action: Action) -> None:
        self.kinds[action.kind] += 1
        user = self.user(action.sender)
        text = await self.fill(action.text, action.sender) if action.text is not None else None
        data = await self.fill(action.data, action.sender) if action.data is not None else None
        if user.user_id in TEAM_IDS and user.user_id not in self.private_writers:
            self.started(user)
        if action.text is not None and "/invite" in (text or "") and action.sender in STAFF_KEYS:
            self.staff_invites += 1
        handler = getattr(self, f"_{action.kind}")
        await handler(action, user, text, data)

    async def _text(self, action: Action, user: FakeUser, text: str, data: None) -> None:
        visible = self.api.bot_messages(user.chat_id)
        target = visible[action.pick % len(visible)] if visible else None
        stripped = text.strip()
        if action.style in ("client", "reply") and stripped and len(stripped) <= MAX_TEXT:
            self.started(user)
            reply = target.message_id if action.style == "reply" and target else None
            await user.send_text(text, reply_to=reply)
            return
        self.started(user)
        extra: dict[str, Any] = {}
        if action.style == "reply" and target is not None:
            extra["reply_to_message"] = target.to_dict(with_reply=False)
        message = self.raw_message(
            user, text, entities=action.style != "bare", sender=user.to_dict(), **extra
        )
        if action.style == "formatted" and text:
            entities = message.setdefault("entities", [])
            entities.append({"type": "bold", "offset": 0, "length": utf16_len(text)})
        await self.api.inject_update({"message": message})

    async def _say(self, user: FakeUser, text: str | None, *, reply_to: int | None = None) -> None:
        """Send a text as a client would, or raw when no client could send it."""
        self.started(user)
        if text is not None and text.strip() and len(text.strip()) <= MAX_TEXT:
            await user.send_text(text, reply_to=reply_to)
        else:
            await self.api.inject_update(
                {"message": self.raw_message(user, text, sender=user.to_dict())}
            )
        await self.api.wait_idle(timeout=15, settle=0.02)

    async def _tap(self, user: FakeUser, data: str) -> bool:
        """Press the most recent visible button with this data, if there is one."""
        for message in reversed(self.api.bot_messages(user.chat_id)):
            if any(d == data for _, d in message.buttons()):
                await user.press(data, message=message)
                await self.api.wait_idle(timeout=15, settle=0.02)
                return True
        return False

    async def _flow(self, action: Action, user: FakeUser, text: str | None, data: None) -> None:
        pick, flow = action.pick, action.style
        if flow == "checkin":
            await self._say(user, "/checkin")
            await self._tap(user, f"ci:h:{pick % 5 + 1}")
            await self._tap(user, "ci:t:yes" if pick % 2 else "ci:t:no")
            if text is None:
                await self._tap(user, "ci:skip")
            else:
                await self._say(user, text)
        elif flow == "ask":
            await self._say(user, "/ask")
            await self._tap(user, f"ask:c:{CATEGORIES[pick % len(CATEGORIES)]}")
            await self._tap(user, f"ask:u:{URGENCIES[pick % len(URGENCIES)]}")
            if text is None:
                await self._tap(user, "ask:skip")
            else:
                await self._say(user, text)
        elif flow == "answer":
            # A Telegram reply to a relayed message or alert, or the Reply button then text.
            targets = [
                m
                for m in self.api.bot_messages(user.chat_id)
                if any(d == "rp" for _, d in m.buttons())
            ]
            if not targets:
                await self._say(user, text)
            elif action.double:
                await user.press("rp", message=targets[pick % len(targets)])
                await self.api.wait_idle(timeout=15, settle=0.02)
                await self._say(user, text)
            else:
                await self._say(user, text, reply_to=targets[pick % len(targets)].message_id)
        elif flow == "word":
            await self._say(user, "/settings")
            if await self._tap(user, "set:word:duress" if action.double else "set:word:code"):
                await self._say(user, text)
                await self._say(user, text)  # and now the word itself
        elif flow == "cases":
            await self._say(user, "/cases")
            verb = "claim" if pick % 2 else "resolve"
            buttons = [d for _, d in self._buttons(user) if d.startswith(f"case:{verb}:")]
            if buttons:
                await self._tap(user, buttons[pick % len(buttons)])

    async def _media(self, action: Action, user: FakeUser, caption: str | None, data: str) -> None:
        self.started(user)
        if action.style == "client" and data in MEDIA_KINDS:
            await user.send_media(data)
            return
        payload = media_payload(data, user, next(self.raw_ids))
        if caption:
            payload["caption"] = caption[:1024]
        message = self.raw_message(user, None, sender=user.to_dict(), **payload)
        await self.api.inject_update({"message": message})

    def _buttons(self, user: FakeUser) -> list[tuple[FakeMessage, str]]:
        return [
            (message, data)
            for message in self.api.bot_messages(user.chat_id)
            for _, data in message.buttons()
        ]

    async def _press(self, action: Action, user: FakeUser, text: None, data: None) -> None:
        buttons = self._buttons(user)
        if not buttons:  # nothing to press: ask for the menu instead
            self.started(user)
            await user.send_command("menu")
            return
        message, data = buttons[action.pick % len(buttons)]
        for _ in range(2 if action.double else 1):
            await user.press(data, message=message)

    async def _forge(self, action: Action, user: FakeUser, text: None, data: str) -> None:
        visible = self.api.bot_messages(user.chat_id)
        if not visible:
            await self._inline_callback(action, user, None, data)
            return
        message = visible[action.pick % len(visible)]
        for _ in range(2 if action.double else 1):
            await user.forge_press(data, message=message)

    async def _inline_callback(self, action: Action, user: FakeUser, text: None, data: str) -> None:
        query = {
            "id": str(next(self.raw_ids)),
            "from": user.to_dict(),
            "chat_instance": "-1",
            "inline_message_id": "AgAAAFuzzInline",
            "data": data,
        }
        await self.api.inject_update({"callback_query": query})

    async def _edited(self, action: Action, user: FakeUser, text: str, data: None) -> None:
        self.started(user)
        message = self.raw_message(user, text, sender=user.to_dict(), edit_date=int(time.time()))
        await self.api.inject_update({"edited_message": message})

    async def _group(self, action: Action, user: FakeUser, text: str, data: None) -> None:
        chat_id = -(1_000_000_000_000 + action.pick)
        chat = {"id": chat_id, "type": action.style, "title": "Fuzz group"}
        self.outsiders.add(chat_id)
        if action.style == "channel":
            message = self.raw_message(user, text, chat=chat, sender_chat=chat)
            await self.api.inject_update({"channel_post": message})
        else:
            message = self.raw_message(user, text, chat=chat, sender=user.to_dict())
            await self.api.inject_update({"message": message})

    async def _no_from(self, action: Action, user: FakeUser, text: str, data: None) -> None:
        await self.api.inject_update({"message": self.raw_message(user, text)})

    async def _from_bot(self, action: Action, user: FakeUser, text: str, data: None) -> None:
        bot_id = 9_000_000_000_000 + user.user_id
        self.outsiders.add(bot_id)
        robot = {"id": bot_id, "is_bot": True, "first_name": "Robot", "username": "robot_bot"}
        chat = {"id": bot_id, "type": "private", "first_name": "Robot"}
        message = self.raw_message(user, text, chat=chat, sender=robot)
        await self.api.inject_update({"message": message})

    async def _forwarded(self, action: Action, user: FakeUser, text: str, data: None) -> None:
        self.started(user)
        origin = {"type": "hidden_user", "sender_user_name": "Someone Else", "date": 0}
        message = self.raw_message(user, text, sender=user.to_dict(), forward_origin=origin)
        await self.api.inject_update({"message": message})

    async def _chat_member(self, action: Action, user: FakeUser, text: None, data: None) -> None:
        old, new = ("member", "kicked") if action.style == "kicked" else ("kicked", "member")
        me = self.api.bot_user_dict()
        update = {
            "chat": user.chat_dict(),
            "from": user.to_dict(),
            "date": int(time.time()),
            "old_chat_member": {
                "user": me,
                "status": old,
                **({"until_date": 0} if old == "kicked" else {}),
            },
            "new_chat_member": {
                "user": me,
                "status": new,
                **({"until_date": 0} if new == "kicked" else {}),
            },
        }
        await self.api.inject_update({"my_chat_member": update})

    async def _inline_query(self, action: Action, user: FakeUser, text: str, data: None) -> None:
        query = {"id": str(next(self.raw_ids)), "from": user.to_dict(), "query": text[:256]}
        await self.api.inject_update({"inline_query": {**query, "offset": ""}})

    async def step(self, action: Action) -> None:
        """Play one action, wait until the bot is idle, and attribute any error to it."""
        log_at, calls_at = len(self.bot.log.getvalue()), len(self.api.calls)
        await self.play(action)
        await self.api.wait_idle(timeout=15, settle=0.02)
        lines = ERROR_LINE.findall(self.bot.log.getvalue()[log_at:])
        if not lines:
            return
        failed = [c for c in self.api.calls[calls_at:] if c.status is not None and c.status >= 400]
        summary = "; ".join(c.summary() for c in failed) or "no failed call"
        self.failures.append(f"{action!r}\n    log: {lines}\n    failed calls: {summary}")


# ---------------------------------------------------------------------------------------
# one example: a fresh bot, a team, the actions, the checks
# ---------------------------------------------------------------------------------------


@contextmanager
def captured_logging() -> Iterator[io.StringIO]:
    """configure_logging at DEBUG into a buffer; the previous root setup is put back."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, {n: logging.getLogger(n).level for n in NOISY})
    stream = io.StringIO()
    forget_remembered()  # what earlier examples' senders wrote: scrub() walks all of it
    configure_logging(logging.DEBUG, stream)
    try:
        yield stream
    finally:
        forget_remembered()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


async def enrol_team(bot: RunningBot) -> dict[str, FakeUser]:
    users: dict[str, FakeUser] = {}
    for spec in TEAM:
        user = bot.api.user(spec.user_id, spec.key.title(), language_code=spec.language)
        token = await staff_invite(bot, users["caseworker"]) if spec.key == "member" else None
        await bot.enrol(user, spec.role, spec.language, token=token, name=spec.name)
        users[spec.key] = user
    # Something for the staff to claim, resolve and reply to from the start.
    await ask(users["lone"], "money", "week", "rent is due")
    await bot.api.wait_idle()
    return users


async def person_ids(bot: RunningBot) -> dict[str, str]:
    lookups = {bot.core.secrets.pepper.user_lookup(p.user_id): p.key for p in TEAM}
    async with bot.core.sessions() as session:
        people = list(await session.scalars(select(Person)))
    return {lookups[p.tg_lookup]: p.id for p in people}


async def table_rows(bot: RunningBot) -> dict[str, list[tuple[Any, ...]]]:
    async with bot.core.sessions() as session:
        return {
            "people": [(p.id,) for p in await session.scalars(select(Person))],
            "invites": [
                (i.id, i.created_by, i.role) for i in await session.scalars(select(Invite))
            ],
            "cases": [
                (c.id, c.member_id, c.claimed_by) for c in await session.scalars(select(Case))
            ],
            "checkins": [(c.id, c.person_id) for c in await session.scalars(select(CheckIn))],
            "notes": [(n.id, n.member_id, n.staff_id) for n in await session.scalars(select(Note))],
            "chat_messages": [
                (c.id, c.person_id, c.about_member_id)
                for c in await session.scalars(select(ChatMessage))
            ],
            "outbox": [
                (o.id, o.recipient_id, o.about_member_id)
                for o in await session.scalars(select(OutboxItem))
            ],
        }


async def run_example(strangers: list[Stranger], plan: list[Action], per_minute: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, captured_logging() as log:
        data_dir = Path(tmp) / "data"
        make_keys(data_dir)
        async with FakeBotApi() as api:
            settings_ = make_settings(data_dir, api, SAFERELAY_MESSAGES_PER_MINUTE=str(per_minute))
            app = await start_bot(api, settings_)
            bot = RunningBot(api=api, app=app, settings=settings_, log=log)
            try:
                await fuzz(bot, strangers, plan)
            finally:
                await stop_bot(app)


async def fuzz(bot: RunningBot, strangers: list[Stranger], plan: list[Action]) -> None:
    api = bot.api
    users = await enrol_team(bot)
    ids = await person_ids(bot)
    member_ids = {ids["member"], ids["lone"]}
    staff_ids = {ids["admin"], ids["caseworker"]}
    before = await table_rows(bot)
    fake_strangers = [
        api.user(
            s.user_id,
            s.first_name,
            last_name=s.last_name,
            username=s.username,
            language_code=s.language_code,
        )
        for s in strangers
    ]
    fuzzer = Fuzzer(bot, users, fake_strangers, ids)
    calls_at = len(api.calls)

    for action in plan:
        await fuzzer.step(action)
    await api.wait_idle(timeout=15)

    # The bot never crashed: still polling, and no handler failed in a way we don't know.
    assert bot.app.running and bot.app.updater is not None and bot.app.updater.running
    assert fuzzer.failures == [], "\n".join(fuzzer.failures)
    # ... nor anywhere else (the enrolment, the last deliveries).
    assert ERROR_LINE.findall(bot.log.getvalue()) == []

    # No unexpected row: nobody new, and whatever was written belongs to the team.
    after = await table_rows(bot)
    assert {p for (p,) in after["people"]} <= {p for (p,) in before["people"]}
    new_invites = set(after["invites"]) - set(before["invites"])
    assert len(new_invites) <= fuzzer.staff_invites
    for _, created_by, role in new_invites:
        assert created_by in staff_ids
        assert created_by == ids["admin"] or role == "member"
    everyone = member_ids | staff_ids
    assert {m for _, m, _ in after["cases"]} <= member_ids
    assert {c for _, _, c in after["cases"]} <= staff_ids | {None}
    assert {p for _, p in after["checkins"]} <= member_ids
    assert {m for _, m, _ in after["notes"]} <= member_ids
    assert {s for _, _, s in after["notes"]} <= staff_ids | {None}
    assert {p for _, p, _ in after["chat_messages"]} <= everyone
    assert {r for _, r, _ in after["outbox"]} <= everyone
    assert {a for _, _, a in after["outbox"]} <= member_ids | {None}
    # A message about a member sits only in a staff chat.
    assert {(s, m) for _, s, m in after["chat_messages"] if m is not None} <= {
        (s, m) for s in staff_ids for m in member_ids
    }

    # Strangers see the one neutral line, nothing else, and buttons answer them with nothing.
    for stranger in fake_strangers:
        texts = [m.text for m in api.bot_messages(stranger.chat_id, include_deleted=True)]
        assert set(texts) <= STRANGER_LINES, (stranger, texts)
        for answer in stranger.answered_callbacks():
            assert answer["text"] is None and not answer["show_alert"], answer

    # Nothing goes to a group, a channel, another bot or anyone who never wrote privately;
    # every message is protected and fits in one Telegram message -- except an invite link
    # shown to staff, which they must be able to forward to the person it is for.
    allowed_chats = TEAM_IDS | fuzzer.private_writers
    staff_chats = {p.user_id for p in TEAM if p.role is not Role.MEMBER}
    for call in api.calls[calls_at:]:
        chat_id = call.params.get("chat_id")
        if chat_id is not None:
            assert chat_id in allowed_chats and chat_id not in fuzzer.outsiders, call.summary()
        if call.method.lower() == "sendmessage":
            invite_for_staff = chat_id in staff_chats and "?start=" in str(call.params.get("text"))
            assert call.params.get("protect_content") is True or invite_for_staff, call.summary()
            assert 0 < len(call.params.get("text") or "") <= MAX_TEXT, call.summary()
        if call.method.lower() == "editmessagetext":
            assert 0 < len(call.params.get("text") or "") <= MAX_TEXT, call.summary()
    # No Telegram id of anyone shows up in what the bot writes.
    needles = [str(i) for i in TEAM_IDS | {s.user_id for s in fake_strangers}]
    for call in api.calls[calls_at:]:
        text = str(call.params.get("text") or "")
        assert not any(n in text for n in needles), call.summary()

    counts = {table: len(rows) - len(before[table]) for table, rows in after.items()}
    print(f"kinds={dict(fuzzer.kinds)} new rows={counts}")


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)
@given(
    strangers=STRANGERS,
    plan=st.lists(actions(), min_size=60, max_size=120),
    per_minute=st.sampled_from((1000, 12)),
)
def test_fuzzed_updates_crash_nothing_store_nothing_and_tell_strangers_nothing(
    strangers: list[Stranger], plan: list[Action], per_minute: int
) -> None:
    """A fresh bot per example, in its own event loop (the ``bot`` fixture would be shared
    by every example); ``per_minute`` 12 puts the team under the flood limit too."""
    asyncio.run(run_example(strangers, plan, per_minute))


# ---------------------------------------------------------------------------------------
# Bugs the fuzzing found (fixed), one reproduction each, kept as regression tests.
# ---------------------------------------------------------------------------------------

ERROR_REPLY = frozenset(t(lang, "error") for lang in ("ko", "en", "zh"))


def assert_no_handler_failed(bot: RunningBot, user: FakeUser) -> None:
    texts = [m.text for m in bot.api.bot_messages(user.chat_id, include_deleted=True)]
    assert not ERROR_REPLY & set(texts), bot.api.transcript(user.chat_id)
    assert "handler failed" not in bot.log.getvalue()


async def test_stranger_start_without_command_entity_gets_the_stranger_line(
    bot: RunningBot,
) -> None:
    stranger = bot.api.user(880001, "Pasted", language_code="en")
    stranger.started = True
    text = "/start abcdefgh"
    message = {
        "message_id": 1,
        "date": int(time.time()),
        "chat": stranger.chat_dict(),
        "from": stranger.to_dict(),
        "text": text,
        "entities": [{"type": "code", "offset": 0, "length": len(text)}],
    }
    await bot.api.inject_update({"message": message})
    await bot.api.wait_idle()
    assert [m.text for m in stranger.inbox()] == [t("en", "stranger")]
    assert_no_handler_failed(bot, stranger)


async def test_stranger_blank_text_gets_the_stranger_line(bot: RunningBot) -> None:
    stranger = bot.api.user(880002, "Blank", language_code="en")
    stranger.started = True
    message = {
        "message_id": 1,
        "date": int(time.time()),
        "chat": stranger.chat_dict(),
        "from": stranger.to_dict(),
        "text": "\u3000",
    }
    await bot.api.inject_update({"message": message})
    await bot.api.wait_idle()
    assert [m.text for m in stranger.inbox()] == [t("en", "stranger")]
    assert_no_handler_failed(bot, stranger)


async def test_staff_callback_without_data_is_refused(bot: RunningBot) -> None:
    admin = bot.api.user(880003, "Admin", language_code="en")
    await bot.enrol(admin, Role.ADMIN, "en", name="Coordinator")
    query = await admin.forge_press("")
    await bot.api.wait_idle()
    assert_no_handler_failed(bot, admin)
    assert admin.callback_answer(query) is not None


async def _member_of(bot: RunningBot) -> tuple[FakeUser, FakeUser]:
    caseworker = bot.api.user(880010, "Caseworker", language_code="en")
    await bot.enrol(caseworker, Role.CASEWORKER, "en", name="Mina")
    member = bot.api.user(880011, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en", token=await staff_invite(bot, caseworker))
    return caseworker, member


@pytest.mark.parametrize("button", ["keep", "claim", "resolve", "language"])
async def test_a_double_tap_crashes_nothing(bot: RunningBot, button: str) -> None:
    caseworker, member = await _member_of(bot)
    if button == "keep":
        user, data = member, "forget:no"
        await member.send_command("forget")
    elif button == "language":
        user, data = member, "lang:en"
        await member.send_command("language")
    else:
        user, data = caseworker, f"case:{button}:"
        await ask(member, "money", "week", "rent")
        await caseworker.wait_for_message("rent")
    await bot.api.wait_idle()
    message, data = next(
        (m, d) for m in reversed(user.inbox()) for _, d in m.buttons() if d.startswith(data)
    )
    # Both taps leave the phone before the first answer comes back.
    await user.press(data, message=message)
    await user.press(data, message=message)
    await bot.api.wait_idle()
    assert_no_handler_failed(bot, user)


async def test_a_tap_on_a_prompt_deleted_meanwhile_crashes_nothing(bot: RunningBot) -> None:
    member = bot.api.user(880020, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    await member.send_command("checkin")
    prompt = await member.wait_for_message(t("en", "checkin_health"))
    await bot.api.wait_idle()
    await member.press(t("en", "checkin_health_3"), message=prompt)
    prompt.deleted = True  # cleared (auto-clear, or the member) before the bot answers
    await bot.api.wait_idle()
    assert_no_handler_failed(bot, member)
