"""Retention purge: what purging 100,000 old check-ins costs the updates that arrive meanwhile.

A real bot (fake Bot API on 127.0.0.1) with five enrolled members, and a database filled in
bulk, straight through SQL, with ``--checkins`` check-ins and ``--notes`` notes from
``--members`` other members, all older than the retention period, written oldest first as a
bot writes them (sealed blobs are random bytes of a realistic size: the purge never opens
them). The five take turns sending /menu,
one update at a time (each answer awaited, a few milliseconds apart, so each member stays
under the flood limit); the clock runs from the update being queued on the fake server
until the bot's answer is in the chat and the bot is done with the update -- which includes
recording the answer's deletion in the database, so each update needs the write lock too.

Three phases in one run, with the same members:

1. baseline: no purge;
2. the purge (``bot.retention.purge_old_records``: counted in SQL, deleted in batches of
   1,000, each its own transaction, resting between them), with the members sending;
3. the reference, after filling the database again: the purge as it was before issue 9
   (every old check-in loaded into Python to be counted, then one transaction deleting
   everything), with the members sending.

Reported per phase: update latency (median, p99, max), the event loop's largest stall (a
ticker that asks for 1 ms naps), the purge's own duration and what it deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import logging
import os
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.erasure import bump_tally
from bot.i18n import t
from bot.logs import configure_logging
from bot.people import EXPIRED_SHOWN
from bot.retention import BATCH, FAILED_KEPT, MIN_GROUP, purge_old_records
from sandbox import FakeBotApi, FakeUser
from storage import outbox
from storage.db import truncate_wal
from storage.models import (
    Case,
    CaseStatus,
    CheckIn,
    Invite,
    Note,
    Person,
    Role,
    day,
    new_id,
    utcnow,
    word_filler,
)
from tests.conftest import RunningBot, make_keys, make_settings, start_bot, stop_bot

SEALED_SIZE = 300  # a sealed check-in: 256-byte padded plaintext + envelope
INSERT_CHUNK = 5000
THINK = 0.005  # the pause between an answer and the next update
# Members taking turns: each stays under the flood limit (1,000 a minute at most).
SENDERS = 5


@asynccontextmanager
async def purge_bot() -> AsyncIterator[RunningBot]:
    """A bot whose members may send fast (the highest flood limit), and whose own daily
    purge stays out of the way (the bench runs it when it means to)."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_keys(data_dir)
        async with FakeBotApi() as api:
            settings = make_settings(data_dir, api, SAFERELAY_MESSAGES_PER_MINUTE="1000")
            app = await start_bot(api, settings)
            assert app.job_queue is not None
            for job in app.job_queue.get_jobs_by_name("retention"):
                job.schedule_removal()
            try:
                yield RunningBot(api, app, settings, io.StringIO())
            finally:
                await stop_bot(app)


async def fill(bot: RunningBot, members: int, checkins: int, notes: int) -> None:
    """Old records in bulk, straight through SQL: no service, no sealing."""
    core = bot.core
    now = utcnow()
    oldest = core.settings.retention_days + 3 * 365  # three years of history past the cut
    people = [
        {
            "id": new_id(),
            "tg_lookup": os.urandom(32),
            "chat_ref": os.urandom(64),
            "role": Role.MEMBER.value,
            "pseudonym": f"bench {n} {new_id()[:6]}",
            "language": "ko",
            "language_chosen": True,
            "created_at": day(now - timedelta(days=oldest)),
            "erased": False,
            "code_word": word_filler(),
            "duress_word": word_filler(),
        }
        for n in range(members)
    ]

    def old_days(count: int) -> list[datetime]:
        # Oldest first, as a bot writes them: rows of one day lie together in the file.
        first = core.settings.retention_days + 2
        return sorted(
            day(now - timedelta(days=random.randint(first, oldest))) for _ in range(count)
        )

    async with core.engine.begin() as connection:
        await connection.execute(insert(Person.__table__), people)
    for table, count, extra in (
        (CheckIn.__table__, checkins, {}),
        (Note.__table__, notes, {"from_member": True}),
    ):
        owner = "person_id" if table is CheckIn.__table__ else "member_id"
        dates = old_days(count)
        for start in range(0, count, INSERT_CHUNK):
            rows = [
                {
                    "id": new_id(),
                    owner: random.choice(people)["id"],
                    "created_at": created_at,
                    "sealed": os.urandom(SEALED_SIZE),
                    **extra,
                }
                for created_at in dates[start : start + INSERT_CHUNK]
            ]
            async with core.engine.begin() as connection:
                await connection.execute(insert(table), rows)
    await truncate_wal(core.engine)
    gc.collect()  # the fill's garbage, collected now rather than during a measurement


async def old_shape_purge(sessions: async_sessionmaker[AsyncSession], retention_days: int) -> int:
    """The purge before issue 9, verbatim but for the session it was handed: every old
    check-in loaded to be counted in Python, then everything deleted in one transaction."""
    async with sessions() as session, session.begin():
        cutoff = utcnow() - timedelta(days=retention_days)
        old = (
            await session.execute(
                select(CheckIn.created_at, CheckIn.person_id).where(CheckIn.created_at < cutoff)
            )
        ).all()
        members: dict[str, set[str]] = defaultdict(set)
        counts: dict[str, int] = defaultdict(int)
        for created_at, person_id in old:
            year = str(created_at.year)
            members[year].add(person_id)
            counts[year] += 1
        for year, count in counts.items():
            period = year if len(members[year]) >= MIN_GROUP else "small-years"
            await bump_tally(session, period, "checkins_purged", count)
        now = utcnow()
        purged = await outbox.purge_failed(session, now - FAILED_KEPT)
        for statement in (
            delete(Invite).where(Invite.expires_at < now - EXPIRED_SHOWN),
            delete(CheckIn).where(CheckIn.created_at < cutoff),
            delete(Note).where(Note.created_at < cutoff),
            delete(Case).where(Case.created_at < cutoff, Case.status == CaseStatus.RESOLVED.value),
        ):
            result = await session.execute(statement)
            purged += result.rowcount  # type: ignore[attr-defined]
        return purged


