"""Several processes on one database (issue 13): two real ``saferelay run`` processes --
one taking updates, one only sending and sweeping -- share the outbox and Telegram's flood
budget, against the fake Bot API with Telegram's limits on. Every delivery is counted per
recipient: exactly once each, and not one 429."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from bot.app import build_core
from bot.core import Core
from bot.delivery import PRIORITY_BULK, PRIORITY_NORMAL, PRIORITY_URGENT
from sandbox import FakeBotApi, FakeUser
from storage.db import migrate
from storage.models import ChatMessage, OutboxItem, Role
from tests.conftest import eventually, make_settings
from tests.processes import BotProcess, queue, seed, start_process

# Sweeps every half second in both processes, and the bot's messages deleted 3 s after
# they are sent: chat upkeep runs often enough, in both, to show whether two act on a row.
FAST_SWEEPS = {
    "SAFERELAY_SWEEP_SECONDS": "0.5",
    "SAFERELAY_CLEAR_AFTER_MINUTES": "0.05",
    "SAFERELAY_STAFF_CLEAR_AFTER_HOURS": "0.001",
}
UPDATE_METHODS = {"getupdates", "setwebhook", "deletewebhook"}


@pytest.fixture
async def limited_api() -> AsyncIterator[FakeBotApi]:
    """The fake Bot API with Telegram's limits on. It counts each call when it handles it,
    in this process; a full collection of this process's garbage (its heap is large after
    hundreds of tests) paused it for 100-180 ms (measured), and the calls that arrived
    meanwhile were counted together, as a burst the bots never sent: a 429 with every send
    on its turn. So what exists now is frozen out of the collector for the test (gc.freeze),
    as if the server were a process of its own."""
    gc.freeze()
    try:
        async with FakeBotApi(limits=True) as server:
            yield server
    finally:
        gc.unfreeze()


@pytest.fixture
async def shared(data_dir: Path) -> AsyncIterator[Core]:
    """The database both processes use, migrated, for the test to seed and read."""
    core = build_core(make_settings(data_dir))
    await migrate(core.engine)
    try:
        yield core
    finally:
        await core.engine.dispose()


def deliveries(api: FakeBotApi, users: list[FakeUser]) -> Counter[tuple[int, str]]:
    """Accepted sends, per (chat, text)."""
    chats = {u.chat_id for u in users}
    return Counter(
        (c.params["chat_id"], str(c.params.get("text")))
        for c in api.calls
        if c.method == "sendMessage" and c.ok and c.params.get("chat_id") in chats
    )


def deletions(api: FakeBotApi) -> Counter[tuple[int, int]]:
    """Delete requests, per (chat, message id), however they were batched."""
    counted: Counter[tuple[int, int]] = Counter()
    for c in api.calls:
        if c.method == "deleteMessage":
            counted[(c.params["chat_id"], int(c.params["message_id"]))] += 1
        elif c.method == "deleteMessages":
            ids = c.params["message_ids"]
            for message_id in json.loads(ids) if isinstance(ids, str) else ids:
                counted[(c.params["chat_id"], int(message_id))] += 1
    return counted


def sent_ids(api: FakeBotApi, users: list[FakeUser]) -> set[tuple[int, int]]:
    return {
        (u.chat_id, m.message_id)
        for u in users
        for m in api.bot_messages(u.chat_id, include_deleted=True)
    }


async def count(core: Core, model: type[OutboxItem] | type[ChatMessage]) -> int:
    async with core.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@contextlib.asynccontextmanager
async def owners_seen(core: Core) -> AsyncIterator[set[str]]:
    """The processes seen holding an outbox lease while the block runs."""
    seen: set[str] = set()

    async def watch() -> None:
        while True:
            async with core.sessions() as session:
                seen.update(
                    owner
                    for owner in await session.scalars(
                        select(OutboxItem.claimed_by).where(OutboxItem.claimed_by.is_not(None))
                    )
                    if owner is not None
                )
            await asyncio.sleep(0.01)

    task = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def two_processes(data_dir: Path, api: FakeBotApi, **env: str) -> list[BotProcess]:
    both = [
        await start_process(data_dir, api, updates=True, **env),
        await start_process(data_dir, api, updates=False, **env),
    ]
    await asyncio.gather(*(p.ready() for p in both))
    return both


async def test_two_processes_deliver_every_message_once_within_telegrams_limits(
    limited_api: FakeBotApi, data_dir: Path, shared: Core
) -> None:
    api = limited_api
    # Given 150 members and 4 staff, and two bot processes on one database
    members = await seed(shared, api, 150, 7_100_000)
    staff = await seed(shared, api, 4, 7_200_000, Role.CASEWORKER)
    users = [u for _, u in members + staff]
    processes = await two_processes(data_dir, api, **FAST_SWEEPS)
    try:
        # When a burst is queued: a notice to every member, four messages to each staff
        # chat (one a second each, at most), and urgent alerts behind the notice
        burst = [(p, "notice") for p, _ in members]
        await queue(shared, burst, PRIORITY_BULK)
        busy = [(p, f"reply {n}") for n in range(4) for p, _ in staff]
        await queue(shared, busy, PRIORITY_NORMAL)
        await queue(shared, [(p, "URGENT") for p, _ in staff], PRIORITY_URGENT)
        expected = Counter(
            (u.chat_id, text)
            for (person, text) in burst + busy + [(p, "URGENT") for p, _ in staff]
            for p, u in members + staff
            if p == person
        )
        async with owners_seen(shared) as owners:

            async def all_delivered() -> bool:
                return set(deliveries(api, users)) >= set(expected)

            await eventually(all_delivered, within=60, what="every message to arrive")
        await outbox_emptied(shared, within=10)
        # ... and each of the bot's messages comes up for deletion 3 s after it was sent
        await eventually(
            lambda: _zero(count(shared, ChatMessage)), within=30, what="every chat to clear"
        )
        await api.wait_idle()
    finally:
        for process in processes:
            await process.stop()
    # Then every recipient got each of their messages exactly once
    assert deliveries(api, users) == expected
    # ... sent by both processes, which together never went past Telegram's limits
    assert len(owners) == 2
    assert api.flood_refusals == []
    assert api.max_per_second() <= 30
    # ... and each message was deleted once, by one process or the other, never by both
    gone = deletions(api)
    assert set(gone) >= sent_ids(api, users)
    assert max(gone.values()) == 1


async def test_a_process_that_only_sends_never_asks_telegram_for_updates(
    limited_api: FakeBotApi, data_dir: Path, shared: Core
) -> None:
    api = limited_api
    people = await seed(shared, api, 3, 7_300_000)
    # Given a process with SAFERELAY_UPDATES=off, alone on the database
    process = await start_process(data_dir, api, updates=False)
    try:
        await process.ready()
        # When messages are queued
        await queue(shared, [(p, "hello") for p, _ in people], PRIORITY_NORMAL)
        # Then it sends them
        await outbox_emptied(shared, within=30)
    finally:
        await process.stop()
    assert all(u.inbox()[-1].text == "hello" for _, u in people)
    # ... and never took updates nor touched the webhook: another process owns those
    assert {c.method.lower() for c in api.calls} & UPDATE_METHODS == set()


async def test_a_killed_process_leaves_nothing_undelivered(
    limited_api: FakeBotApi, data_dir: Path, shared: Core
) -> None:
    api = limited_api
    members = await seed(shared, api, 200, 7_400_000)
    users = [u for _, u in members]
    processes = await two_processes(data_dir, api)
    try:
        # Given a notice to 200 members going out through both processes
        await queue(shared, [(p, "notice") for p, _ in members], PRIORITY_BULK)

        async def under_way() -> bool:
            return len(deliveries(api, users)) >= 40

        await eventually(under_way, within=30, what="the notice to be under way")
        # When the process that only sends is killed outright, sends in flight and all
        await processes[1].kill()

        # Then the other delivers every copy (those the dead one held, once their lease
        # runs out) ...
        async def all_delivered() -> bool:
            return len(deliveries(api, users)) == len(members)

        await eventually(all_delivered, within=60, what="every copy to arrive")
        await outbox_emptied(shared, within=30)
        await api.wait_idle()
    finally:
        for process in processes:
            await process.stop()
    # ... at most the few in flight at the crash twice (the sender's concurrency), no 429
    copies = deliveries(api, users)
    assert sum(copies.values()) - len(members) <= 8
    assert api.flood_refusals == []


async def outbox_emptied(shared: Core, *, within: float) -> None:
    """Wait until every queued message has gone (sent, or given up on)."""
    await eventually(
        lambda: _zero(count(shared, OutboxItem)), within=within, what="the outbox to empty"
    )


async def _zero(counting: object) -> bool:
    assert asyncio.iscoroutine(counting)
    return await counting == 0


# The sweeps every fifth of a second in both processes; prompts may come at any hour.
SWEEPS_RACE = {
    "SAFERELAY_SWEEP_SECONDS": "0.2",
    "SAFERELAY_CHECKIN_EVERY": "1h",
    "SAFERELAY_CHECKIN_WINDOW": "00:00-24:00",
    "SAFERELAY_CHECKIN_GRACE": "1h",
}


def texts_in(api: FakeBotApi, user: FakeUser, text: str) -> int:
    """How many accepted sends of ``text`` (or starting with it) reached the user's chat."""
    return sum(
        1
        for c in api.calls
        if c.method == "sendMessage"
        and c.ok
        and c.params.get("chat_id") == user.chat_id
        and str(c.params.get("text")).startswith(text)
    )


