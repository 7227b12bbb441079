"""The outbox sender: most urgent first at every send, a busy chat never blocks the others,
few statements per message. Conditions on the order of what reaches the Bot API, never on
how long it took (timings live in bench/outbox_bench.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from bot.delivery import PRIORITY_BULK, PRIORITY_NORMAL, PRIORITY_URGENT
from storage.models import Role
from tests.conftest import RunningBot


def sends_to(bot: RunningBot, chat_ids: set[int], marker: str) -> list[int]:
    """Indexes in the call log of successful sendMessage calls carrying ``marker``."""
    return [
        n
        for n, c in enumerate(bot.api.calls)
        if c.method == "sendMessage"
        and c.ok
        and c.params.get("chat_id") in chat_ids
        and marker in str(c.params.get("text"))
    ]


async def test_an_urgent_item_goes_ahead_of_a_bulk_backlog(bot: RunningBot) -> None:
    members = await bot.seed(150, 910_000)
    ((staff_id, staff),) = await bot.seed(1, 990_000, Role.CASEWORKER)
    member_chats = {user.chat_id for _, user in members}
    # Given 150 bulk messages draining at the overall rate
    await bot.queue([p for p, _ in members], "bulk notice", PRIORITY_BULK)
    await bot.api.wait_for(lambda: len(sends_to(bot, member_chats, "bulk")) >= 10, timeout=10)
    # When an urgent alert is queued in the middle
    await bot.queue([staff_id], "URGENT alert", PRIORITY_URGENT)
    before = len(sends_to(bot, member_chats, "bulk"))  # counted from the commit
    await bot.api.wait_for(lambda: sends_to(bot, {staff.chat_id}, "URGENT") != [], timeout=10)
    # Then it goes with the next free turn: at most the sends already in flight went first
    # (the old sender worked through a fetched batch of 100 before it looked again)
    urgent_at = sends_to(bot, {staff.chat_id}, "URGENT")[0]
    bulk_before_urgent = sum(1 for n in sends_to(bot, member_chats, "bulk") if n < urgent_at)
    # At most the sends already in flight (8) and the one chosen for the next turn
    assert bulk_before_urgent - before <= 9
    assert bulk_before_urgent < 150


async def test_a_busy_chat_does_not_hold_up_another(bot: RunningBot) -> None:
    (busy_id, busy), (idle_id, idle) = await bot.seed(2, 920_000)
    # Given 120 messages queued to one chat (more than the old sender's batch of 100)
    await bot.queue([busy_id] * 120, "backlog", PRIORITY_NORMAL)
    await bot.api.wait_for(lambda: sends_to(bot, {busy.chat_id}, "backlog") != [], timeout=5)
    # When a message for another chat is queued behind them
    await bot.queue([idle_id], "for the idle chat", PRIORITY_NORMAL)
    await bot.api.wait_for(lambda: sends_to(bot, {idle.chat_id}, "idle chat") != [], timeout=10)
    # Then it went out while the busy chat's backlog had barely started
    assert len(sends_to(bot, {busy.chat_id}, "backlog")) <= 5


async def test_a_backlog_to_one_chat_costs_a_few_statements_per_message(bot: RunningBot) -> None:
    ((person_id, user),) = await bot.seed(1, 930_000)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        statements.append(sql)

    engine = bot.core.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await bot.queue([person_id] * 4, "one of four", PRIORITY_NORMAL)
        await bot.api.wait_for(
            lambda: len(sends_to(bot, {user.chat_id}, "one of four")) == 4, timeout=10
        )
        await bot.drained()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # Per message: choose it, and delete it once sent; in between, a look (and the next
    # due time) when the send ends and when the chat's second is over -- a loaded machine
    # may add a look, so those are bounded loosely (the old sender ran 68 statements a
    # message). The chat id is opened once, not once per item per round as before.
    # (The cleaner's and drained()'s own queries are left out.)
    outbox = [s for s in statements if "outbox" in s and "count(*)" not in s]
    outbox = [s for s in outbox if "EXISTS" not in s]  # the cleaner's tidy_people
    deletes = [s for s in outbox if s.startswith("DELETE FROM outbox")]
    chat_lookups = [s for s in statements if s.startswith("SELECT people.chat_ref \nFROM")]
    assert len(chat_lookups) == 1
    assert len(deletes) == 4
    assert len(outbox) <= 4 * 12, "\n".join(outbox)


def test_the_sql_layer_knows_every_priority() -> None:
    from bot.delivery import PRIORITY_ESCALATION
    from storage.outbox import PRIORITIES

    assert PRIORITIES == (PRIORITY_URGENT, PRIORITY_ESCALATION, PRIORITY_NORMAL, PRIORITY_BULK)


async def test_the_pace_never_gives_thirty_turns_in_a_second_however_late_they_are_taken() -> None:
    import asyncio
    import random
    import time

    from bot.pace import Pace

    pace, taken = Pace(), []
    rng = random.Random(7)
    for _ in range(60):
        await pace.turn(None)
        taken.append(time.monotonic())
        # Whoever took the turn is busy for a while, sometimes longer than a turn.
        await asyncio.sleep(rng.choice((0.0, 0.0, 0.005, 0.02, 0.05)))
    # Any 30 consecutive turns span more than a second.
    assert min(b - a for a, b in zip(taken, taken[29:], strict=False)) > 1.0


async def test_a_reply_refused_for_a_moment_is_sent_after_the_pause_not_an_error(
    bot: RunningBot,
) -> None:
    from bot.i18n import t

    ((_, user),) = await bot.seed(1, 940_000)
    # Given Telegram refusing the next message to this member for a second
    bot.api.fail_next("sendMessage", chat_id=user.chat_id, status=429, retry_after=1)
    # When they ask for the menu, they still get it, and no error message
    await user.send_command("menu")
    await user.wait_for_message(t("en", "menu_title"), timeout=10)
    assert not any(t("en", "error") == m.text for m in user.inbox())


def test_the_shared_clock_keeps_the_least_late_measure() -> None:
    from bot.pace import OFFSET_DRIFT, SharedClock

    local = [100.0]
    clock = SharedClock(clock=lambda: local[0])
    # Given an answer that came at once: the database's clock is ours + 900 s
    assert clock.local(1000.05, given=1000.0) == pytest.approx(100.05)
    # When a later answer took 20 ms on the way (the database read 1000.08 at our 100.1)
    local[0] = 100.1
    # Then its turn is still mapped by the quick answer's measure, not 20 ms closer
    drift = OFFSET_DRIFT * 0.1
    assert clock.local(1000.2, given=1000.08) == pytest.approx(100.2 + drift)
    # ... and a measure nobody improves on for 100 s drifts late (at NTP's slew at most),
    # never early: an answer 30 ms late then is the better measure, and is taken
    local[0] = 200.1
    assert clock.local(1100.2, given=1100.07) == pytest.approx(200.23)
    # ... while a database clock stepped back by seconds is taken as it is
    local[0] = 200.2
    assert clock.local(1098.3, given=1098.2) == pytest.approx(200.3)


async def test_a_send_whose_turn_has_passed_takes_another_instead_of_going_late(
    bot: RunningBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import activity
    from bot.pace import SharedClock

    ((person_id, user),) = await bot.seed(1, 950_000)
    # Given a sender that gets its first turn only when it has passed (a stalled machine:
    # the answer came half a second after the turn)
    mapped = SharedClock.local
    stalls = [0.5]

    def late(self: SharedClock, at: float, given: float) -> float:
        return mapped(self, at, given) - (stalls.pop() if stalls else 0.0)

    monkeypatch.setattr(SharedClock, "local", late)
    missed_before = activity._counts["turns missed"]
    # When a message is queued
    await bot.queue([person_id], "on a turn of its own", PRIORITY_NORMAL)
    await bot.api.wait_for(
        lambda: len(sends_to(bot, {user.chat_id}, "on a turn of its own")) == 1, timeout=10
    )
    await bot.drained()
    # Then it went once, on the next turn it took, not on the one that had passed
    assert not stalls
    assert activity._counts["turns missed"] == missed_before + 1
    assert len(sends_to(bot, {user.chat_id}, "on a turn of its own")) == 1


async def test_a_person_waiting_for_an_answer_goes_before_the_outbox() -> None:
    import asyncio

    from bot.pace import Pace

    pace, order = Pace(), []
    await pace.turn(None)  # the next turn is a spacing away

    async def outbox() -> None:
        # (the sender picks its item ahead of the turn: here 30 ms of a 35 ms spacing)
        await pace.wait_free(lead=0.03, after_handlers=True)
        order.append("outbox")

    async def handler() -> None:
        await pace.turn(None)
        order.append("handler")

    # When a handler's answer and the outbox sender both wait for the next turn
    await asyncio.gather(handler(), outbox())
    # Then the answer to the person goes first; the outbox takes the turn after it
    assert order == ["handler", "outbox"]
