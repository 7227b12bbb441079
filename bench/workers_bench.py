"""Several sender processes on one database (issue 13): a backlog of 10,000 messages (one
each to 10,000 members) drained by one ``saferelay run`` process, then by two (one taking
updates, one with SAFERELAY_UPDATES=off), on SQLite and on PostgreSQL, against the fake
Bot API with Telegram's limits on (429 past 30 messages in any second, or a sustained
stream faster than one a second into a chat).

For each run: the drain rate from the first send to the last as the server saw them, its
ratio to Telegram's 30/s (the reference, in the same run), the 429 answers, the most sends
the server accepted in any one second, and copies beyond one per member (must be 0).
Two processes should drain no faster than one -- the budget is Telegram's, shared in the
database -- and no slower: the shared budget must not cost a process its pace.

The PostgreSQL server is the tests' throwaway cluster (tests/postgres.py: Unix socket
only, fsync and synchronous_commit off, as for the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections import Counter
from pathlib import Path

from bot.app import build_core
from bot.delivery import PRIORITY_BULK
from sandbox import FakeBotApi
from sandbox.models import Call
from storage.db import migrate
from tests.conftest import make_keys, make_settings
from tests.postgres import PostgresCluster, start_cluster
from tests.processes import queue, seed, start_process

LIMIT = 30


async def drain(messages: int, processes: int, database_url: str | None) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_keys(data_dir)
        env = {"DATABASE_URL": database_url} if database_url else {}
        core = build_core(make_settings(data_dir, **env))
        await migrate(core.engine)
        async with FakeBotApi(limits=True) as api:
            members = await seed(core, api, messages, 5_000_000)
            chats = {u.chat_id for _, u in members}
            # The server counts calls when this process handles them; a full garbage
            # collection of this heap would stall it and count the calls that came
            # meanwhile as one burst (tests/bot/test_workers.py, limited_api).
            gc.freeze()
            running = [
                await start_process(data_dir, api, updates=n == 0, **env) for n in range(processes)
            ]
            try:
                await asyncio.gather(*(p.ready() for p in running))
                api.clear_flood_stats()
                await queue(core, [(p, "notice") for p, _ in members], PRIORITY_BULK)

                # Counted as the server answers (api.observe), not by scanning its whole
                # call log every half second: the scan itself stalled the server.
                done: list[tuple[float, int]] = []

                def count(call: Call) -> None:
                    if call.method == "sendMessage" and call.ok:
                        chat = call.params.get("chat_id")
                        if chat in chats:
                            done.append((call.at, chat))

                forget = api.observe(count)
                started = time.monotonic()
                while len({chat for _, chat in done}) < messages:
                    if time.monotonic() - started > messages / 10:
                        raise RuntimeError("the backlog did not drain")
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2)  # any late duplicate would arrive now
                forget()
            finally:
                for process in running:
                    await process.stop()
            await core.engine.dispose()
            gc.unfreeze()
        times = sorted(at for at, _ in done)
        rate = (len(times) - 1) / (times[-1] - times[0])
        copies = Counter(chat for _, chat in done)
        extra = sum(copies.values()) - len(copies)
        return (
            f"{processes} process{'es' if processes > 1 else ''}: {rate:.2f} messages/s = "
            f"{rate / LIMIT:.3f} x {LIMIT}/s; 429 answers: {len(api.flood_refusals)}"
            f"{reasons(api)}; "
            f"most in one second: {api.max_per_second()}; copies beyond one: {extra}"
        )


def reasons(api: FakeBotApi) -> str:
    """Which limit the 429s were for: the overall second, or a chat's bucket."""
    counted = Counter(r.reason for r in api.flood_refusals)
    return f" ({', '.join(f'{n} {why}' for why, n in sorted(counted.items()))})" if counted else ""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument("--processes", default="1,2", help="comma-separated: 1,2")
    args = parser.parse_args()
    databases = args.databases.split(",")
    cluster: PostgresCluster | None = start_cluster() if "postgresql" in databases else None
    try:
        for database in databases:
            for processes in (int(n) for n in args.processes.split(",")):
                url = None
                if database == "postgresql":
                    assert cluster is not None
                    url = cluster.url(cluster.create_database())
                line = await drain(args.messages, processes, url)
                print(f"{database}, {args.messages:,} messages, {line}", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