async def test_two_processes_escalate_an_unclaimed_case_once(
    limited_api: FakeBotApi, data_dir: Path, shared: Core
) -> None:
    from bot.cases import HelpRequest, open_case
    from bot.i18n import t
    from storage.models import Case, utcnow

    api = limited_api

    # (Enough cases that one sweep takes a while: two processes' sweeps could overlap.)
    members = await seed(shared, api, 20, 7_500_000)
    staff = await seed(shared, api, 2, 7_600_000, Role.CASEWORKER)
    # Given 20 "right now" requests nobody has taken on (their first alerts left out: each
    # staff chat takes one message a second)
    async with shared.sessions() as session, session.begin():
        for n, (member_id, _) in enumerate(members):
            await open_case(session, shared, member_id, HelpRequest("danger", "now", f"n{n}"))
    async with shared.sessions() as session, session.begin():
        await session.execute(delete(OutboxItem))
    processes = await two_processes(data_dir, api, **SWEEPS_RACE)
    try:
        # When their escalation time comes, with both processes sweeping every 0.2 s
        async with shared.sessions() as session, session.begin():
            await session.execute(update(Case).values(escalate_at=utcnow() - timedelta(seconds=1)))
        still = t("en", "alert_escalated").split("{")[0]

        async def all_realerted() -> bool:
            return all(texts_in(api, u, still) >= len(members) for _, u in staff)

        await eventually(all_realerted, within=60, what="every case to be re-alerted")
        await outbox_emptied(shared, within=30)
        await api.wait_idle()
    finally:
        for process in processes:
            await process.stop()
    # Then each case escalated once, and each caseworker heard of it once, not twice
    async with shared.sessions() as session:
        cases = list(await session.scalars(select(Case)))
    assert [c.escalations for c in cases] == [1] * len(members)
    assert all(c.escalate_at is not None and c.escalate_at > utcnow() for c in cases)
    assert [texts_in(api, u, still) for _, u in staff] == [len(members)] * len(staff)
    # ... and the two processes' re-alerts kept to Telegram's limits
    assert api.flood_refusals == []


