"""Delivery through the persistent outbox.

A service that decides to tell someone something calls :func:`enqueue` inside its own
transaction, so the message exists exactly when the event that caused it does. The
:class:`Sender` loop sends what is due:

- within Telegram's limits: about 30 messages a second overall and one a second per chat
  (python-telegram-bot's AIORateLimiter does not enforce the per-chat limit, so we do);
- retrying with back-off on 429 (honouring ``retry_after``), 5xx, network errors and
  timeouts, for as long as it takes: a message accepted is delivered once Telegram is
  reachable;
- marking the item failed on 403 (the person blocked the bot) and telling whoever the
  message was sent for.

Most urgent first: a duress signal or a first alert about a "right now" request
(``PRIORITY_URGENT``) goes before the re-alert of an unclaimed one (``PRIORITY_ESCALATION``,
collapsed to one waiting per request and reader), which goes before ordinary messages.

A row is deleted only after Telegram accepted the message, so a crash between the send and
the delete re-sends it once on restart: at most one duplicate per crash, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError

from bot import activity
from bot.chat import About, remember
from bot.core import Core
from bot.i18n import t
from bot.limits import MAX_BACKOFF_SECONDS, backoff
from bot.people import chat_id_of
from crypto.boxes import RecordPlace
from crypto.keystore import ServerSecrets
from storage import outbox as queue
from storage.models import OutboxItem, Person, new_id, utcnow

log = logging.getLogger(__name__)

PRIORITY_URGENT = 0  # duress, first alerts of "right now" requests
PRIORITY_ESCALATION = 1  # re-alerts of urgent requests nobody claimed
PRIORITY_NORMAL = 2  # alerts, relayed messages, replies
PRIORITY_BULK = 3  # broadcasts, prompts
PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class FailureNotice:
    """Who to tell, and with which catalogue entry, if the recipient blocked the bot."""

    person_id: str
    key: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outgoing:
    text: str
    buttons: Sequence[Sequence[tuple[str, str]]] = ()
    edit_message_id: int | None = None
    link: About | None = None
    on_failure: FailureNotice | None = None
    priority: int = PRIORITY_NORMAL

    def __repr__(self) -> str:
        return "Outgoing(<sealed>)"

    def to_bytes(self) -> bytes:
        payload = {
            "v": PAYLOAD_VERSION,
            "text": self.text,
            "buttons": [[list(b) for b in row] for row in self.buttons],
            "edit": self.edit_message_id,
            "link": asdict(self.link) if self.link else None,
            "on_failure": asdict(self.on_failure) if self.on_failure else None,
        }
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, priority: int) -> Outgoing:
        payload = json.loads(data)
        if payload.get("v") != PAYLOAD_VERSION:
            raise ValueError("unknown outbox payload version")
        return cls(
            text=payload["text"],
            buttons=[[(label, data) for label, data in row] for row in payload["buttons"]],
            edit_message_id=payload["edit"],
            link=About(**payload["link"]) if payload["link"] else None,
            on_failure=FailureNotice(**payload["on_failure"]) if payload["on_failure"] else None,
            priority=priority,
        )

    def markup(self) -> InlineKeyboardMarkup | None:
        if not self.buttons:
            return None
        return InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(label, callback_data=data) for label, data in row]
                for row in self.buttons
            ]
        )


def payload_place(item_id: str) -> RecordPlace:
    return RecordPlace("outbox", "payload", item_id)


def enqueue(
    session: AsyncSession,
    keys: ServerSecrets,
    recipient_id: str,
    message: Outgoing,
    *,
    due_at: datetime | None = None,
    about: str | None = None,
    collapse_key: str | None = None,
) -> str:
    """Queue ``message`` for ``recipient_id`` in the caller's transaction. ``about`` (by
    default the linked member) ties the item to a member, so erasing them removes it;
    ``collapse_key`` lets a later message replace this one while it waits
    (storage.outbox.drop_collapsed)."""
    item_id = new_id()
    now = utcnow()
    session.add(
        OutboxItem(
            id=item_id,
            recipient_id=recipient_id,
            priority=message.priority,
            created_at=now,
            due_at=due_at or now,
            payload=keys.server_box.seal(message.to_bytes(), payload_place(item_id)),
            about_member_id=about or (message.link.member_id if message.link else None),
            collapse_key=collapse_key,
        )
    )
    return item_id


class Sender:
    """Sends due outbox items until stopped. One per process.

    Several sends are in flight at once (Telegram answers in ~100 ms, so one at a time
    would cap us far below 30/s), but never two to the same chat, and the start of each
    send is spaced to stay under the global rate.
    """

    def __init__(
        self,
        core: Core,
        bot: Bot,
        *,
        per_second: float = 30.0,
        per_chat_interval: float = 1.0,
        concurrency: int = 8,
        idle_poll: float = 5.0,
        scrub: Callable[[], None] = lambda: None,
    ) -> None:
        self._core = core
        self._bot = bot
        self._spacing = 1.0 / per_second
        self._per_chat_interval = per_chat_interval
        self._slots = asyncio.Semaphore(concurrency)
        self._idle_poll = idle_poll
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._next_start = 0.0
        self._paused_until = 0.0
        self._chat_ready: dict[int, float] = {}  # in memory only: chat ids never hit disk
        self._in_flight: dict[str, int] = {}  # outbox item id -> chat id
        self._tasks: set[asyncio.Task[None]] = set()
        self._scrub = scrub
        self.sent = 0
        self.failed = 0

    def wake(self) -> None:
        """Something was enqueued: look now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-sender")

    async def stop(self) -> None:
        """Finish the sends in flight, then stop. Unsent items stay queued for next time."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before looking, so a wake-up that arrives during the round is kept.
            self._wake.clear()
            try:
                pause = await self._round()
            except Exception as exc:  # a database hiccup must not end delivery for good
                log.error("outbox round failed: %s", type(exc).__name__, exc_info=exc)
                pause = 1.0
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(pause, 0.005))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _round(self) -> float:
        """Start every due item that may go now; return how long to wait before the next."""
        now_mono = time.monotonic()
        if now_mono < self._paused_until:
            return self._paused_until - now_mono
        core = self._core
        async with core.sessions() as session:
            items = await queue.due_items(session, utcnow(), limit=100)
            next_due = await queue.next_due(session)
            targets = {
                i.recipient_id: await chat_id_of(session, core.secrets, i.recipient_id)
                for i in items
                if i.id not in self._in_flight
            }
        soonest = self._idle_poll
        busy_chats = set(self._in_flight.values())
        for item in items:
            if item.id in self._in_flight:
                continue
            chat_id = targets.get(item.recipient_id)
            if chat_id is None:
                # Revoked or erased since it was queued: they receive nothing more.
                async with core.sessions() as session, session.begin():
                    await queue.remove(session, item.id)
                continue
            ready = self._chat_ready.get(chat_id, 0.0)
            if chat_id in busy_chats or ready > time.monotonic():
                soonest = min(soonest, max(ready - time.monotonic(), 0.01))
                continue
            await self._slots.acquire()
            wait = self._next_start - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_start = time.monotonic() + self._spacing
            self._chat_ready[chat_id] = time.monotonic() + self._per_chat_interval
            busy_chats.add(chat_id)
            self._in_flight[item.id] = chat_id
            task = asyncio.create_task(self._deliver(item, chat_id))
            self._tasks.add(task)
            task.add_done_callback(self._done)
            if self._stopping or time.monotonic() < self._paused_until:
                break
        if next_due is not None and (until_due := (next_due - utcnow()).total_seconds()) > 0:
            soonest = min(soonest, until_due)
        # Items already due but held back are covered above (their chat's next free slot)
        # or by the wake-up each finished send gives.
        if len(self._chat_ready) > 10_000:
            now_mono = time.monotonic()
            self._chat_ready = {c: r for c, r in self._chat_ready.items() if r > now_mono}
        return soonest

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        self._wake.set()

    async def _deliver(self, item: OutboxItem, chat_id: int) -> None:
        try:
            await self._deliver_one(item, chat_id)
        except Exception as exc:  # e.g. the database was busy: the item stays due
            log.error("outbox delivery step failed: %s", type(exc).__name__, exc_info=exc)
        finally:
            self._in_flight.pop(item.id, None)
            # A sent or failed item's readable text left the table: have the WAL forget
            # it too (debounced by the scrubber).
            self._scrub()

    async def _deliver_one(self, item: OutboxItem, chat_id: int) -> None:
        core = self._core
        try:
            assert item.payload is not None
            message = Outgoing.from_bytes(
                core.secrets.server_box.open(item.payload, payload_place(item.id)), item.priority
            )
        except Exception as exc:
            log.error("outbox item unreadable, marked failed: %s", type(exc).__name__)
            async with core.sessions() as session, session.begin():
                await queue.mark_failed(session, item.id, "unreadable")
            self.failed += 1
            return
        try:
            sent_message_id = await self._send(chat_id, message)
        except RetryAfter as exc:
            with warnings.catch_warnings():  # PTB 22 warns that the type will change
                warnings.simplefilter("ignore")
                delay = _seconds(exc.retry_after)
            # Flood control is per bot: hold every send, not just this one.
            self._paused_until = max(self._paused_until, time.monotonic() + delay)
            await self._later(item, delay, "429", count=False)
        except Forbidden:
            await self._fail(item, message, "403")
        except BadRequest as exc:
            if message.edit_message_id is not None:
                # Editing a message that is gone or unchanged: nothing left to do.
                async with core.sessions() as session, session.begin():
                    await queue.remove(session, item.id)
            else:
                await self._fail(item, message, f"400 {type(exc).__name__}")
        except InvalidToken:
            log.error("Telegram refused the bot token; outbox paused")
            await self._later(item, MAX_BACKOFF_SECONDS, "401")
        except (TelegramError, OSError) as exc:
            # NetworkError (5xx, connection), TimedOut, and anything transient.
            await self._later(item, backoff(item.attempts), type(exc).__name__)
        else:
            async with core.sessions() as session, session.begin():
                await queue.remove(session, item.id)
                if sent_message_id is not None:
                    # Every chat clears itself; a staff copy remembers whom it is about.
                    await remember(
                        session,
                        core.settings,
                        item.recipient_id,
                        [sent_message_id],
                        about=message.link,
                    )
            self.sent += 1
            activity.count("messages sent")

    async def _send(self, chat_id: int, message: Outgoing) -> int | None:
        if message.edit_message_id is not None:
            await self._bot.edit_message_text(
                message.text, chat_id, message.edit_message_id, reply_markup=message.markup()
            )
            return None
        sent = await self._bot.send_message(
            chat_id, message.text, reply_markup=message.markup(), protect_content=True
        )
        return sent.message_id

    async def _later(
        self, item: OutboxItem, delay: float, error: str, *, count: bool = True
    ) -> None:
        async with self._core.sessions() as session, session.begin():
            await queue.retry_later(
                session, item.id, utcnow() + timedelta(seconds=delay), error, count=count
            )

    async def _fail(self, item: OutboxItem, message: Outgoing, error: str) -> None:
        core = self._core
        activity.count("sends failed")
        async with core.sessions() as session, session.begin():
            await queue.mark_failed(session, item.id, error)
            notice = message.on_failure
            if notice is not None:
                person = await session.get(Person, notice.person_id)
                if person is not None and person.revoked_at is None:
                    text = t(person.language, notice.key, **notice.values)
                    enqueue(session, core.secrets, person.id, Outgoing(text))
        self.failed += 1
        self.wake()


def _seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)
