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

Several processes may send from one outbox (issue 13): each claims its item with a lease
and takes its turn from the flood budget kept in the database (storage.outbox.claim_next),
so no item goes out twice and all of them together keep to Telegram's limits. An item
whose sender died is taken over when its lease runs out (:data:`LEASE`): at least once, as
above -- a duplicate only if the process died between Telegram's answer and the delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import ExtBot

from bot import activity
from bot.chat import About, clear_kind_now, delete_due, record_sent
from bot.core import Core
from bot.i18n import t
from bot.limits import MAX_BACKOFF_SECONDS, backoff
from bot.pace import TAKEN, Pace, SharedClock, retry_after_seconds
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
CHAT_IDS_KEPT = 10_000
CHOICE_LEAD = 0.015  # seconds before a turn is free that the sender picks its item (at least)
# A claim is a short write transaction (bot/outbox: lease, overall turn, chat turn); on a
# busy machine it takes longer than CHOICE_LEAD, and turns taken late would slip the pace.
# So the sender picks its item as early before the turn as its recent claims took (x1.5),
# up to MAX_CHOICE_LEAD: an urgent item queued later than that waits one turn more.
MAX_CHOICE_LEAD = 0.1
# How long a claimed item is left to its sender without news. A live sender renews the
# leases of its sends in flight every RENEW_EVERY seconds, however long Telegram takes; a
# dead one's items are taken over by another process (or by itself, restarted) this long
# after its last renewal. A turn that comes when less than a third of the lease is left (a
# stalled process) is not trusted: the item is given back unsent.
LEASE = timedelta(seconds=15)
RENEW_EVERY = 5.0
# A turn is asked for this long before it is needed at the least -- the time to commit it
# and wake up for it, as measured (x2), up to the most.
MIN_TURN_LEAD = 0.005
MAX_TURN_LEAD = 0.06
# A send whose turn passed more than this much of a turn ago does not go: it takes another.
# Why this much: on-time turns put at most 29 sends in any second (30 of them span 1.007 s),
# so a second holds 31 -- a 429 -- only if two sends of the second before it arrive in it;
# a send let go at most 0.4 of a turn late, plus the way to Telegram (up to ~13 ms on a
# loaded machine, measured), stays within one turn (35 ms), so only one can.
MISSED_BY = 0.4
MISSED_TURNS_TRIED = 5
FORGET_TURNS_EVERY = 60.0  # seconds: recipients' old turns are dropped from the table
BUSY_ELSEWHERE_POLL = 0.1  # seconds: an item is due but another process holds its chat
_IN_FLIGHT = float("inf")  # in Sender._busy: a send to this recipient is under way


class _ChatTaken(Exception):
    """Another process took the chat's turn first: roll the turns back."""


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
    # A kind of the bot's own messages (bot.chat.About.kind) this one replaces: those still
    # in the recipient's chat are deleted just before it is sent (an unanswered prompt).
    replaces: str | None = None

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
            "replaces": self.replaces,
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
            replaces=payload.get("replaces"),
        )

    def markup(self) -> InlineKeyboardMarkup | None:
        if not self.buttons:
            return None
        return InlineKeyboardMarkup(
            [[inline_button(label, data) for label, data in row] for row in self.buttons]
        )


# A button's data starting with this opens the Mini App page at the URL that follows (a
# ``web_app`` button) instead of coming back as a callback.
WEBAPP_BUTTON = "webapp:"


def inline_button(label: str, data: str) -> InlineKeyboardButton:
    """A callback button, or a Mini App button for data ``webapp:<url>``."""
    if data.startswith(WEBAPP_BUTTON):
        return InlineKeyboardButton(label, web_app=WebAppInfo(data[len(WEBAPP_BUTTON) :]))
    return InlineKeyboardButton(label, callback_data=data)


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
    broadcast_id: str | None = None,
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
            broadcast_id=broadcast_id,
        )
    )
    return item_id


