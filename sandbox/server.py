"""A fake Telegram Bot API server for tests.

It speaks the Bot API over HTTP on 127.0.0.1 (aiohttp, inside the caller's event loop), so a
real ``telegram.Bot`` / ``telegram.ext.Application`` can be pointed at it with ``base_url``.
It keeps a model of every private chat (both sides, in order, with edits and deletions),
queues updates for long polling, validates requests like Telegram does where that is cheap,
and can inject faults (errors, 429 flood waits, slow answers, dropped connections).

Telegram limits (off by default): ``FakeBotApi(limits=True)`` or ``server.set_limits(True)``
makes the fake refuse, like Telegram's flood control, the calls that put a message in a chat
or edit one (:data:`LIMITED_METHODS`) once the bot goes faster than

* ``per_second`` (30) calls in any sliding 1.0 s window, over all chats, or
* one call a second to one chat, modelled as a token bucket per chat holding ``chat_burst``
  (3) tokens, refilled at ``chat_per_second`` (1.0) tokens a second: a quick answer of two or
  three messages is fine, a sustained stream faster than 1/s to one chat is not.

A refused call gets Telegram's answer -- HTTP 429, ``{"ok": false, "error_code": 429,
"description": "Too Many Requests: retry after N", "parameters": {"retry_after": N}}`` with N
the whole seconds (at least 1) until there is room again -- has no effect and consumes no
budget. The budget is tracked whether or not limits are on, so switching them on mid-run
enforces against what was really sent in the last second. ``server.flood_refusals`` lists the
refusals and ``server.max_per_second(chat_id=None)`` is the largest number of counted calls
accepted in any sliding 1-second window (overall, or to one chat), for benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web

from sandbox.formatting import EntityParseError, command_entities, parse_text
from sandbox.models import (
    MEDIA_KINDS,
    ApiError,
    Call,
    ChatMessage,
    JSONDict,
    bad_request,
    forbidden,
)
from sandbox.webhook import DEFAULT_RETRY_SECONDS, Delivery, WebhookSender, check_secret, check_url

__all__ = ["DEFAULT_TOKEN", "LIMITED_METHODS", "FakeBotApi", "FakeUser", "FloodRefusal"]

DEFAULT_TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn"  # noqa: S105 (not a secret)
HOST = "127.0.0.1"

MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"

# Telegram limits (see the module docstring); only enforced with ``limits`` on.
FLOOD_WINDOW = 1.0
"""Length in seconds of the sliding window of the overall limit and of ``max_per_second``."""
DEFAULT_PER_SECOND = 30
DEFAULT_CHAT_BURST = 3
DEFAULT_CHAT_PER_SECOND = 1.0
LIMITED_METHODS = frozenset(
    name.lower()
    for name in (
        # Methods that put a message in a chat. Only the first three are implemented by the
        # fake (the others answer 501 before any limit is checked); they are listed so the
        # limits keep counting them should the fake grow them.
        "sendMessage",
        "forwardMessage",
        "copyMessage",
        "sendPhoto",
        "sendAudio",
        "sendDocument",
        "sendVideo",
        "sendAnimation",
        "sendVoice",
        "sendVideoNote",
        "sendPaidMedia",
        "sendMediaGroup",
        "sendLocation",
        "sendVenue",
        "sendContact",
        "sendPoll",
        "sendDice",
        "sendSticker",
        "sendInvoice",
        "sendGame",
        # Telegram rate-limits edits too; an edit counts exactly like a send.
        "editMessageText",
        "editMessageReplyMarkup",
        "editMessageCaption",
        "editMessageMedia",
    )
)
"""Lower-cased Bot API methods the Telegram limits count (sendChatAction does not)."""

_API_PATH = re.compile(r"/bot([^/]*)/([^/]*)")
_FILE_PATH = re.compile(r"/file/bot([^/]*)/(.+)")

# Form values PTB sends as plain strings (everything else is JSON encoded by PTB).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_message_id",
        "description",
        "short_description",
        "name",
        "language_code",
        "action",
        "url",
        "secret_token",
        "ip_address",
        "file_id",
        "message_effect_id",
        "business_connection_id",
        "query",
        "title",
        "emoji",
        "phone_number",
        "first_name",
        "last_name",
        "vcard",
        "username",
        "sticker",
        "photo",
        "document",
        "voice",
        "audio",
        "video",
        "animation",
        "video_note",
        "custom_emoji_id",
        "question",
        "explanation",
        "address",
        "payload",
        "currency",
        "start_parameter",
        "result_id",
        "next_offset",
        "thumbnail",
    }
)

_DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

_INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)

_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_BUTTON_URL = re.compile(r"(https?|tg)://\S+", re.IGNORECASE)
_USER_LINK = re.compile(r"tg://user\?id=(\d+)")


def _now() -> int:
    return int(time.time())


def _decode_value(name: str, value: Any) -> Any:
    """Undo PTB's form encoding: non-string values arrive JSON encoded."""
    if not isinstance(value, str) or name in _STRING_PARAMS:
        return value
    stripped = value.strip()
    if stripped and stripped[0] in '{["-0123456789tfn':
        try:
            return json.loads(stripped)
        except ValueError:
            return value
    return value


class _Params:
    """Typed, tolerant access to decoded request parameters."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value is None else value

    def text(self, name: str) -> str | None:
        value = self.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value)

    def integer(self, name: str) -> int | None:
        value = self.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise bad_request(f"invalid {name} specified")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise bad_request(f"invalid {name} specified")

    def number(self, name: str) -> float | None:
        value = self.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad_request(f"invalid {name} specified")

    def flag(self, name: str) -> bool:
        value = self.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)

    def obj(self, name: str, *, what: str | None = None) -> Any:
        value = self.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {what or name} JSON object") from None
        return value

    def chat(self, name: str = "chat_id") -> int | str | None:
        value = self.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise bad_request("chat not found")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            return text


@dataclass
class _Fault:
    method: str
    remaining: int
    status: int
    description: str
    retry_after: int | None
    chat_id: int | None
    delay: float
    drop: bool
    takes_effect: bool

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.method != method.lower() or self.remaining <= 0:
            return False
        if self.chat_id is None:
            return True
        return str(params.get("chat_id")) == str(self.chat_id)

    def error(self) -> ApiError:
        return ApiError(self.status, self.description, retry_after=self.retry_after)


class FloodRefusal(NamedTuple):
    """A call the Telegram limits refused with 429 (see ``FakeBotApi.flood_refusals``)."""

    method: str
    chat_id: int | str | None
    """The ``chat_id`` parameter (``None`` for an inline message edit)."""
    at: float
    """When it was refused, on the server's limits clock (``time.monotonic()``)."""
    retry_after: int
    reason: str
    """``"global"`` (``per_second`` calls in the last second) or ``"chat"`` (empty bucket);
    when both apply, the one that lasts longer."""


@dataclass(eq=False)
class _ChatBudget:
    tokens: float
    updated: float
    recent: deque[float] = field(default_factory=deque)
    peak: int = 0


def _prune(recent: deque[float], now: float) -> None:
    """Forget timestamps outside the sliding window ``(now - FLOOD_WINDOW, now]``."""
    horizon = now - FLOOD_WINDOW
    while recent and recent[0] <= horizon:
        recent.popleft()


