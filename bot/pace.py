"""Telegram's flood limits, kept by everything that sends: one pace for the whole process.

Telegram refuses (429) a bot that sends more than about 30 messages a second overall, or
more than about one a second to one chat for long. Two kinds of sender share that budget:
handlers answering the person in front of them, and the outbox sender (bot/delivery.py).
:class:`Pace` is both python-telegram-bot's rate limiter -- so every ``send_message`` or
edit, from anywhere, takes a turn -- and the gate the outbox sender consults before it
picks an item, so it can choose the most urgent item at the moment a turn is free. A
handler waiting for a turn goes first: the person who pressed a button is not kept
waiting behind a broadcast (which, picking ahead of each turn, would otherwise take them
all: asking for help, four steps, took a member 2-5 s during a 200-member notice; now
about 0.5 s).

Turns are spaced evenly at ``per_second`` (28.8, just over one below the limit: 0.96 of
Telegram's rate for a broadcast, and a one-message margin for jitter), measured when the
request leaves rather than when answers come back: answers that bunch up do not release a
burst, and any 30 consecutive sends span more than a second even with ~30 ms of jitter on
the way. Only the outbox sender waits for a chat's own second; a handler's answer to a
person who just pressed a button goes at once (Telegram tolerates a short burst in a chat
that is talking to the bot, which the fake Bot API models as a small bucket).

A 429 that gets through anyway (another process on the same token, a stricter limit)
pauses every turn for its ``retry_after``.

Several processes (issue 13): the outbox sender takes each of its turns from the budget in
the database (storage.outbox.reserve_turn), which every process shares, and tells the pace
here (:meth:`Pace.taken`). A handler's answer does not wait for the database -- the person
in front of the bot would feel it, and the update's transaction may be holding SQLite's
write lock -- it takes a turn here and is owed (:meth:`Pace.take_debt`): the sender charges
it to the shared budget with its next claim, a few tens of milliseconds later under load.

Sends from several processes keep to one schedule only if each goes on its turn: a send
that leaves late lands next to another process's on-time one. Three things see to it
(bot.delivery): the database's clock is mapped onto each process's own by the least late
measure (:class:`SharedClock`), not by whichever answer came last; a turn is asked for a
little ahead (the time the process needs to commit it, measured), so it is not already
passing when the answer arrives; and a send whose turn passed anyway (a loaded machine)
does not go, it takes another turn. Before these, two processes drew 429s though neither
ever sent faster than the rate: sends left 12 ms after their turns at the median and up to
28 ms (two processes on SQLite, a loaded machine; on a cold PostgreSQL, more), late by the
commit that followed the turn and by a deletion done between turn and send. Now: 1-2 ms at
the median, at most the :data:`bot.delivery.MISSED_BY` bound.

Chat ids are in memory only, as everywhere: never logged or written.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

PER_SECOND = 28.8
PER_CHAT_INTERVAL = 1.05  # a second, and a little for jitter
# Bot API methods that put or change a message in a chat: what Telegram counts.
PACED = frozenset(
    {
        "sendMessage",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "sendPhoto",
        "sendDocument",
        "sendVideo",
        "sendAudio",
        "sendVoice",
        "sendSticker",
        "sendLocation",
        "sendContact",
        "sendPoll",
        "sendMediaGroup",
    }
)
# A handler's answer refused with a short "retry after" is sent once more after it; updates
# are handled one at a time, so a longer wait would hold everyone up and is an error.
HANDLER_RETRY_UP_TO = 5.0
LATE_CREDIT = 0.1  # of a turn: how late a turn may be taken and still count on time
# Marks a call whose turn the caller already took (the outbox sender).
TAKEN = "turn-taken"
CHATS_REMEMBERED = 10_000
# How fast the mapping of the database's clock may drift before a new measure refreshes it:
# NTP slews a clock by at most 500 ppm.
OFFSET_DRIFT = 0.0005
# A measure this much earlier than the one kept is not lateness but a clock set back (the
# database's host stepped its clock): start again from it.
OFFSET_RESET = 0.5


class Pace(BaseRateLimiter[str]):
    def __init__(
        self,
        *,
        per_second: float = PER_SECOND,
        per_chat_interval: float = PER_CHAT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spacing = 1.0 / per_second
        self._per_chat = per_chat_interval
        self._clock = clock
        self._last = -1e9
        self._paused_until = 0.0
        self._chat_last: dict[int, float] = {}
        self._debt = 0
        self._handlers_waiting = 0

    async def initialize(self) -> None:
        """Nothing to set up; required by PTB's interface."""

    async def shutdown(self) -> None:
        """Nothing to release; required by PTB's interface."""

    @property
    def spacing(self) -> float:
        """Seconds between two turns."""
        return self._spacing

    @property
    def per_chat(self) -> float:
        """Seconds between two outbox messages to one chat."""
        return self._per_chat

    def free_at(self) -> float:
        """When the next turn is free (monotonic seconds)."""
        return max(self._last + self._spacing, self._paused_until)

    def chat_free_at(self, chat_id: int) -> float:
        """When this chat may get its next message from the outbox."""
        return self._chat_last.get(chat_id, -1e9) + self._per_chat

    def taken(self, at: float, chat_id: int) -> None:
        """The sender was given the turn at ``at`` (monotonic) for ``chat_id`` by the shared
        budget: later turns here follow it."""
        self._last = max(self._last, at)
        self._remember_chat(chat_id, at)

    def advance(self) -> None:
        """Move on by one turn without waiting (the outbox sender, whose real turn comes
        from the shared budget a moment later and is noted with :meth:`taken`)."""
        self._last = max(self._last + self._spacing, self._clock() - self._spacing * LATE_CREDIT)

    def take_debt(self) -> int:
        """Turns handlers took since the last call, for the sender to charge to the shared
        budget; the count starts again from nothing."""
        debt, self._debt = self._debt, 0
        return debt

    def owe(self, turns: int) -> None:
        """Turns taken from :meth:`take_debt` that could not be charged after all."""
        self._debt += turns

    def _remember_chat(self, chat_id: int, at: float) -> None:
        if len(self._chat_last) >= CHATS_REMEMBERED:
            now = self._clock()
            self._chat_last = {c: t for c, t in self._chat_last.items() if t + self._per_chat > now}
        self._chat_last[chat_id] = at

    def pause(self, seconds: float) -> None:
        """Telegram said "retry after": every turn waits, not just the refused one."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def wait_free(self, lead: float = 0.0, *, after_handlers: bool = False) -> None:
        """Until ``lead`` seconds before a turn is free. A loop, because a pause may start
        while we sleep; what is awaited is a moment in time, not an event.
        ``after_handlers`` (the outbox sender): not while a handler waits for a turn. The
        sender picks its item ahead of the turn, so it would otherwise take every turn
        before a handler could, and the person pressing a button would wait for a whole
        broadcast to go out."""
        while True:
            wait = self.free_at() - lead - self._clock()
            if after_handlers and self._handlers_waiting:
                wait = max(wait, lead, self._spacing / 4)
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def turn(self, chat_id: int | None) -> None:
        """Wait for the next free turn and take it for ``chat_id``."""
        self._handlers_waiting += 1
        try:
            await self.wait_free()
        finally:
            self._handlers_waiting -= 1
        now = self._clock()
        # Turns keep to their schedule: one taken a moment late (a sleep that overshot, a
        # database answer) does not push every later one back, or the rate would sag well
        # below 28.8 a second. The credit is a tenth of a turn, so no second ever holds
        # more than 29 turns even so (bench/outbox_bench.py counts them at the server).
        self._last = max(self._last + self._spacing, now - self._spacing * LATE_CREDIT)
        if chat_id is not None:
            self._remember_chat(chat_id, now)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: str | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        paced = endpoint in PACED
        chat = data.get("chat_id")
        chat_id = chat if isinstance(chat, int) else None
        if paced and rate_limit_args != TAKEN:
            await self.turn(chat_id)
            self._debt += 1
        try:
            return await callback(*args, **kwargs)
        except RetryAfter as exc:
            delay = retry_after_seconds(exc)
            self.pause(delay)
            if not paced or rate_limit_args == TAKEN or delay > HANDLER_RETRY_UP_TO:
                raise  # the outbox reschedules its own; anything longer is an error
        # A handler's answer to the person in front of it: once more after the pause,
        # rather than an error message that would itself have to wait.
        await self.turn(chat_id)
        self._debt += 1
        return await callback(*args, **kwargs)


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the type will change
        warnings.simplefilter("ignore")
        delay = exc.retry_after
    return delay.total_seconds() if isinstance(delay, timedelta) else float(delay)


class SharedClock:
    """The database's clock, by which every process takes its turns, on this process's own
    monotonic clock.

    Each turn comes with the moment the database read its clock (``given``); the answer
    arrives a little after that, so ``given - now`` is the clocks' offset less the
    statement's time -- which on a loaded machine varies by tens of milliseconds. Mapped
    with each answer as it came, two turns could land that much closer together than the
    database spaced them. So, as NTP does, the least late measure is kept (allowed to
    drift by :data:`OFFSET_DRIFT` a second, and started afresh if the database's clock
    steps back): the mapping errs late, by about one quick statement, never early.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._offset: float | None = None  # the database's clock minus ours
        self._measured_at = 0.0

    def local(self, at: float, given: float) -> float:
        """When ``at`` comes on our clock, for a turn whose answer just arrived and whose
        database read its clock at ``given`` (both seconds, the database's clock)."""
        now = self._clock()
        measured = given - now
        if self._offset is None or measured < self._offset - OFFSET_RESET:
            self._offset = measured
        else:
            drifted = self._offset - OFFSET_DRIFT * (now - self._measured_at)
            self._offset = max(measured, drifted)
        self._measured_at = now
        return at - self._offset