@dataclass
class Phase:
    name: str
    latencies_ms: list[float]
    loop_stall_ms: float
    errors: int
    purge_s: float | None = None
    purged: int | None = None

    def quantile(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def worst(self) -> float:
        return max(self.latencies_ms)


def busy(bot: RunningBot) -> bool:
    """Whether the bot still holds an update: queued, or being handled (its commit too)."""
    queue = bot.app.update_queue
    return bool(
        queue.qsize()
        or getattr(queue, "_unfinished_tasks", 0)
        or bot.app.update_processor.current_concurrent_updates
    )


async def one_update(bot: RunningBot, member: FakeUser) -> tuple[float, bool]:
    """/menu, timed until the answer is in the chat and the bot is done with the update (the
    answer is sent before its deletion is recorded); and whether it was an error reply."""
    started = time.perf_counter()
    sent = await member.send_command("menu")
    while True:
        answers = [
            m for m in bot.api.bot_messages(member.chat_id) if m.message_id > sent.message_id
        ]
        if answers and not busy(bot):
            return (time.perf_counter() - started) * 1000, answers[0].text == t("en", "error")
        await asyncio.sleep(0.0005)


async def measure(
    bot: RunningBot,
    members: list[FakeUser],
    name: str,
    *,
    updates: int = 0,
    purge: Callable[[], Awaitable[int]] | None = None,
) -> Phase:
    """The members' updates, either ``updates`` of them or for as long as ``purge`` runs."""
    latencies: list[float] = []
    errors = 0
    stall = 0.0
    running = True

    async def ticker() -> None:
        nonlocal stall
        loop = asyncio.get_running_loop()
        while running:
            before = loop.time()
            await asyncio.sleep(0.001)
            stall = max(stall, loop.time() - before - 0.001)

    async def timed_purge() -> tuple[float, int]:
        assert purge is not None
        started = time.perf_counter()
        purged = await purge()
        return time.perf_counter() - started, purged

    ticking = asyncio.create_task(ticker())
    purging = asyncio.create_task(timed_purge()) if purge else None
    while (purging is not None and not purging.done()) or len(latencies) < updates:
        ms, failed = await one_update(bot, members[len(latencies) % len(members)])
        latencies.append(ms)
        errors += failed
        await asyncio.sleep(THINK)
    running = False
    await ticking
    phase = Phase(name, latencies, stall * 1000, errors)
    if purging is not None:
        phase.purge_s, phase.purged = await purging
    await bot.api.wait_idle(timeout=30)
    return phase


def report(phases: list[Phase], baseline: Phase) -> None:
    print(
        f"{'phase':<34} {'updates':>7} {'median':>8} {'p99':>8} {'max':>8} "
        f"{'+p99':>8} {'+max':>8} {'stall':>8} {'errors':>6} {'purge':>8}"
    )
    for p in phases:
        purge = f"{p.purge_s:7.2f}s" if p.purge_s is not None else f"{'-':>8}"
        print(
            f"{p.name:<34} {len(p.latencies_ms):7d} {p.median:7.1f}ms {p.quantile(99):7.1f}ms "
            f"{p.worst:7.1f}ms {p.quantile(99) - baseline.quantile(99):+7.1f}ms "
            f"{p.worst - baseline.worst:+7.1f}ms {p.loop_stall_ms:7.1f}ms {p.errors:6d} {purge}"
        )
        if p.purged is not None:
            print(f"  ({p.purged:,} rows purged)")
    if len(phases) == 3:
        batched, whole = phases[1], phases[2]
        print(
            f"worst update during the purge, one transaction / batches: "
            f"{whole.worst / batched.worst:.1f}x; "
            f"largest event-loop stall: {whole.loop_stall_ms / batched.loop_stall_ms:.1f}x"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--checkins", type=int, default=100_000)
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=400, help="updates without a purge")
    parser.add_argument("--batch", type=int, default=BATCH, help="rows per delete statement")
    parser.add_argument("--no-reference", action="store_true", help="skip the old purge")
    args = parser.parse_args()
    configure_logging(logging.WARNING, io.StringIO())
    async with purge_bot() as bot:
        members = [bot.api.user(700_000 + n, f"M{n}", language_code="en") for n in range(SENDERS)]
        for member in members:
            await bot.enrol(member, Role.MEMBER, "en")
        sessions, days = bot.core.sessions, bot.core.settings.retention_days
        started = time.perf_counter()
        await fill(bot, args.members, args.checkins, args.notes)
        print(
            f"filled {args.checkins:,} check-ins and {args.notes:,} notes of {args.members} "
            f"members in {time.perf_counter() - started:.1f} s"
        )
        await measure(bot, members, "warm-up", updates=30)
        baseline = await measure(bot, members, "baseline (no purge)", updates=args.baseline)
        phases = [baseline]
        phases.append(
            await measure(
                bot,
                members,
                f"purge in batches of {args.batch:,} (this code)",
                purge=lambda: purge_old_records(sessions, days, batch=args.batch),
            )
        )
        if not args.no_reference:
            await fill(bot, args.members, args.checkins, args.notes)
            phases.append(
                await measure(
                    bot,
                    members,
                    "one-transaction purge (before)",
                    purge=lambda: old_shape_purge(sessions, days),
                )
            )
    report(phases, baseline)


if __name__ == "__main__":
    asyncio.run(main())