async def test_two_processes_send_a_due_prompt_once(
    limited_api: FakeBotApi, data_dir: Path, shared: Core
) -> None:
    from bot.i18n import t
    from bot.schedules import ensure_schedules
    from storage.models import Schedule, utcnow

    api = limited_api

    members = await seed(shared, api, 200, 7_700_000)
    await ensure_schedules(shared)
    processes = await two_processes(data_dir, api, **SWEEPS_RACE)
    try:
        # Given 200 members whose wellbeing prompt is due, and two processes sweeping
        async with shared.sessions() as session, session.begin():
            await session.execute(update(Schedule).values(next_at=utcnow() - timedelta(seconds=1)))
        prompt = t("en", "prompt_text")

        # When the sweeps have run
        async def all_prompted() -> bool:
            return all(texts_in(api, u, prompt) >= 1 for _, u in members)

        await eventually(all_prompted, within=30, what="every member to be prompted")
        await outbox_emptied(shared, within=30)
        await api.wait_idle()
    finally:
        for process in processes:
            await process.stop()
    # Then each member got the prompt once, and their next one is in an hour, not now
    assert [texts_in(api, u, prompt) for _, u in members] == [1] * len(members)
    async with shared.sessions() as session:
        schedules = list(await session.scalars(select(Schedule)))
    assert len(schedules) == len(members)
    assert all(s.next_at is not None and s.next_at > utcnow() for s in schedules)
    # ... and the two processes' burst kept to Telegram's limits
    assert api.flood_refusals == []