class Sender:
    """Sends due outbox items until stopped. One per process.

    Before every send it takes the most urgent due item whose chat may be sent to now
    (storage.outbox.next_item): a turn from the shared :class:`~bot.pace.Pace` first, then
    the choice, so an urgent item queued a moment ago goes ahead of a bulk backlog, and a
    chat with a long queue never holds up the others -- its recipient is simply left out
    of the choice until the chat's second has passed.

    Several sends are in flight at once (Telegram answers in ~100 ms, so one at a time
    would cap us far below 30/s), never two to the same chat. Chat ids are opened once per
    recipient and kept in memory (never on disk); :meth:`forget` drops one when a person is
    revoked or erased.
    """

    def __init__(
        self,
        core: Core,
        bot: ExtBot[Any],
        pace: Pace,
        *,
        concurrency: int = 8,
        idle_poll: float = 5.0,
        scrub: Callable[[], None] = lambda: None,
        unreachable: Callable[[AsyncSession, str], Awaitable[object]] | None = None,
    ) -> None:
        self._core = core
        self._bot = bot
        self._pace = pace
        self._slots = asyncio.Semaphore(concurrency)
        self._idle_poll = idle_poll
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._chat_ids: OrderedDict[str, int] = OrderedDict()
        # Recipients left out of the next choice: a send in flight, or their chat's second
        # not over yet (monotonic time it is).
        self._busy: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._scrub = scrub
        # This process's name on the leases it holds: random, per start, and meaningless
        # outside the outbox.
        self._owner = new_id()
        self._forget_turns_at = 0.0
        self._lead = CHOICE_LEAD
        self._turn_lead = MIN_TURN_LEAD
        self._shared_clock = SharedClock()
        self._late_by = pace.spacing * MISSED_BY
        self._leased: set[str] = set()  # ids of the items this process is sending now
        # SQLite: the sender's own write transactions take turns here rather than in
        # SQLite's busy handler, whose back-off sleeps (1, 2, 5, 10 ... ms) made a claim
        # wait ~30 ms behind the bookkeeping of sends just done. (Other processes, and
        # the handlers, still meet it there; PostgreSQL locks rows, and needs none of it.)
        self._writes: asyncio.Lock | None = (
            asyncio.Lock() if core.engine.dialect.name == "sqlite" else None
        )
        self._renewed_until = utcnow()
        self._renewer: asyncio.Task[None] | None = None
        # Told, in the same transaction, when Telegram refuses a recipient for good (403):
        # for a member that is a safety signal (bot.welfare.unreachable), not an opt-out.
        self._unreachable = unreachable
        self.sent = 0
        self.failed = 0

    @contextlib.asynccontextmanager
    async def _write_turn(self) -> AsyncIterator[None]:
        if self._writes is None:
            yield
            return
        async with self._writes:
            yield

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, for one of the sender's writes."""
        async with self._write_turn(), self._core.sessions() as session, session.begin():
            yield session

    def wake(self) -> None:
        """Something was enqueued: look now instead of at the next poll."""
        self._wake.set()

    def forget(self, person_id: str) -> None:
        """A revoked or erased person: their chat id is not kept a moment longer."""
        self._chat_ids.pop(person_id, None)

    def keeps_chat_of(self, person_id: str) -> bool:
        """Whether this person's chat id is held in memory (for tests and diagnostics)."""
        return person_id in self._chat_ids

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-sender")
            self._renewer = asyncio.create_task(self._renew(), name="outbox-leases")

    async def stop(self) -> None:
        """Finish the sends in flight, then stop. Unsent items stay queued for next time."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    async def _renew(self) -> None:
        """Keep the leases of this process's sends in flight, so a slow Telegram answer
        never lets another process send the same item."""
        while True:
            await asyncio.sleep(RENEW_EVERY)
            leased = list(self._leased)
            if not leased:
                continue
            until = utcnow() + LEASE
            try:
                async with self._writing() as session:
                    await queue.renew(session, self._owner, leased, until)
                self._renewed_until = until
            except Exception as exc:  # tried again in a few seconds
                log.warning("outbox leases not renewed: %s", type(exc).__name__)

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before looking, so a wake-up that arrives during the step is kept.
            self._wake.clear()
            try:
                pause = await self._step()
            except Exception as exc:  # a database hiccup must not end delivery for good
                log.error("outbox step failed: %s", type(exc).__name__, exc_info=exc)
                pause = 1.0
            if self._stopping or pause <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=pause)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            async with self._writing() as session:
                await queue.release_all(session, self._owner)
        except Exception as exc:  # the leases run out by themselves
            log.warning("outbox leases not given back: %s", type(exc).__name__)

    async def _step(self) -> float:
        """Start the most urgent sendable item, if any; return how long to wait before the
        next step (0: at once)."""
        await self._slots.acquire()
        started = False
        try:
            # Choose just before the next turn is free: late enough that an urgent item
            # queued a moment ago is seen, early enough that the turn is taken on time --
            # the claim's own time, and the lead the turn itself is asked for with.
            await self._pace.wait_free(lead=self._lead + self._turn_lead, after_handlers=True)
            if self._stopping:
                return 0.0
            now = time.monotonic()
            self._busy = {r: at for r, at in self._busy.items() if at > now}
            core = self._core
            item = await self._claim()
            took = time.monotonic() - now
            self._lead = min(MAX_CHOICE_LEAD, max(CHOICE_LEAD, 0.8 * self._lead + 0.3 * took))
            if item is None:
                async with core.sessions() as session:
                    return await self._idle_for(session, now)
            async with core.sessions() as session:
                chat_id = await self._chat_id(session, item.recipient_id)
            if chat_id is None:
                # Revoked or erased since it was queued: they receive nothing more.
                async with self._writing() as session:
                    await queue.remove(session, item.id)
                    await queue.count_broadcast(session, item.broadcast_id, delivered=False)
                return 0.0
            # The next choice waits a turn here; the turns themselves come from the shared
            # budget, taken by the send's task (_deliver), so this loop waits on one short
            # statement per item, not three.
            self._pace.advance()
            self._busy[item.recipient_id] = _IN_FLIGHT
            self._leased.add(item.id)
            task = asyncio.create_task(self._deliver(item, chat_id))
            self._tasks.add(task)
            task.add_done_callback(self._done)
            started = True
            return 0.0
        finally:
            if not started:
                self._slots.release()

    async def _claim(self) -> OutboxItem | None:
        """Lease the most urgent sendable item (one statement)."""
        core, pace = self._core, self._pace
        wall = time.monotonic()
        async with self._write_turn(), core.sessions() as session:
            async with session.begin():
                item = await queue.claim_next(
                    session,
                    self._owner,
                    utcnow(),
                    lease=LEASE,
                    per_chat=pace.per_chat,
                    exclude=self._busy,
                )
                debt = pace.take_debt() if item is None else 0
                if debt:
                    # Nothing to send: the handlers' turns are charged all the same.
                    await queue.reserve_turn(session, spacing=pace.spacing, debt=debt - 1)
            if wall >= self._forget_turns_at:
                self._forget_turns_at = wall + FORGET_TURNS_EVERY
                async with session.begin():
                    await queue.forget_turns(session, FORGET_TURNS_EVERY)
        return item

    async def _turns(
        self, item: OutboxItem, chat_id: int, missed: float | None = None
    ) -> tuple[float, float] | None:
        """The item's turns from the shared budget, charging the turns this process's
        handlers used meanwhile: when to send (monotonic) and the overall turn (the
        database's clock), or None if another process took its chat a moment ago (the item
        is given back, its chat left out for a second). ``missed``: this item's own turn,
        which came and went before it could be sent; its chat's turn moves with it."""
        pace = self._pace
        # Should a handler here have answered this chat a moment ago, its second first:
        # the send must go on the overall turn it is given, not after it.
        if (wait := pace.chat_free_at(chat_id) - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        debt = pace.take_debt()
        try:
            async with self._writing() as session:
                turn = await queue.reserve_turn(
                    session, spacing=pace.spacing, lead=self._turn_lead, debt=debt
                )
                send_at = self._shared_clock.local(turn.at, turn.given)
                reserved = time.monotonic()
                if not await queue.take_chat_turn(
                    session, item.recipient_id, turn.at, per_chat=pace.per_chat, previous=missed
                ):
                    raise _ChatTaken
        except _ChatTaken:  # nothing of the transaction was kept
            pace.owe(debt)
            async with self._writing() as session:
                await queue.release(session, item.id)
            return None
        except BaseException:
            pace.owe(debt)
            raise
        # The lead asked for next time: what committing took now, with room to spare,
        # shrinking slowly when commits are quick again.
        took = time.monotonic() - reserved
        self._turn_lead = min(MAX_TURN_LEAD, max(MIN_TURN_LEAD, 2 * took, 0.95 * self._turn_lead))
        pace.taken(send_at, chat_id)
        return send_at, turn.at

    async def _idle_for(self, session: AsyncSession, now: float) -> float:
        """Nothing sendable now: until a held-back chat frees up, the next item falls due,
        or the idle poll -- whichever is first (a wake-up cuts it short)."""
        soonest = self._idle_poll
        free_at = await queue.next_unclaimed(session, utcnow(), exclude=self._busy)
        if free_at is not None:
            # Due and not held back here, yet not claimed: another process holds its chat
            # for a moment, or the item itself until its lease runs out.
            soonest = min(soonest, max((free_at - utcnow()).total_seconds(), BUSY_ELSEWHERE_POLL))
        waiting = [at for at in self._busy.values() if at != _IN_FLIGHT]
        if waiting:
            # A little past the moment: the loop's timers may fire a hair early.
            soonest = min(soonest, max(min(waiting) - now + 0.002, 0.005))
        next_due = await queue.next_due(session, utcnow())
        if next_due is not None:
            soonest = min(soonest, max((next_due - utcnow()).total_seconds(), 0.005))
        return soonest

    async def _chat_id(self, session: AsyncSession, person_id: str) -> int | None:
        chat_id = self._chat_ids.get(person_id)
        if chat_id is not None:
            self._chat_ids.move_to_end(person_id)
            return chat_id
        chat_id = await chat_id_of(session, self._core.secrets, person_id)
        if chat_id is not None:
            self._chat_ids[person_id] = chat_id
            if len(self._chat_ids) > CHAT_IDS_KEPT:
                self._chat_ids.popitem(last=False)
        return chat_id

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        self._wake.set()

    async def _deliver(self, item: OutboxItem, chat_id: int) -> None:
        try:
            message = await self._open(item)
            if message is None:
                return
            if message.replaces is not None:
                # Before the turn: gone from the chat before the new one arrives, and no
                # database write or deletion between the turn and the send.
                async with self._writing() as session:
                    old = await clear_kind_now(session, item.recipient_id, message.replaces)
                if old:
                    await delete_due(self._core, self._bot, person_id=item.recipient_id)
            missed: float | None = None
            for _ in range(MISSED_TURNS_TRIED):
                turns = await self._turns(item, chat_id, missed)
                if turns is None:
                    self._busy[item.recipient_id] = time.monotonic() + self._pace.per_chat
                    return
                send_at, missed = turns
                await asyncio.sleep(max(0.0, send_at - time.monotonic()))
                if time.monotonic() - send_at <= self._late_by:
                    break
                # A loaded machine (a late wake-up, a slow commit): the turn has passed. Sent
                # now, this message would land next to another process's on-time one; it
                # takes the next turn instead, and turns are asked for earlier from now on.
                activity.count("turns missed")
                self._turn_lead = min(MAX_TURN_LEAD, 1.5 * self._turn_lead)
            else:
                await self._give_back(item)
                return
            assert item.claimed_until is not None
            if utcnow() > max(item.claimed_until, self._renewed_until) - LEASE / 3:
                # This process stalled: another may take the item over any moment now.
                await self._give_back(item)
                return
            await self._deliver_one(item, chat_id, message)
        except Exception as exc:  # e.g. the database was busy: the item stays due
            log.error("outbox delivery step failed: %s", type(exc).__name__, exc_info=exc)
        finally:
            # No longer renewed: whatever is left of the lease runs out, and the item (if it
            # is still there) is due again for any process.
            self._leased.discard(item.id)
            # The chat's own second runs from this send's turn (Pace.chat_free_at).
            self._busy[item.recipient_id] = self._pace.chat_free_at(chat_id)
            # A sent or failed item's readable text left the table: have the WAL forget
            # it too (debounced by the scrubber).
            self._scrub()

    async def _give_back(self, item: OutboxItem) -> None:
        async with self._writing() as session:
            await queue.release(session, item.id)

    async def _open(self, item: OutboxItem) -> Outgoing | None:
        """The item's message, or None if it cannot be read (marked failed)."""
        try:
            assert item.payload is not None
            return Outgoing.from_bytes(
                self._core.secrets.server_box.open(item.payload, payload_place(item.id)),
                item.priority,
            )
        except Exception as exc:
            log.error("outbox item unreadable, marked failed: %s", type(exc).__name__)
            async with self._writing() as session:
                await queue.mark_failed(session, item.id, "unreadable")
            self.failed += 1
            return None

    async def _deliver_one(self, item: OutboxItem, chat_id: int, message: Outgoing) -> None:
        core = self._core
        try:
            sent_message_id = await self._send(chat_id, message)
        except RetryAfter as exc:
            # The pace already holds every turn for this long (flood control is per bot).
            delay = retry_after_seconds(exc)
            await self._later(item, delay, "429", count=False, pause=True)
        except Forbidden:
            await self._fail(item, message, "403")
        except BadRequest as exc:
            if message.edit_message_id is not None:
                # Editing a message that is gone or unchanged: nothing left to do.
                async with self._writing() as session:
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
            async with self._writing() as session:
                await queue.remove(session, item.id)
                await queue.count_broadcast(session, item.broadcast_id, delivered=True)
                if sent_message_id is not None:
                    # Every chat clears itself; a staff copy remembers whom it is about.
                    await record_sent(
                        session,
                        core.settings,
                        item.recipient_id,
                        sent_message_id,
                        about=message.link,
                    )
            self.sent += 1
            activity.count("messages sent")

    async def _send(self, chat_id: int, message: Outgoing) -> int | None:
        if message.edit_message_id is not None:
            await self._bot.edit_message_text(
                message.text,
                chat_id,
                message.edit_message_id,
                reply_markup=message.markup(),
                rate_limit_args=TAKEN,
            )
            return None
        sent = await self._bot.send_message(
            chat_id,
            message.text,
            reply_markup=message.markup(),
            protect_content=True,
            rate_limit_args=TAKEN,
        )
        return sent.message_id

    async def _later(
        self, item: OutboxItem, delay: float, error: str, *, count: bool = True, pause: bool = False
    ) -> None:
        async with self._writing() as session:
            await queue.retry_later(
                session, item.id, utcnow() + timedelta(seconds=delay), error, count=count
            )
            if pause:
                # Flood control is per bot: every process waits, not just this one.
                await queue.pause_turns(session, delay)

    async def _fail(self, item: OutboxItem, message: Outgoing, error: str) -> None:
        core = self._core
        activity.count("sends failed")
        async with self._writing() as session:
            await queue.mark_failed(session, item.id, error)
            await queue.count_broadcast(session, item.broadcast_id, delivered=False)
            if error == "403" and self._unreachable is not None:
                await self._unreachable(session, item.recipient_id)
            notice = message.on_failure
            if notice is not None:
                person = await session.get(Person, notice.person_id)
                if person is not None and person.revoked_at is None:
                    text = t(person.language, notice.key, **notice.values)
                    enqueue(session, core.secrets, person.id, Outgoing(text))
        self.failed += 1
        self.wake()
