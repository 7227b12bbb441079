"""10,000 members on SQLite and on PostgreSQL, in the same run (issue 13).

For each database in turn: a fresh one (an SQLite file in WAL mode as the bot sets it; a
throwaway PostgreSQL server of Debian's, with its own durable defaults -- fsync and
synchronous commit on), the real bot against the fake Bot API on 127.0.0.1, ten caseworkers
and 10,000 members written as enrolment leaves them (chat ids sealed), each member with a
caseworker. Then:

1. Help requests, service path: ``bot.cases.open_case`` -- seal, store, queue the alerts,
   commit -- for members picked at random, one transaction each, as a handler runs it, while
   the bot's sender delivers the alerts. Requests per second and the latency of each.
2. Outbox drain, sender's own capacity: one bulk message to each of the 10,000 members
   queued in one transaction, sent with the flood pace lifted (the fake Bot API accepts
   everything): from the first send to the last. This is what the database lets the
   sender do, against the 28.8 a second Telegram allows.
3. Outbox drain under Telegram's pace: the same 10,000 queued, the pace as in production;
   the rate over a window (``--window`` seconds) with the whole backlog waiting behind it.

The ratio PostgreSQL / SQLite of each figure is printed at the end. The bot, the fake Bot
API, the benchmark and (for PostgreSQL) the server share the machine's cores: what is
measured is the whole path, not the database alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, select, update

import bot.app
from bench.relay_bench import percentile
from bot.cases import HelpRequest, open_case
from bot.delivery import PRIORITY_BULK
from bot.logs import configure_logging
from bot.pace import Pace
from sandbox import FakeBotApi
from storage.models import OutboxItem, Person, Role
from tests.conftest import RunningBot, make_keys, make_settings, start_bot, stop_bot
from tests.postgres import PostgresCluster, start_cluster

TEXT = "We need to move this week and I do not know where to go. " * 3


@dataclass
class Figures:
    database: str
    requests_per_second: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    drain_unpaced: float = 0.0
    drain_paced: float = 0.0


@contextlib.contextmanager
def pace_lifted() -> Iterator[None]:
    """The bot built inside this block sends as fast as it can (no flood pace)."""
    original = bot.app.Pace

    def unpaced() -> Pace:
        return Pace(per_second=1_000_000.0, per_chat_interval=0.0)

    bot.app.Pace = unpaced  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        bot.app.Pace = original  # type: ignore[misc]


@contextlib.asynccontextmanager
async def running(api: FakeBotApi, data_dir: Path, url: str | None) -> AsyncIterator[RunningBot]:
    extra = {"SAFERELAY_MESSAGES_PER_MINUTE": "1000"}
    if url is not None:
        extra["DATABASE_URL"] = url
    settings = make_settings(data_dir, api, **extra)
    app = await start_bot(api, settings)
    try:
        yield RunningBot(api, app, settings, io.StringIO())
    finally:
        await stop_bot(app)


async def pending(running_bot: RunningBot) -> int:
    async with running_bot.core.sessions() as session:
        query = select(func.count()).select_from(OutboxItem)
        return int(await session.scalar(query.where(OutboxItem.status == "pending")) or 0)


async def clear_outbox(running_bot: RunningBot) -> None:
    async with running_bot.core.sessions() as session, session.begin():
        await session.execute(delete(OutboxItem))


def sends_since(api: FakeBotApi, first_call: int) -> list[float]:
    return [c.at for c in api.calls[first_call:] if c.method == "sendMessage" and c.ok]


async def one_database(name: str, url: str | None, members: int, requests: int,
                       window: float) -> Figures:  # fmt: skip
    figures = Figures(name)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_keys(data_dir)
        async with FakeBotApi() as api:
            # Seed: ten caseworkers, then the members, each given a caseworker.
            async with running(api, data_dir, url) as rb:
                staff = await rb.seed(10, 700_000, Role.CASEWORKER)
                people = await rb.seed(members, 1_000_000)
                staff_ids = [p for p, _ in staff]
                async with rb.core.sessions() as session, session.begin():
                    for n, worker in enumerate(staff_ids):
                        await session.execute(
                            update(Person)
                            .where(Person.id.in_([p for p, _ in people[n :: len(staff_ids)]]))
                            .values(caseworker_id=worker)
                        )
                # 1. Help requests through the service path, the sender delivering alongside.
                rng = random.Random(13)
                askers = rng.sample([p for p, _ in people], requests)
                started = time.perf_counter()
                for member_id in askers:
                    began = time.perf_counter()
                    async with rb.core.sessions() as session, session.begin():
                        await open_case(
                            session, rb.core, member_id, HelpRequest("housing", "week", TEXT)
                        )
                    figures.latencies_ms.append((time.perf_counter() - began) * 1000)
                figures.requests_per_second = requests / (time.perf_counter() - started)
                await clear_outbox(rb)
            # 2. The sender's own capacity: 10,000 queued at once, no flood pace.
            with pace_lifted():
                async with running(api, data_dir, url) as rb:
                    first = len(api.calls)
                    await rb.queue([p for p, _ in people], "Notice: retreat", PRIORITY_BULK)
                    async with asyncio.timeout(1800):
                        while await pending(rb):  # noqa: ASYNC110 - polls the database
                            await asyncio.sleep(0.5)
                    sent = sends_since(api, first)
                    figures.drain_unpaced = (len(sent) - 1) / (sent[-1] - sent[0])
            # 3. Telegram's pace, with the whole 10,000 waiting.
            async with running(api, data_dir, url) as rb:
                first = len(api.calls)
                await rb.queue([p for p, _ in people], "Notice: retreat", PRIORITY_BULK)
                await asyncio.sleep(window)
                sent = sends_since(api, first)
                figures.drain_paced = (len(sent) - 1) / (sent[-1] - sent[0])
                await clear_outbox(rb)
    return figures


def line(f: Figures) -> str:
    ms = f.latencies_ms
    return (
        f"{f.database:10} help requests {f.requests_per_second:6.0f}/s "
        f"(p50 {percentile(ms, 50):5.1f} ms, p99 {percentile(ms, 99):5.1f} ms, "
        f"mean {statistics.fmean(ms):5.1f} ms); drain {f.drain_unpaced:6.0f}/s unpaced, "
        f"{f.drain_paced:5.1f}/s paced"
    )


async def main(members: int, requests: int, window: float) -> None:
    configure_logging(logging.WARNING, io.StringIO())
    results = [await one_database("SQLite", None, members, requests, window)]
    print(line(results[0]), flush=True)
    cluster: PostgresCluster = start_cluster(durable=True)
    try:
        name = cluster.create_database("bench")
        results.append(
            await one_database("PostgreSQL", cluster.url(name), members, requests, window)
        )
        print(line(results[1]), flush=True)
    finally:
        cluster.stop()
    print(f"{members:,} members, {requests} help requests, paced window {window:.0f} s")
    lite, pg = results
    print(
        "ratios PostgreSQL / SQLite: help requests "
        f"{pg.requests_per_second / lite.requests_per_second:.2f}x, p99 latency "
        f"{percentile(pg.latencies_ms, 99) / percentile(lite.latencies_ms, 99):.2f}x, "
        f"unpaced drain {pg.drain_unpaced / lite.drain_unpaced:.2f}x, "
        f"paced drain {pg.drain_paced / lite.drain_paced:.2f}x (of 28.8/s: "
        f"{lite.drain_paced / 28.8:.3f} / {pg.drain_paced / 28.8:.3f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--window", type=float, default=20.0, help="seconds of paced sending")
    args = parser.parse_args()
    asyncio.run(main(args.members, args.requests, args.window))