class _FloodControl:
    """Telegram's flood limits: a sliding window over all chats and a token bucket per chat.

    Memory stays bounded by the calls of the last second plus one small record per chat, so
    a long benchmark costs no more than a short one.
    """

    def __init__(self, per_second: int, chat_burst: int, chat_per_second: float) -> None:
        self.per_second = per_second
        self.chat_burst = chat_burst
        self.chat_per_second = chat_per_second
        self.recent: deque[float] = deque()
        self.peak = 0
        self.accepted = 0
        self.chats: dict[int | str, _ChatBudget] = {}
        self.refusals: list[FloodRefusal] = []

    def _budget(self, chat_id: int | str, now: float) -> _ChatBudget:
        budget = self.chats.get(chat_id)
        if budget is None:
            budget = self.chats[chat_id] = _ChatBudget(float(self.chat_burst), now)
            return budget
        elapsed = max(now - budget.updated, 0.0)
        budget.tokens = min(float(self.chat_burst), budget.tokens + elapsed * self.chat_per_second)
        budget.updated = max(budget.updated, now)
        return budget

    def check(self, chat_id: int | str | None, now: float) -> tuple[int, str] | None:
        """``(retry_after, reason)`` if a call now would exceed a limit, else ``None``.

        Changes no budget: a refused call consumes nothing.
        """
        _prune(self.recent, now)
        waits: list[tuple[float, str]] = []
        excess = len(self.recent) - self.per_second
        if excess >= 0:
            # Room appears when the call ``excess`` places from the oldest leaves the window.
            waits.append((self.recent[excess] + FLOOD_WINDOW - now, "global"))
        if chat_id is not None:
            budget = self._budget(chat_id, now)
            missing = 1.0 - budget.tokens
            if missing > 1e-9:
                waits.append((missing / self.chat_per_second, "chat"))
        if not waits:
            return None
        wait, reason = max(waits)
        return max(1, math.ceil(wait)), reason

    def accept(self, chat_id: int | str | None, now: float) -> None:
        """Record a counted call the server carried out (whether or not limits are on)."""
        self.accepted += 1
        _prune(self.recent, now)
        self.recent.append(now)
        self.peak = max(self.peak, len(self.recent))
        if chat_id is None:
            return
        budget = self._budget(chat_id, now)
        budget.tokens = max(budget.tokens - 1.0, 0.0)
        _prune(budget.recent, now)
        budget.recent.append(now)
        budget.peak = max(budget.peak, len(budget.recent))

    def clear_stats(self) -> None:
        self.refusals.clear()
        self.peak = 0
        self.accepted = 0
        for budget in self.chats.values():
            budget.peak = 0


@dataclass(eq=False)
class _InFlight:
    method: str
    waiting: bool = False


@dataclass(eq=False)
class _Poll:
    superseded: bool = False


@dataclass
class _CallbackQuery:
    query_id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    answer: JSONDict | None = None


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    file_path: str
    file_size: int


Handler = Callable[["_Params", "_InFlight"], Awaitable[Any]]


class FakeUser:
    """A Telegram user talking to the bot in a private chat (chat id == user id)."""

    def __init__(
        self,
        api: FakeBotApi,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ko",
    ) -> None:
        self._api = api
        self.user_id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.started = False
        """True once the user has written to the bot (the bot may then message them)."""
        self.reply_keyboard_markup: JSONDict | None = None
        """The reply keyboard the bot last showed this user (``None`` when removed)."""

    def __repr__(self) -> str:
        return f"FakeUser({self.user_id}, {self.first_name!r})"

    @property
    def chat_id(self) -> int:
        return self.user_id

    @property
    def blocked(self) -> bool:
        return self.user_id in self._api._blocked

    def to_dict(self) -> JSONDict:
        """The Telegram ``User`` object of this user."""
        user: JSONDict = {"id": self.user_id, "is_bot": False, "first_name": self.first_name}
        if self.last_name is not None:
            user["last_name"] = self.last_name
        if self.username is not None:
            user["username"] = self.username
        if self.language_code is not None:
            user["language_code"] = self.language_code
        return user

    def chat_dict(self) -> JSONDict:
        """The Telegram ``Chat`` object of the private chat with this user."""
        chat: JSONDict = {"id": self.chat_id, "type": "private", "first_name": self.first_name}
        if self.last_name is not None:
            chat["last_name"] = self.last_name
        if self.username is not None:
            chat["username"] = self.username
        return chat

    # -- sending -------------------------------------------------------------------------

    def _before_sending(self) -> None:
        if self.blocked:
            # Writing to a blocked bot means pressing "Restart"/"Unblock" first.
            self._api.unblock(self.user_id)
        self.started = True

    def _reply_target(self, reply_to: int | None) -> ChatMessage | None:
        if reply_to is None:
            return None
        target = self._api._find(self.chat_id, reply_to)
        if target is None or target.deleted:
            raise AssertionError(
                f"{self!r} cannot reply to message #{reply_to}: no such visible message\n"
                + self._api.transcript(self.chat_id)
            )
        return target

    async def send_text(self, text: str, *, reply_to: int | None = None) -> ChatMessage:
        """Send a text message to the bot; queues a ``message`` update."""
        stripped = text.strip()
        if not stripped:
            raise ValueError("Telegram clients do not send empty messages")
        if len(stripped) > MAX_TEXT_LENGTH:
            raise ValueError("Telegram clients split messages longer than 4096 characters")
        target = self._reply_target(reply_to)
        self._before_sending()
        message = self._api._append(
            self,
            from_bot=False,
            text=stripped,
            entities=command_entities(stripped),
            reply_to=target,
        )
        self._api._queue_update("message", message.to_dict())
        await asyncio.sleep(0)
        return message

    async def send_command(self, command: str, arg: str | None = None) -> ChatMessage:
        """``send_command("start", "tok")`` sends ``/start tok``."""
        text = "/" + command.lstrip("/")
        if arg:
            text += f" {arg}"
        return await self.send_text(text)

    async def send_media(self, kind: str) -> ChatMessage:
        """Send a sticker/photo/voice/document/location/contact (no text)."""
        if kind not in MEDIA_KINDS:
            raise ValueError(f"unknown media kind {kind!r}; expected one of {MEDIA_KINDS}")
        self._before_sending()
        message = self._api._append(
            self, from_bot=False, text=None, kind=kind, payload=self._api._media_payload(self, kind)
        )
        self._api._queue_update("message", message.to_dict())
        await asyncio.sleep(0)
        return message

    async def edit_text(self, message: ChatMessage, text: str) -> ChatMessage:
        """Edit one of this user's own text messages; queues an ``edited_message`` update."""
        if message.from_bot or message.chat_id != self.chat_id or message.kind != "text":
            raise AssertionError(f"{self!r} can only edit own text messages, not {message!r}")
        if message.deleted:
            raise AssertionError(f"message #{message.message_id} was deleted")
        message.text = text.strip()
        message.entities = command_entities(message.text)
        message.edit_date = _now()
        message.edit_count += 1
        self._api._queue_update("edited_message", message.to_dict())
        await asyncio.sleep(0)
        return message

    def reply_keyboard(self) -> list[list[str]] | None:
        """Button texts of the reply keyboard currently shown, or ``None``."""
        markup = self.reply_keyboard_markup
        if not markup:
            return None
        return [
            [button if isinstance(button, str) else str(button.get("text", "")) for button in row]
            for row in markup.get("keyboard", [])
        ]

    async def tap(self, text: str) -> ChatMessage:
        """Tap a button of the current reply keyboard (sends its text)."""
        keyboard = self.reply_keyboard()
        if keyboard is None or not any(text in row for row in keyboard):
            raise AssertionError(f"no reply keyboard button {text!r}; keyboard is {keyboard!r}")
        assert self.reply_keyboard_markup is not None
        if self.reply_keyboard_markup.get("one_time_keyboard"):
            self.reply_keyboard_markup = None
        return await self.send_text(text)

    async def press(
        self,
        button: str,
        *,
        message: ChatMessage | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - public API of the fake
    ) -> str:
        """Press an inline button (matched by text or callback_data); returns the query id.

        Looks on ``message`` or else on the most recent visible bot message that has the
        button. A button that isn't there yet is waited for up to ``timeout`` seconds, because
        the bot may still be answering the previous step. After that, an AssertionError lists
        the buttons that are available.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if message is not None:
                self._check_pressable(message)
            candidates = [message] if message is not None else list(reversed(self.inbox()))
            for candidate in candidates:
                for raw in (b for row in candidate.inline_keyboard() for b in row):
                    if not isinstance(raw, dict):
                        continue
                    if button not in (raw.get("text"), raw.get("callback_data")):
                        continue
                    data = raw.get("callback_data")
                    if not isinstance(data, str):
                        raise AssertionError(
                            f"button {button!r} on message #{candidate.message_id} has no "
                            f"callback_data (it is {raw!r}); it cannot be pressed"
                        )
                    return self._api._queue_callback(self, candidate, data)
            if loop.time() >= deadline:
                where = (
                    f"on message #{message.message_id}" if message else "on any visible bot message"
                )
                raise AssertionError(
                    f"{self!r}: no inline button {button!r} {where} within {timeout}s"
                    "\nAvailable buttons:\n" + self._api._describe_buttons(self.chat_id, candidates)
                )
            await asyncio.sleep(0.01)

    async def forge_press(self, data: str, *, message: ChatMessage | None = None) -> str:
        """A callback query with arbitrary data (a modified client), on the given/last message."""
        target = message if message is not None else self.last()
        self._check_pressable(target)
        return self._api._queue_callback(self, target, data)

    def _check_pressable(self, message: ChatMessage) -> None:
        if message.chat_id != self.chat_id:
            raise AssertionError(
                f"{self!r} cannot press buttons of message #{message.message_id} in chat "
                f"{message.chat_id}"
            )
        if message.deleted:
            raise AssertionError(f"message #{message.message_id} was deleted; cannot press")
        if not message.from_bot:
            raise AssertionError(f"message #{message.message_id} is not a bot message")

    # -- reading -------------------------------------------------------------------------

    def inbox(self) -> list[ChatMessage]:
        """Visible bot messages in this chat, oldest first."""
        return self._api.bot_messages(self.chat_id)

    def last(self) -> ChatMessage:
        """The last visible bot message."""
        inbox = self.inbox()
        if not inbox:
            raise AssertionError(
                f"{self!r} has no visible bot message\n"
                + self._api.transcript(self.chat_id)
                + self._api._diagnostics()
            )
        return inbox[-1]

    async def wait_for_message(
        self,
        contains: str | None = None,
        *,
        count: int | None = None,
        since: ChatMessage | int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - public API of the fake
    ) -> ChatMessage:
        """Wait for a bot message and return it.

        * ``contains``: the most recent visible bot message whose text contains it;
        * ``count``: until the number of bot messages ever sent to this chat (deleted ones
          included) reaches ``count``; returns the ``count``-th one (or, with ``contains``,
          the most recent visible match once the count is reached);
        * ``since``: only consider messages newer than this message (or message id);
        * neither: any visible bot message (the latest).
        """
        floor = since.message_id if isinstance(since, ChatMessage) else since

        def match() -> ChatMessage | None:
            every = self._api.bot_messages(self.chat_id, include_deleted=True)
            if count is not None:
                if len(every) < count:
                    return None
                if contains is None:
                    return every[count - 1]
            for candidate in reversed(every):
                if candidate.deleted or (floor is not None and candidate.message_id <= floor):
                    continue
                if contains is None or (candidate.text is not None and contains in candidate.text):
                    return candidate
            return None

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (found := match()) is None:
            if loop.time() >= deadline:
                wanted = []
                if contains is not None:
                    wanted.append(f"text containing {contains!r}")
                if count is not None:
                    wanted.append(f"{count} bot messages")
                if floor is not None:
                    wanted.append(f"newer than #{floor}")
                raise AssertionError(
                    f"{self!r}: no bot message with {', '.join(wanted) or 'any text'} "
                    f"within {timeout}s\n"
                    + self._api.transcript(self.chat_id)
                    + self._api._diagnostics()
                )
            await asyncio.sleep(0.01)
        return found

    def answered_callbacks(self) -> list[JSONDict]:
        """``answerCallbackQuery`` answers to this user's queries, in answer order."""
        answers = [
            query.answer
            for query in self._api._callback_queries.values()
            if query.user_id == self.user_id and query.answer is not None
        ]
        return sorted(answers, key=lambda answer: answer["answered_at"])

    def callback_answer(self, query_id: str) -> JSONDict | None:
        """The answer to one callback query, or ``None`` if not (yet) answered."""
        query = self._api._callback_queries.get(query_id)
        return None if query is None else query.answer


