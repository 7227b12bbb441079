"""Wellbeing prompts at scale: a sweep that finds 10,000 members due in one window, and the
largest delay it adds to the updates other members send meanwhile (issue 10).

A fresh bot on the fake Bot API (127.0.0.1) with ``--members`` members written straight into
the database (as enrolment leaves them) and their schedules made by the start-up pass; five
members enrolled through invites send ``/menu`` one after another, each timed from being
queued until the answer is in the chat and the bot is done with the update. Phases in one
run: no sweep (the baseline); the prompt sweep with every member due at once (it queues one
prompt each, in batches, and the sender starts on them at once); the welfare sweep with
every member's reminder due. The sweeps' own job is paused, so each runs exactly once, when
the benchmark says, and the outbox sender is stopped once the five are enrolled: what is
measured is the sweep's own cost (queuing 10,000 prompts), not the ~6 minutes Telegram's
30 a second takes to deliver them (bench/outbox_bench.py measures that). The seeded members'
command menus are marked as set, so the chat upkeep has nothing to do either.

    .venv/bin/python -m bench.prompt_bench                 # 10,000 members (~2 min)
    .venv/bin/python -m bench.prompt_bench --members 2000  # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import logging
import time
from datetime import timedelta

from sqlalchemy import func, select, update

from bench.harness import bench_bot
from bench.purge_bench import Phase, measure
from bot.logs import configure_logging
from bot.menus import menu_key
from bot.schedules import ensure_schedules, sweep_prompts
from bot.welfare import sweep_watch
from sandbox import FakeUser
from storage.models import OutboxItem, Person, Role, Schedule, WatchStep, utcnow
from tests.conftest import RunningBot

FIRST_UID = 7_000_000


async def senders(bot: RunningBot, count: int) -> list[FakeUser]:
    users = []
    for n in range(count):
        user = bot.api.user(6_000_000 + n, f"Member {n}", language_code="en")
        await bot.enrol(user, Role.MEMBER, "en")
        users.append(user)
    await bot.drained()
    return users


async def all_due(bot: RunningBot, column: str) -> None:
    values: dict[str, object] = {column: utcnow() - timedelta(seconds=1)}
    if column == "watch_at":
        values["watch_step"] = WatchStep.PROMPTED.value
    async with bot.core.sessions() as session, session.begin():
        await session.execute(update(Schedule).where(Schedule.person_id.like("%")).values(**values))


async def pending(bot: RunningBot) -> int:
    async with bot.core.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxItem)) or 0)


def line(phase: Phase, baseline: Phase) -> str:
    return (
        f"{phase.name:<36} {len(phase.latencies_ms):7d} {phase.median:7.1f}ms "
        f"{phase.quantile(99):7.1f}ms {phase.worst:7.1f}ms "
        f"{phase.worst - baseline.worst:+7.1f}ms {phase.loop_stall_ms:7.1f}ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=200, help="updates without a sweep")
    args = parser.parse_args()
    configure_logging(logging.WARNING, io.StringIO())
    async with bench_bot(
        SAFERELAY_CHECKIN_WINDOW="00:00-24:00", SAFERELAY_CHECKIN_EVERY="7d"
    ) as bot:
        assert bot.app.job_queue is not None
        for job in bot.app.job_queue.get_jobs_by_name("prompts"):
            job.pause()  # the benchmark runs each sweep itself
        await bot.seed(args.members, FIRST_UID)
        async with bot.core.sessions() as session, session.begin():
            await session.execute(update(Person).values(menu=menu_key("member", "en")))
        started = time.perf_counter()
        made = await ensure_schedules(bot.core)
        startup = time.perf_counter() - started
        members = await senders(bot, 5)
        await bot.app.bot_data["sender"].stop()
        # The fake Bot API and its 10,000 chats share this process only because this is a
        # benchmark: kept out of the collector's way, as the bot's own start-up heap is
        # (bot/app.py), so that collections cost what they cost the bot alone.
        gc.freeze()
        baseline = await measure(bot, members, "no sweep", updates=args.baseline)

        await all_due(bot, "next_at")
        before = await pending(bot)
        prompts = await measure(
            bot,
            members,
            f"prompt sweep, {args.members:,} due",
            purge=lambda: sweep_prompts(bot.core),
        )
        queued = await pending(bot) - before

        await all_due(bot, "watch_at")
        reminders = await measure(
            bot,
            members,
            f"welfare sweep, {args.members:,} due",
            purge=lambda: sweep_watch(bot.core),
        )

    print(f"{made:,} schedules made at start-up in {startup:.2f} s")
    print(
        f"{'phase':<36} {'updates':>7} {'median':>8} {'p99':>8} {'max':>8} {'+max':>8} {'stall':>8}"
    )
    for phase in (baseline, prompts, reminders):
        print(line(phase, baseline))
    assert prompts.purge_s is not None and reminders.purge_s is not None
    print(
        f"prompt sweep: {prompts.purged:,} prompts queued ({queued:,} in the outbox) "
        f"in {prompts.purge_s:.2f} s = {prompts.purged / prompts.purge_s:,.0f} members/s; "
        f"largest delay added to an update: {prompts.worst - baseline.worst:+.0f} ms "
        f"(max {prompts.worst:.0f} ms vs {baseline.worst:.0f} ms without)"
    )
    print(
        f"welfare sweep: {reminders.purged:,} reminders in {reminders.purge_s:.2f} s; "
        f"largest delay added: {reminders.worst - baseline.worst:+.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
