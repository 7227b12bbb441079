"""The outbox sender: most urgent first at every send, a busy chat never blocks the others,
few statements per message. Conditions on the order of what reaches the Bot API, never on
how long it took (timings live in bench/outbox_bench.py)."""

from __future__ import annotations

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