class FakeBotApi:
    """Fake Telegram Bot API server; see the package docstring for usage."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "saferelay_test_bot",
        *,
        port: int = 0,
        bot_first_name: str = "SafeRelay Test",
        limits: bool = False,
        per_second: int = DEFAULT_PER_SECOND,
        chat_burst: int = DEFAULT_CHAT_BURST,
        chat_per_second: float = DEFAULT_CHAT_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        webhook_retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        """``limits`` turns Telegram's flood limits on (see the module docstring):
        ``per_second`` counted calls in any sliding 1-second window overall, and per chat a
        token bucket of ``chat_burst`` tokens refilled at ``chat_per_second``. ``clock`` is
        what the limits time calls with (never going backwards); tests may pass a fake one.
        """
        bot_id, sep, secret = token.partition(":")
        if not sep or not bot_id.isdigit() or not secret:
            raise ValueError(f"token must look like '<bot id>:<secret>', got {token!r}")
        _check_limit_numbers(per_second, chat_burst, chat_per_second)
        self.token = token
        self.bot_id = int(bot_id)
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.calls: list[Call] = []
        self.requested_port = port
        self.webhook_url = ""
        # Webhook delivery (sandbox/webhook.py): every POST made, in order.
        self.webhook_deliveries: deque[Delivery] = deque(maxlen=10_000)
        self.webhook_retry_seconds = webhook_retry_seconds
        self._webhook: WebhookSender | None = None
        self.allowed_updates: list[str] | None = None
        self.closed = False
        self.logged_out = False
        self.limits = limits
        """Whether Telegram's flood limits are enforced (see :meth:`set_limits`)."""

        self._clock = clock
        self._flood = _FloodControl(per_second, chat_burst, chat_per_second)
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._users: dict[int, FakeUser] = {}
        self._chats: dict[int, list[ChatMessage]] = {}
        self._next_message_id: dict[int, int] = {}
        self._updates: list[JSONDict] = []
        self._update_ids = itertools.count(100_000_001)
        self._confirmed_up_to = 0
        self._update_event: asyncio.Event | None = None
        self._faults: list[_Fault] = []
        self._blocked: set[int] = set()
        self._callback_queries: dict[str, _CallbackQuery] = {}
        self._query_ids = itertools.count(1)
        self._files: dict[str, _File] = {}
        self._file_ids = itertools.count(1)
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._texts: dict[tuple[str, str], str] = {}
        self._menu_buttons: dict[int | None, JSONDict] = {}
        self._flights: set[_InFlight] = set()
        self._poll: _Poll | None = None
        self._polled = False
        self._methods: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "setMyDescription": self._text_setter("description", 512),
                "getMyDescription": self._text_getter("description"),
                "setMyShortDescription": self._text_setter("short_description", 120),
                "getMyShortDescription": self._text_getter("short_description"),
                "setMyName": self._text_setter("name", 64),
                "getMyName": self._text_getter("name"),
                "setChatMenuButton": self._set_chat_menu_button,
                "getChatMenuButton": self._get_chat_menu_button,
                "getChat": self._get_chat,
                "sendMessage": self._send_message,
                "forwardMessage": self._forward_message,
                "copyMessage": self._copy_message,
                "editMessageText": self._edit_message_text,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "deleteMessage": self._delete_message,
                "deleteMessages": self._delete_messages,
                "answerCallbackQuery": self._answer_callback_query,
                "sendChatAction": self._send_chat_action,
                "getFile": self._get_file,
                "leaveChat": self._leave_chat,
                "close": self._close,
                "logOut": self._log_out,
            }.items()
        }

    # ---------------------------------------------------------------------------------------
    # lifecycle
    # ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind 127.0.0.1 (random free port unless ``port`` was given) and serve."""
        if self._runner is not None:
            raise RuntimeError("FakeBotApi is already running")
        self._stopping = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, HOST, self.requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        address = runner.addresses[0]
        self._port = int(address[1])
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving; pending long polls return ``[]`` first."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        self._notify()
        await self._stop_webhook()
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> FakeBotApi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeBotApi is not running; call/await start() first")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/bot`` -- for ``ApplicationBuilder().base_url(...)``."""
        return f"http://{HOST}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """``http://127.0.0.1:PORT/file/bot`` -- for ``.base_file_url(...)``."""
        return f"http://{HOST}:{self.port}/file/bot"

    # ---------------------------------------------------------------------------------------
    # public test helpers
    # ---------------------------------------------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ko",
    ) -> FakeUser:
        """Create (or fetch and update) a user. They must write first before the bot can."""
        if user_id <= 0 or user_id == self.bot_id:
            raise ValueError(f"user id must be positive and differ from the bot id: {user_id}")
        existing = self._users.get(user_id)
        if existing is not None:
            existing.first_name = first_name
            existing.last_name = last_name
            existing.username = username
            existing.language_code = language_code
            return existing
        created = FakeUser(
            self,
            user_id,
            first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
        )
        self._users[user_id] = created
        self._chats.setdefault(user_id, [])
        return created

    def users(self) -> list[FakeUser]:
        return list(self._users.values())

    def chat(self, chat_id: int) -> list[ChatMessage]:
        """All messages of a chat, both sides, in order; deleted ones included (flagged)."""
        return list(self._chats.get(chat_id, []))

    def visible(self, chat_id: int) -> list[ChatMessage]:
        """Messages of a chat that were not deleted."""
        return [message for message in self.chat(chat_id) if not message.deleted]

    def bot_messages(self, chat_id: int, *, include_deleted: bool = False) -> list[ChatMessage]:
        """Messages the bot sent to a chat (visible ones unless ``include_deleted``)."""
        return [
            message
            for message in self.chat(chat_id)
            if message.from_bot and (include_deleted or not message.deleted)
        ]

    def transcript(self, chat_id: int) -> str:
        """A readable dump of a chat, for assertion messages and debugging."""
        messages = self.chat(chat_id)
        if not messages:
            return f"chat {chat_id}: (no messages)\n"
        return f"chat {chat_id}:\n" + "".join(f"  {m.describe()}\n" for m in messages)

    def calls_to(self, method: str) -> list[Call]:
        """Recorded calls of one method (case-insensitive)."""
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def commands(self, *, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        """The command list set by ``setMyCommands`` for a scope/language."""
        return copy.deepcopy(self._commands.get((self._scope_key(scope), language_code), []))

    def bot_text(self, field: str, language_code: str = "") -> str:
        """``description``, ``short_description`` or ``name`` as set by the bot."""
        return self._texts.get((field, language_code), "")

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - public API of the fake
    ) -> None:
        """Poll ``predicate`` every 10 ms; AssertionError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() >= deadline:
                raise AssertionError(
                    f"condition not met within {timeout}s: {_describe_callable(predicate)}\n"
                    + self._diagnostics()
                )
            await asyncio.sleep(0.01)

    async def inject_update(self, update: JSONDict) -> int | None:
        """Queue a raw update (e.g. a group message) as is; ``update_id`` is assigned here.

        Nothing is added to the chat model. Returns the update id, or ``None`` when
        ``allowed_updates`` filters the update type out.
        """
        body = {key: value for key, value in update.items() if key != "update_id"}
        if len(body) != 1:
            raise ValueError(f"an update has exactly one payload field, got {sorted(body)}")
        [(kind, payload)] = body.items()
        update_id = self._queue_update(kind, payload)
        await asyncio.sleep(0)
        return update_id

    def pending_updates(self) -> int:
        """Updates queued but not yet confirmed (getUpdates with an offset past them)."""
        return len(self._updates)

    async def wait_idle(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 - public API of the fake
        *,
        settle: float = 0.05,
    ) -> None:
        """Wait until the bot has nothing left to do, continuously for ``settle`` seconds.

        That means: every queued update has been fetched and confirmed, and no request is in
        flight except a parked long poll. In addition, any python-telegram-bot Application
        in this event loop that polls this server has no fetched update still queued or
        being processed, so a slow handler that is busy with a database or with
        cryptography, and makes no API call yet, counts as busy.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_since: float | None = None
        while True:
            now = loop.time()
            if self._is_idle():
                quiet_since = now if quiet_since is None else quiet_since
                if now - quiet_since >= settle:
                    return
            else:
                quiet_since = None
            if now >= deadline:
                busy = sorted(f.method for f in self._flights if not f.waiting)
                hint = (
                    ""
                    if self._polled or self.webhook_url
                    else "\nNobody has called getUpdates yet -- is the Application polling "
                    f"against this server (port {self._port})?"
                )
                raise AssertionError(
                    f"fake Bot API not idle within {timeout}s: {self.pending_updates()} "
                    f"unconfirmed update(s), requests in flight: {busy or 'none'}{hint}\n"
                    + self._diagnostics()
                )
            await asyncio.sleep(0.01)

    def fail_next(
        self,
        method: str,
        *,
        count: int = 1,
        status: int = 500,
        description: str = "Internal Server Error",
        retry_after: int | None = None,
        chat_id: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """Make the next ``count`` calls of ``method`` (optionally only those to ``chat_id``)
        fail without any effect: answer ``status``/``description`` (429 answers carry
        ``parameters.retry_after``, default 1), after sleeping ``delay`` seconds; with
        ``drop`` the connection is closed without an answer instead.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        if description == "Internal Server Error" and status != 500:
            description = _default_description(status, retry_after)
        self._faults.append(
            _Fault(
                method=method.lower(),
                remaining=count,
                status=status,
                description=description,
                retry_after=retry_after,
                chat_id=chat_id,
                delay=delay,
                drop=drop,
                takes_effect=False,
            )
        )

    def slow_next(
        self,
        method: str,
        *,
        delay: float,
        count: int = 1,
        chat_id: int | None = None,
        drop: bool = False,
    ) -> None:
        """The next ``count`` calls of ``method`` DO take effect at once, but the answer is
        sent only after ``delay`` seconds (or never, with ``drop``): the client may time out
        although Telegram did the work -- the classic duplicate-delivery scenario.
        """
        self._faults.append(
            _Fault(
                method=method.lower(),
                remaining=count,
                status=200,
                description="",
                retry_after=None,
                chat_id=chat_id,
                delay=delay,
                drop=drop,
                takes_effect=True,
            )
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- Telegram limits -----------------------------------------------------------------

    def set_limits(
        self,
        enabled: bool = True,
        *,
        per_second: int | None = None,
        chat_burst: int | None = None,
        chat_per_second: float | None = None,
    ) -> None:
        """Switch Telegram's flood limits on or off, optionally changing their numbers.

        The budget is tracked all along, so limits switched on mid-run count what was
        really sent in the last second (and a chat's bucket emptied while they were off).
        """
        flood = self._flood
        per_second = flood.per_second if per_second is None else per_second
        chat_burst = flood.chat_burst if chat_burst is None else chat_burst
        if chat_per_second is None:
            chat_per_second = flood.chat_per_second
        _check_limit_numbers(per_second, chat_burst, chat_per_second)
        now = self._clock()
        for chat_id in flood.chats:
            flood._budget(chat_id, now)  # bring buckets up to date at the old refill rate
        flood.per_second = per_second
        flood.chat_burst = chat_burst
        flood.chat_per_second = chat_per_second
        self.limits = enabled

    @property
    def per_second(self) -> int:
        """Counted calls allowed in any sliding 1-second window, over all chats."""
        return self._flood.per_second

    @property
    def chat_burst(self) -> int:
        """Capacity of each chat's token bucket."""
        return self._flood.chat_burst

    @property
    def chat_per_second(self) -> float:
        """Refill rate of each chat's token bucket, in tokens a second."""
        return self._flood.chat_per_second

    @property
    def flood_refusals(self) -> list[FloodRefusal]:
        """Calls the limits refused with 429, oldest first (``len()`` is the count)."""
        return self._flood.refusals

    @property
    def counted_calls(self) -> int:
        """Counted calls (:data:`LIMITED_METHODS`) carried out, limits on or off."""
        return self._flood.accepted

    def max_per_second(self, chat_id: int | str | None = None) -> int:
        """The most counted calls accepted in any sliding 1-second window ``(t - 1, t]``:
        over all chats, or to ``chat_id``. Measured whether or not limits are on."""
        if chat_id is None:
            return self._flood.peak
        budget = self._flood.chats.get(chat_id)
        return 0 if budget is None else budget.peak

    def clear_flood_stats(self) -> None:
        """Forget ``flood_refusals``, ``counted_calls`` and the ``max_per_second`` peaks
        (e.g. after a setup phase). The budget itself is left as it is: calls of the last
        second still count against the limits, and in the windows measured next."""
        self._flood.clear_stats()

    def block(self, user_id: int) -> None:
        """The user blocks the bot; sends to them answer 403 until they write again."""
        user = self._require_user(user_id)
        if user_id in self._blocked:
            return
        self._blocked.add(user_id)
        self._queue_member_update(user, old="member", new="kicked")

    def unblock(self, user_id: int) -> None:
        """The user unblocks the bot (also happens when a blocked user writes to it)."""
        user = self._require_user(user_id)
        if user_id not in self._blocked:
            return
        self._blocked.discard(user_id)
        self._queue_member_update(user, old="kicked", new="member")

    # ---------------------------------------------------------------------------------------
    # internal model
    # ---------------------------------------------------------------------------------------

    def bot_user_dict(self) -> JSONDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _require_user(self, user_id: int) -> FakeUser:
        user = self._users.get(user_id)
        if user is None:
            raise KeyError(f"no fake user {user_id}; create it with FakeBotApi.user() first")
        return user

    def _find(self, chat_id: int, message_id: int) -> ChatMessage | None:
        for message in self._chats.get(chat_id, []):
            if message.message_id == message_id:
                return message
        return None

    def _append(
        self,
        user: FakeUser,
        *,
        from_bot: bool,
        text: str | None,
        kind: str = "text",
        entities: list[JSONDict] | None = None,
        payload: JSONDict | None = None,
        reply_to: ChatMessage | None = None,
        reply_markup: JSONDict | None = None,
        protect_content: bool = False,
        parse_mode: str | None = None,
        disable_notification: bool = False,
        link_preview_options: JSONDict | None = None,
    ) -> ChatMessage:
        chat_id = user.chat_id
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        message = ChatMessage(
            message_id=message_id,
            chat_id=chat_id,
            from_bot=from_bot,
            text=text,
            date=_now(),
            reply_markup=reply_markup,
            protect_content=protect_content,
            reply_to_message_id=reply_to.message_id if reply_to is not None else None,
            kind=kind,
            entities=list(entities or []),
            parse_mode=parse_mode,
            disable_notification=disable_notification,
            link_preview_options=link_preview_options,
            payload=dict(payload or {}),
            sender=self.bot_user_dict() if from_bot else user.to_dict(),
            chat=user.chat_dict(),
            reply_to=reply_to,
        )
        self._chats.setdefault(chat_id, []).append(message)
        return message

    def _new_file(self, kind: str, extension: str, size: int) -> _File:
        number = next(self._file_ids)
        file = _File(
            file_id=f"AgACAgIAAxkBAAI{kind[:3].upper()}{number:06d}fake",
            file_unique_id=f"AQAD{number:06d}",
            file_path=f"{kind}s/file_{number}.{extension}",
            file_size=size,
        )
        self._files[file.file_id] = file
        return file

    def _media_payload(self, user: FakeUser, kind: str) -> JSONDict:
        def file_fields(file: _File) -> JSONDict:
            return {
                "file_id": file.file_id,
                "file_unique_id": file.file_unique_id,
                "file_size": file.file_size,
            }

        if kind == "sticker":
            file = self._new_file("sticker", "webp", 17_842)
            return {
                "sticker": {
                    **file_fields(file),
                    "type": "regular",
                    "width": 512,
                    "height": 512,
                    "is_animated": False,
                    "is_video": False,
                    "emoji": "\N{THUMBS UP SIGN}",
                    "set_name": "FakeBotStickers",
                }
            }
        if kind == "photo":
            small = self._new_file("photo", "jpg", 1_431)
            large = self._new_file("photo", "jpg", 98_214)
            return {
                "photo": [
                    {**file_fields(small), "width": 90, "height": 67},
                    {**file_fields(large), "width": 1280, "height": 960},
                ]
            }
        if kind == "voice":
            file = self._new_file("voice", "oga", 23_456)
            return {"voice": {**file_fields(file), "duration": 3, "mime_type": "audio/ogg"}}
        if kind == "document":
            file = self._new_file("document", "pdf", 34_567)
            return {
                "document": {
                    **file_fields(file),
                    "file_name": "document.pdf",
                    "mime_type": "application/pdf",
                }
            }
        if kind == "location":
            return {"location": {"latitude": 37.566535, "longitude": 126.977969}}
        if kind == "contact":
            return {
                "contact": {
                    "phone_number": "+821012345678",
                    "first_name": user.first_name,
                    "user_id": user.user_id,
                }
            }
        raise ValueError(kind)

    def _event(self) -> asyncio.Event:
        if self._update_event is None:
            self._update_event = asyncio.Event()
        return self._update_event

    def _notify(self) -> None:
        event, self._update_event = self._update_event, None
        if event is not None:
            event.set()

    def _queue_update(self, kind: str, payload: JSONDict) -> int | None:
        allowed = (
            _DEFAULT_UPDATE_TYPES if not self.allowed_updates else frozenset(self.allowed_updates)
        )
        if kind not in allowed:
            return None
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, kind: copy.deepcopy(payload)})
        self._notify()
        return update_id

    def _queue_member_update(self, user: FakeUser, *, old: str, new: str) -> None:
        new_member: JSONDict = {"user": self.bot_user_dict(), "status": new}
        if new == "kicked":
            new_member["until_date"] = 0
        old_member: JSONDict = {"user": self.bot_user_dict(), "status": old}
        if old == "kicked":
            old_member["until_date"] = 0
        self._queue_update(
            "my_chat_member",
            {
                "chat": user.chat_dict(),
                "from": user.to_dict(),
                "date": _now(),
                "old_chat_member": old_member,
                "new_chat_member": new_member,
            },
        )

    def _queue_callback(self, user: FakeUser, message: ChatMessage, data: str) -> str:
        serial = next(self._query_ids)
        query_id = str(4_200_000_000_000_000_000 + serial * 1_000 + user.user_id % 1_000)
        self._callback_queries[query_id] = _CallbackQuery(
            query_id=query_id,
            user_id=user.user_id,
            chat_id=message.chat_id,
            message_id=message.message_id,
            data=data,
        )
        self._queue_update(
            "callback_query",
            {
                "id": query_id,
                "from": user.to_dict(),
                "message": message.to_dict(),
                "chat_instance": str(-(7_000_000_000_000_000 + message.chat_id)),
                "data": data,
            },
        )
        return query_id

    def _is_idle(self) -> bool:
        if self._updates or not all(flight.waiting for flight in self._flights):
            return False
        return not any(_application_busy(app) for app in self._applications())

    def _applications(self) -> list[Any]:
        """python-telegram-bot Applications polling this server from the current event loop.

        They are found through their update fetcher task (``Application:<id>:update_fetcher``),
        so ``wait_idle`` also waits for updates the Application has fetched but not yet
        finished processing.
        """
        found: list[Any] = []
        for task in asyncio.all_tasks():
            name = task.get_name()
            if not (name.startswith("Application:") and name.endswith(":update_fetcher")):
                continue
            frame = getattr(task.get_coro(), "cr_frame", None)
            app = frame.f_locals.get("self") if frame is not None else None
            bot = getattr(app, "bot", None)
            if app is not None and getattr(bot, "token", None) == self.token:
                found.append(app)
        return found

    def _describe_buttons(self, chat_id: int, candidates: list[ChatMessage]) -> str:
        lines = [
            f"  {message.describe()}"
            for message in candidates
            if message.inline_keyboard() and message.chat_id == chat_id
        ]
        return "\n".join(lines[:10]) if lines else "  (no visible bot message has inline buttons)"

    def _diagnostics(self) -> str:
        lines = [f"pending updates: {self.pending_updates()}"]
        if self.flood_refusals:
            last = self.flood_refusals[-1]
            lines.append(
                f"flood refusals (429): {len(self.flood_refusals)}, last: {last.method} to "
                f"chat {last.chat_id} ({last.reason}, retry after {last.retry_after})"
            )
        if self._faults:
            lines.append(f"unused injected faults: {[f.method for f in self._faults]}")
        failures = [c for c in self.calls if c.status is not None and not c.ok]
        if failures:
            lines.append("failed calls (last 5):")
            lines.extend(f"  {call.summary()}" for call in failures[-5:])
        lines.append(f"last calls ({min(len(self.calls), 12)} of {len(self.calls)}):")
        lines.extend(f"  {call.summary()}" for call in self.calls[-12:])
        return "\n".join(lines)

    # ---------------------------------------------------------------------------------------
    # HTTP layer
    # ---------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_fake/"):
            return await self._handle_control(request)
        file_match = _FILE_PATH.fullmatch(path)
        if file_match:
            return self._handle_file(file_match.group(1), file_match.group(2))
        api_match = _API_PATH.fullmatch(path)
        if api_match is None:
            return _json(ApiError(404, "Not Found").payload(), 404)
        token, method_name = api_match.groups()
        entry = self._methods.get(method_name.lower())
        method = entry[0] if entry else method_name
        try:
            raw = await self._read_params(request)
        except ApiError as exc:
            call = Call(method, {}, time.monotonic())
            self.calls.append(call)
            return self._answer_error(call, exc)
        params = {name: _decode_value(name, value) for name, value in raw.items()}
        call = Call(method, params, time.monotonic())
        self.calls.append(call)
        if token != self.token:
            return self._answer_error(call, ApiError(401, "Unauthorized"))
        if entry is None:
            if method_name.lower() in _real_method_names():
                return self._answer_error(
                    call,
                    ApiError(501, f"Not Implemented: the fake Bot API has no {method_name}"),
                )
            return self._answer_error(call, ApiError(404, "Not Found"))
        flight = _InFlight(method)
        self._flights.add(flight)
        try:
            return await self._dispatch(request, call, entry[1], flight)
        finally:
            self._flights.discard(flight)
            if call.status is None and not call.injected:
                call.description = "client went away before the answer"

    async def _dispatch(
        self, request: web.Request, call: Call, handler: Handler, flight: _InFlight
    ) -> web.StreamResponse:
        fault = self._find_fault(call.method, call.params)
        if fault is not None and not fault.takes_effect:
            self._use_fault(fault)
            call.injected = True
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.drop:
                return await self._drop(request, call)
            return self._answer_error(call, fault.error())
        counted = call.method.lower() in LIMITED_METHODS
        chat_id = _flood_chat(call.params) if counted else None
        now = self._clock() if counted else 0.0
        if counted and self.limits:
            refused = self._flood.check(chat_id, now)
            if refused is not None:
                # The same answer as an injected 429 (fail_next), and no effect at all.
                retry_after, reason = refused
                self._flood.refusals.append(
                    FloodRefusal(call.method, chat_id, now, retry_after, reason)
                )
                error = ApiError(
                    429, _default_description(429, retry_after), retry_after=retry_after
                )
                return self._answer_error(call, error)
        if fault is not None:
            self._use_fault(fault)
        try:
            result = await handler(_Params(call.params), flight)
        except ApiError as exc:
            return self._answer_error(call, exc)
        if counted:
            self._flood.accept(chat_id, now)
        if fault is not None:
            call.injected = True
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.drop:
                return await self._drop(request, call)
        call.status = 200
        return _json({"ok": True, "result": result}, 200)

    def _find_fault(self, method: str, params: dict[str, Any]) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, params):
                return fault
        return None

    def _use_fault(self, fault: _Fault) -> None:
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._faults.remove(fault)

    async def _drop(self, request: web.Request, call: Call) -> web.StreamResponse:
        call.status = None
        call.description = "connection dropped (injected)"
        transport = request.transport
        if transport is not None:
            transport.close()
        # The handler is cancelled when aiohttp notices the closed connection.
        await asyncio.sleep(5)
        raise web.HTTPServiceUnavailable()

    def _answer_error(self, call: Call, exc: ApiError) -> web.StreamResponse:
        call.status = exc.status
        call.description = exc.description
        return _json(exc.payload(), exc.status)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        values: dict[str, Any] = dict(request.query)
        if not request.body_exists:
            return values
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("can't parse JSON object")
            values.update(body)
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, str):
                    values[name] = value
                elif isinstance(value, bytes | bytearray):
                    values[name] = bytes(value).decode("utf-8", "replace")
                else:
                    values[name] = f"<file {value.filename!r}>"
        return values

    def _handle_file(self, token: str, file_path: str) -> web.StreamResponse:
        if token != self.token:
            return _json(ApiError(401, "Unauthorized").payload(), 401)
        for file in self._files.values():
            if file.file_path == file_path:
                body = (b"fakebot:" + file.file_id.encode()).ljust(file.file_size, b"\0")
                return web.Response(body=body, content_type="application/octet-stream")
        return _json(ApiError(404, "Not Found").payload(), 404)

    async def _handle_control(self, request: web.Request) -> web.StreamResponse:
        """Tiny JSON control API for manual runs (``python -m sandbox``)."""
        action = request.path.removeprefix("/_fake/")
        try:
            body: JSONDict = await request.json() if request.body_exists else {}
            if action == "state":
                return _json(self._state(), 200)
            if action == "limits":
                self.set_limits(
                    bool(body.get("enabled", True)),
                    per_second=body.get("per_second"),
                    chat_burst=body.get("chat_burst"),
                    chat_per_second=body.get("chat_per_second"),
                )
                return _json(self._limits_state(), 200)
            user_id = int(body["user_id"])
            if action == "send":
                user = self.user(user_id, str(body.get("first_name", f"User{user_id}")))
                sent = await user.send_text(str(body["text"]))
                return _json(sent.to_dict(), 200)
            if action == "press":
                query_id = await self._require_user(user_id).press(str(body["button"]))
                return _json({"callback_query_id": query_id}, 200)
            if action == "block":
                self.block(user_id)
                return _json({"blocked": user_id}, 200)
        except (AssertionError, KeyError, ValueError, TypeError) as exc:
            return _json({"ok": False, "description": str(exc)}, 400)
        return _json({"ok": False, "description": f"unknown control action {action!r}"}, 404)

    def _state(self) -> JSONDict:
        return {
            "base_url": self.base_url,
            "pending_updates": self.pending_updates(),
            "chats": {
                str(chat_id): [{**m.to_dict(), "deleted": m.deleted} for m in messages]
                for chat_id, messages in self._chats.items()
            },
            "calls": [call.summary() for call in self.calls[-50:]],
            "limits": self._limits_state(),
        }

    def _limits_state(self) -> JSONDict:
        return {
            "enabled": self.limits,
            "per_second": self.per_second,
            "chat_burst": self.chat_burst,
            "chat_per_second": self.chat_per_second,
            "counted_calls": self.counted_calls,
            "max_per_second": self.max_per_second(),
            "flood_refusals": len(self.flood_refusals),
        }

    # ---------------------------------------------------------------------------------------
    # method helpers
    # ---------------------------------------------------------------------------------------

    def _chat_user(self, chat_id: int | str | None) -> FakeUser:
        """The user of an existing private chat (the user wrote to the bot before)."""
        if chat_id is None:
            raise bad_request("chat_id is empty")
        if isinstance(chat_id, str):
            raise bad_request("chat not found")
        if chat_id == self.bot_id:
            raise forbidden("bot can't send messages to bots")
        user = self._users.get(chat_id)
        if user is None:
            raise bad_request("chat not found")
        return user

    def _writable_user(self, chat_id: int | str | None) -> FakeUser:
        user = self._chat_user(chat_id)
        if user.user_id in self._blocked:
            raise forbidden("bot was blocked by the user")
        if not user.started:
            raise forbidden("bot can't initiate conversation with a user")
        return user

    def _format(self, p: _Params) -> tuple[str, list[JSONDict]]:
        raw = p.text("text")
        if raw is None:
            raise bad_request("message text is empty")
        entities = p.obj("entities")
        if entities is not None and not (
            isinstance(entities, list) and all(isinstance(e, dict) for e in entities)
        ):
            raise bad_request("can't parse entities JSON object")
        try:
            text, found = parse_text(raw, p.text("parse_mode"), entities)
        except EntityParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        if not text:
            raise bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise bad_request("message is too long")
        return text, [self._resolve_mention(entity) for entity in found]

    def _resolve_mention(self, entity: JSONDict) -> JSONDict:
        """``tg://user?id=N`` links become ``text_mention`` entities for known users."""
        user_id: int | None = None
        if entity.get("type") == "text_link":
            match = _USER_LINK.fullmatch(str(entity.get("url", "")))
            user_id = int(match.group(1)) if match else None
        elif entity.get("type") == "text_mention" and isinstance(entity.get("user"), dict):
            user_id = _Params(entity["user"]).integer("id")
        if user_id is None:
            return entity
        span = {"offset": entity["offset"], "length": entity["length"]}
        user = self._users.get(user_id)
        if user is not None:
            return {"type": "text_mention", **span, "user": user.to_dict()}
        if entity["type"] == "text_mention" and "first_name" in entity["user"]:
            return entity
        return {"type": "text_link", **span, "url": f"tg://user?id={user_id}"}

    def _reply_target(self, user: FakeUser, p: _Params) -> ChatMessage | None:
        parameters = p.obj("reply_parameters", what="reply parameters")
        if parameters is not None:
            if not isinstance(parameters, dict) or "message_id" not in parameters:
                raise bad_request("can't parse reply parameters JSON object")
            message_id = _Params(parameters).integer("message_id")
            allow_missing = _Params(parameters).flag("allow_sending_without_reply")
            other_chat = _Params(parameters).chat("chat_id")
            if other_chat is not None and other_chat != user.chat_id:
                raise bad_request("message to be replied not found")
        else:
            message_id = p.integer("reply_to_message_id")
            allow_missing = p.flag("allow_sending_without_reply")
        if message_id is None:
            return None
        target = self._find(user.chat_id, message_id)
        if target is None or target.deleted:
            if allow_missing:
                return None
            raise bad_request("message to be replied not found")
        return target

    def _bot_message(self, p: _Params, *, verb: str) -> tuple[FakeUser, ChatMessage]:
        user = self._chat_user(p.chat("chat_id"))
        message_id = p.integer("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        message = self._find(user.chat_id, message_id)
        if message is None or message.deleted:
            raise bad_request(f"message to {verb} not found")
        if verb == "edit":
            if user.user_id in self._blocked:
                raise forbidden("bot was blocked by the user")
            if not message.from_bot:
                raise bad_request("message can't be edited")
        return user, message

    def _scope_key(self, scope: Any) -> str:
        if scope is None:
            return '{"type": "default"}'
        if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
            raise bad_request("can't parse BotCommandScope JSON object")
        return json.dumps(scope, sort_keys=True)

    def _track_keyboard(self, user: FakeUser, markup: JSONDict | None) -> None:
        if markup is None:
            return
        if "keyboard" in markup:
            user.reply_keyboard_markup = copy.deepcopy(markup)
        elif markup.get("remove_keyboard"):
            user.reply_keyboard_markup = None

    def _new_bot_message(
        self,
        user: FakeUser,
        p: _Params,
        *,
        text: str | None,
        entities: list[JSONDict],
        kind: str = "text",
        payload: JSONDict | None = None,
    ) -> ChatMessage:
        markup = _validate_markup(p.obj("reply_markup", what="reply keyboard markup"))
        reply_to = self._reply_target(user, p)
        preview = p.obj("link_preview_options", what="link preview options")
        message = self._append(
            user,
            from_bot=True,
            text=text,
            kind=kind,
            entities=entities,
            payload=payload,
            reply_to=reply_to,
            reply_markup=markup,
            protect_content=p.flag("protect_content"),
            parse_mode=p.text("parse_mode"),
            disable_notification=p.flag("disable_notification"),
            link_preview_options=preview if isinstance(preview, dict) else None,
        )
        self._track_keyboard(user, markup)
        return message

    # ---------------------------------------------------------------------------------------
    # Bot API methods
    # ---------------------------------------------------------------------------------------

    async def _get_me(self, p: _Params, flight: _InFlight) -> Any:
        return {
            **self.bot_user_dict(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, p: _Params, flight: _InFlight) -> Any:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        self._polled = True
        offset = p.integer("offset")
        limit = min(max(p.integer("limit") or 100, 1), 100)
        timeout = max(p.number("timeout") or 0.0, 0.0)
        allowed = p.obj("allowed_updates", what="allowed_updates")
        if allowed is not None:
            if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
                raise bad_request("can't parse allowed_updates JSON object")
            self.allowed_updates = list(allowed)
        if offset is not None:
            if offset < 0:
                self._updates = self._updates[offset:]
            else:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if self._poll is not None:
            self._poll.superseded = True
            self._notify()
        poll = _Poll()
        self._poll = poll
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                if poll.superseded:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that "
                        "only one bot instance is running",
                    )
                if self._updates:
                    return copy.deepcopy(self._updates[:limit])
                remaining = deadline - loop.time()
                if remaining <= 0 or self._stopping:
                    return []
                event = self._event()
                flight.waiting = True
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), remaining)
                finally:
                    flight.waiting = False
        finally:
            if self._poll is poll:
                self._poll = None

    async def _set_webhook(self, p: _Params, flight: _InFlight) -> Any:
        url = p.text("url") or ""
        check_url(url)
        secret = p.text("secret_token")
        check_secret(secret)
        max_connections = p.integer("max_connections") or 40
        if not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        allowed = p.obj("allowed_updates", what="allowed_updates")
        if allowed is not None:
            if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
                raise bad_request("can't parse allowed_updates JSON object")
            self.allowed_updates = list(allowed)
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        await self._stop_webhook()
        self.webhook_url = url
        if url:
            self._webhook = WebhookSender(
                self, url, secret, max_connections, self.webhook_retry_seconds
            )
            self._webhook.start()
        return True

    async def _delete_webhook(self, p: _Params, flight: _InFlight) -> Any:
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        await self._stop_webhook()
        self.webhook_url = ""
        return True

    async def _stop_webhook(self) -> None:
        sender, self._webhook = self._webhook, None
        if sender is not None:
            await sender.stop()

    async def _get_webhook_info(self, p: _Params, flight: _InFlight) -> Any:
        info: JSONDict = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": self.pending_updates(),
        }
        if self._webhook is not None:
            info |= self._webhook.info()
        if self.allowed_updates is not None:
            info["allowed_updates"] = list(self.allowed_updates)
        return info

    async def _set_my_commands(self, p: _Params, flight: _InFlight) -> Any:
        commands = p.obj("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise bad_request("too many commands specified")
        cleaned: list[JSONDict] = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            name = command.get("command")
            description = command.get("description")
            if not isinstance(name, str) or not _COMMAND_NAME.fullmatch(name.lstrip("/")):
                raise bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name.lstrip("/"), "description": description})
        key = (self._scope_key(p.obj("scope")), p.text("language_code") or "")
        self._commands[key] = cleaned
        return True

    async def _get_my_commands(self, p: _Params, flight: _InFlight) -> Any:
        key = (self._scope_key(p.obj("scope")), p.text("language_code") or "")
        return copy.deepcopy(self._commands.get(key, []))

    async def _delete_my_commands(self, p: _Params, flight: _InFlight) -> Any:
        key = (self._scope_key(p.obj("scope")), p.text("language_code") or "")
        self._commands.pop(key, None)
        return True

    def _text_setter(self, field: str, limit: int) -> Handler:
        async def setter(p: _Params, flight: _InFlight) -> Any:
            value = p.text(field) or ""
            if len(value) > limit:
                raise bad_request(f"bot {field.replace('_', ' ')} is too long")
            self._texts[(field, p.text("language_code") or "")] = value
            return True

        return setter

    def _text_getter(self, field: str) -> Handler:
        async def getter(p: _Params, flight: _InFlight) -> Any:
            return {field: self._texts.get((field, p.text("language_code") or ""), "")}

        return getter

    async def _set_chat_menu_button(self, p: _Params, flight: _InFlight) -> Any:
        button = p.obj("menu_button") or {"type": "default"}
        if not isinstance(button, dict) or "type" not in button:
            raise bad_request("can't parse menu button JSON object")
        chat_id = p.chat("chat_id")
        if chat_id is not None:
            self._chat_user(chat_id)
        self._menu_buttons[chat_id if isinstance(chat_id, int) else None] = button
        return True

    async def _get_chat_menu_button(self, p: _Params, flight: _InFlight) -> Any:
        chat_id = p.chat("chat_id")
        key = chat_id if isinstance(chat_id, int) else None
        return self._menu_buttons.get(key) or self._menu_buttons.get(None) or {"type": "commands"}

    async def _get_chat(self, p: _Params, flight: _InFlight) -> Any:
        user = self._chat_user(p.chat("chat_id"))
        if not user.started:
            raise bad_request("chat not found")
        return {
            **user.chat_dict(),
            "accent_color_id": user.user_id % 7,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": True,
                "limited_gifts": True,
                "unique_gifts": True,
                "premium_subscription": True,
                "gifts_from_channels": True,
            },
        }

    async def _send_message(self, p: _Params, flight: _InFlight) -> Any:
        user = self._writable_user(p.chat("chat_id"))
        text, entities = self._format(p)
        return self._new_bot_message(user, p, text=text, entities=entities).to_dict()

    def _source_message(self, p: _Params, *, what: str) -> ChatMessage:
        source_user = self._chat_user(p.chat("from_chat_id"))
        message_id = p.integer("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        source = self._find(source_user.chat_id, message_id)
        if source is None or source.deleted:
            raise bad_request(f"message to {what} not found")
        if source.protect_content:
            raise bad_request(f"message has protected content and can't be {what}ed")
        return source

    async def _forward_message(self, p: _Params, flight: _InFlight) -> Any:
        user = self._writable_user(p.chat("chat_id"))
        source = self._source_message(p, what="forward")
        origin: JSONDict = {"type": "user", "sender_user": dict(source.sender), "date": source.date}
        message = self._append(
            user,
            from_bot=True,
            text=source.text,
            kind=source.kind,
            entities=source.entities,
            payload={**copy.deepcopy(source.payload), "forward_origin": origin},
            protect_content=p.flag("protect_content"),
            disable_notification=p.flag("disable_notification"),
        )
        return message.to_dict()

    async def _copy_message(self, p: _Params, flight: _InFlight) -> Any:
        user = self._writable_user(p.chat("chat_id"))
        source = self._source_message(p, what="copy")
        payload = {k: v for k, v in copy.deepcopy(source.payload).items() if k != "forward_origin"}
        message = self._new_bot_message(
            user, p, text=source.text, entities=source.entities, kind=source.kind, payload=payload
        )
        return {"message_id": message.message_id}

    async def _edit_message_text(self, p: _Params, flight: _InFlight) -> Any:
        if p.text("inline_message_id"):
            self._format(p)
            _validate_markup(p.obj("reply_markup"), inline_only=True)
            return True
        _, message = self._bot_message(p, verb="edit")
        text, entities = self._format(p)
        if message.kind != "text":
            raise bad_request("there is no text in the message to edit")
        markup = _validate_markup(
            p.obj("reply_markup", what="reply keyboard markup"), inline_only=True
        )
        if (
            message.text == text
            and message.entities == entities
            and _inline_only(message.reply_markup) == _inline_only(markup)
        ):
            raise bad_request(NOT_MODIFIED)
        message.text = text
        message.entities = entities
        message.parse_mode = p.text("parse_mode")
        _set_inline_markup(message, markup)
        message.edit_date = _now()
        message.edit_count += 1
        return message.to_dict()

    async def _edit_message_reply_markup(self, p: _Params, flight: _InFlight) -> Any:
        if p.text("inline_message_id"):
            _validate_markup(p.obj("reply_markup"), inline_only=True)
            return True
        _, message = self._bot_message(p, verb="edit")
        markup = _validate_markup(
            p.obj("reply_markup", what="reply keyboard markup"), inline_only=True
        )
        if _inline_only(message.reply_markup) == _inline_only(markup):
            raise bad_request(NOT_MODIFIED)
        _set_inline_markup(message, markup)
        message.edit_date = _now()
        message.edit_count += 1
        return message.to_dict()

    async def _delete_message(self, p: _Params, flight: _InFlight) -> Any:
        _, message = self._bot_message(p, verb="delete")
        message.deleted = True
        return True

    async def _delete_messages(self, p: _Params, flight: _InFlight) -> Any:
        user = self._chat_user(p.chat("chat_id"))
        ids = p.obj("message_ids")
        if not isinstance(ids, list) or not ids:
            raise bad_request("message identifiers are not specified")
        if len(ids) > 100:
            raise bad_request("too many message identifiers specified")
        for message_id in ids:
            if not isinstance(message_id, int) or isinstance(message_id, bool):
                raise bad_request("can't parse message identifiers")
            message = self._find(user.chat_id, message_id)
            if message is not None:
                message.deleted = True
        return True

    async def _answer_callback_query(self, p: _Params, flight: _InFlight) -> Any:
        query = self._callback_queries.get(p.text("callback_query_id") or "")
        if query is None or query.answer is not None:
            raise bad_request(QUERY_INVALID)
        text = p.text("text")
        if text is not None and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        query.answer = {
            "callback_query_id": query.query_id,
            "data": query.data,
            "message_id": query.message_id,
            "text": text,
            "show_alert": p.flag("show_alert"),
            "url": p.text("url"),
            "cache_time": p.integer("cache_time"),
            "answered_at": time.monotonic(),
        }
        return True

    async def _send_chat_action(self, p: _Params, flight: _InFlight) -> Any:
        self._writable_user(p.chat("chat_id"))
        if p.text("action") not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    async def _get_file(self, p: _Params, flight: _InFlight) -> Any:
        file = self._files.get(p.text("file_id") or "")
        if file is None:
            raise bad_request("invalid file_id")
        return {
            "file_id": file.file_id,
            "file_unique_id": file.file_unique_id,
            "file_size": file.file_size,
            "file_path": file.file_path,
        }

    async def _leave_chat(self, p: _Params, flight: _InFlight) -> Any:
        self._chat_user(p.chat("chat_id"))
        raise bad_request("chat member status can't be changed in private chats")

    async def _close(self, p: _Params, flight: _InFlight) -> Any:
        self.closed = True
        return True

    async def _log_out(self, p: _Params, flight: _InFlight) -> Any:
        self.logged_out = True
        return True


# -------------------------------------------------------------------------------------------
# module helpers
# -------------------------------------------------------------------------------------------


def _json(body: Any, status: int) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _default_description(status: int, retry_after: int | None) -> str:
    if status == 429:
        return f"Too Many Requests: retry after {retry_after}"
    return {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }.get(status, "Internal Server Error")


def _check_limit_numbers(per_second: int, chat_burst: int, chat_per_second: float) -> None:
    if isinstance(per_second, bool) or not isinstance(per_second, int) or per_second < 1:
        raise ValueError(f"per_second must be a whole number >= 1, got {per_second!r}")
    if isinstance(chat_burst, bool) or not isinstance(chat_burst, int) or chat_burst < 1:
        raise ValueError(f"chat_burst must be a whole number >= 1, got {chat_burst!r}")
    if not chat_per_second > 0:
        raise ValueError(f"chat_per_second must be > 0, got {chat_per_second!r}")


def _flood_chat(params: dict[str, Any]) -> int | str | None:
    """The chat a counted call goes to, for its per-chat bucket (``None``: inline edits)."""
    try:
        return _Params(params).chat("chat_id")
    except ApiError:
        return None  # the method itself answers 400 for it


def _validate_markup(markup: Any, *, inline_only: bool = False) -> JSONDict | None:
    """Validate reply_markup like Telegram; returns it (or None when absent)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        total = 0
        for row in rows:
            for button in row:
                _validate_inline_button(button)
                total += 1
        if total > 100:
            raise bad_request("reply markup is too long")
        return markup
    if inline_only:
        raise bad_request("inline keyboard expected")
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'field "keyboard" of the ReplyKeyboardMarkup must be an Array of Arrays'
            )
        for row in rows:
            for button in row:
                text = button if isinstance(button, str) else None
                if isinstance(button, dict):
                    text = button.get("text")
                if not isinstance(text, str) or not text:
                    raise bad_request("can't parse keyboard button: Text must be non-empty")
        return markup
    if markup.get("remove_keyboard") is True or markup.get("force_reply") is True:
        return markup
    raise bad_request("can't parse reply keyboard markup JSON object")


def _validate_inline_button(button: Any) -> None:
    prefix = "can't parse inline keyboard button: "
    if not isinstance(button, dict):
        raise bad_request(prefix + "InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise bad_request(prefix + 'Field "text" must be of type String')
    if not any(action in button for action in _INLINE_BUTTON_ACTIONS):
        raise bad_request(prefix + "Text buttons are unallowed in the inline keyboard")
    if "callback_data" in button:
        data = button["callback_data"]
        size = len(data.encode("utf-8")) if isinstance(data, str) else 0
        if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button:
        url = button["url"]
        if not isinstance(url, str) or not _BUTTON_URL.fullmatch(url):
            raise bad_request("BUTTON_URL_INVALID")


def _inline_only(markup: JSONDict | None) -> list[Any] | None:
    """The inline keyboard rows (``None`` when absent or empty) -- for "not modified" checks."""
    if not markup or not markup.get("inline_keyboard"):
        return None
    rows = markup["inline_keyboard"]
    return rows if isinstance(rows, list) and any(rows) else None


def _set_inline_markup(message: ChatMessage, markup: JSONDict | None) -> None:
    if _inline_only(markup) is not None:
        message.reply_markup = markup
    elif message.reply_markup is not None and "inline_keyboard" in message.reply_markup:
        message.reply_markup = None


def _application_busy(app: Any) -> bool:
    """Whether a PTB Application still has fetched updates queued or being processed."""
    queue = getattr(app, "update_queue", None)
    if queue is not None and (queue.qsize() or getattr(queue, "_unfinished_tasks", 0)):
        return True
    processor = getattr(app, "update_processor", None)
    return bool(processor is not None and processor.current_concurrent_updates)


def _describe_callable(predicate: Callable[[], bool]) -> str:
    try:
        source = inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        source = ""
    if source and len(source) < 300:
        return source
    return getattr(predicate, "__qualname__", repr(predicate))


_REAL_METHODS: frozenset[str] | None = None


def _real_method_names() -> frozenset[str]:
    """Lower-cased Bot API method names known to python-telegram-bot (if installed)."""
    global _REAL_METHODS
    if _REAL_METHODS is None:
        try:
            import telegram
        except ImportError:  # pragma: no cover - PTB is a project dependency
            names: set[str] = set()
        else:
            names = {
                name.lower()
                for name in dir(telegram.Bot)
                if name[:1].islower() and "_" not in name and name.lower() != name
            }
            names.update({"close", "logout"})
        _REAL_METHODS = frozenset(names)
    return _REAL_METHODS
