"""The outbox under load, with the fake Bot API enforcing Telegram's limits (429 past 30
messages in any second overall, or a sustained stream faster than one a second to a chat).

1. Urgent behind bulk: 5,000 bulk messages (one per member) are queued at once; while they
   drain, an urgent alert is queued for one of ten staff every ~1.5 s. Its delay runs from
   the commit that queued it to the moment the Bot API server received it.
2. Busy chat: 500 messages are queued to one chat; while it drains at one a second, a
   message to an idle chat is queued every ~0.5 s. Its delay, the same way.
3. Fan-out: 1,000 messages to 1,000 members; drain rate from the first send to the last.

Every scenario also counts 429 answers and the most sends the server accepted in any one
second, overall and into one chat. Ratios in one run: nothing here depends on the machine
except the CPU headroom the sender needs to keep up.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

from bench.harness import bench_bot
from bench.relay_bench import percentile
from bot.delivery import PRIORITY_BULK, PRIORITY_NORMAL, PRIORITY_URGENT
from bot.logs import configure_logging
from sandbox import FakeUser
from sandbox.models import Call
from storage.models import Role
from tests.conftest import RunningBot

LIMIT = 30


class Arrivals:
    """When each probe reached the server, noted as the server answers it (``api.observe``).
    Polling the server's call log instead would scan thousands of calls every millisecond in
    the event loop the bot and the server share, and slow the very sender being measured."""

    def __init__(self, bot: RunningBot) -> None:
        self._waiting: dict[tuple[int, str], asyncio.Future[float]] = {}
        self.stop = bot.api.observe(self._seen)

    def _seen(self, call: Call) -> None:
        if call.method == "sendMessage" and call.ok:
            key = (call.params.get("chat_id"), call.params.get("text"))
            future = self._waiting.pop(key, None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(call.at)

    def expect(self, user: FakeUser, marker: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[(user.chat_id, marker)] = future
        return future


async def delays_while_draining(
    bot: RunningBot, targets: list[tuple[str, FakeUser]], samples: int, every: float, priority: int
) -> list[float]:
    delays: list[float] = []
    arrivals = Arrivals(bot)
    try:
        for n in range(samples):
            person_id, user = targets[n % len(targets)]
            marker = f"probe {n}"
            arrived = arrivals.expect(user, marker)
            queued = await bot.queue([person_id], marker, priority)
            async with asyncio.timeout(30):
                delays.append(await arrived - queued)
            await asyncio.sleep(max(0.0, every - (time.monotonic() - queued)))
    finally:
        arrivals.stop()
    return delays


def limits_line(bot: RunningBot) -> str:
    refusals = len(bot.api.flood_refusals)
    return (
        f"429 answers: {refusals}; most sends in one second: {bot.api.max_per_second()} "
        f"overall (limit {LIMIT})"
    )


def summary(name: str, delays: list[float]) -> str:
    ms = [d * 1000 for d in delays]
    return (
        f"{name}, n={len(ms)}: p50 {percentile(ms, 50):.0f} ms, p99 {percentile(ms, 99):.0f} ms, "
        f"max {max(ms):.0f} ms, mean {statistics.fmean(ms):.0f} ms"
    )


async def urgent_behind_bulk(backlog: int, samples: int) -> None:
    async with bench_bot(limits=True) as bot:
        members = await bot.seed(backlog, 1_000_000)
        staff = await bot.seed(10, 2_000_000, Role.CASEWORKER)
        await bot.queue([p for p, _ in members], "bulk notice", PRIORITY_BULK)
        delays = await delays_while_draining(bot, staff, samples, 1.5, PRIORITY_URGENT)
        left = await pending(bot)
        print(summary(f"1. urgent alert behind {backlog:,} bulk", delays))
        print(f"   bulk still queued at the last probe: {left:,}; {limits_line(bot)}")


async def idle_behind_busy(backlog: int, samples: int) -> None:
    async with bench_bot(limits=True) as bot:
        ((busy_id, busy),) = await bot.seed(1, 3_000_000)
        idle = await bot.seed(samples, 3_100_000)
        await bot.queue([busy_id] * backlog, "backlog", PRIORITY_NORMAL)
        delays = await delays_while_draining(bot, idle, samples, 0.5, PRIORITY_NORMAL)
        print(summary(f"2. message to an idle chat behind {backlog} to one busy chat", delays))
        print(
            f"   busy chat: {bot.api.max_per_second(busy.chat_id)} in its busiest second; "
            f"{limits_line(bot)}"
        )


async def fan_out(count: int) -> None:
    async with bench_bot(limits=True) as bot:
        members = await bot.seed(count, 4_000_000)
        chats = {u.chat_id for _, u in members}
        times: list[float] = []
        drained = asyncio.get_running_loop().create_future()

        def sent(call: Call) -> None:
            if call.method == "sendMessage" and call.ok and call.params.get("chat_id") in chats:
                times.append(call.at)
                if len(times) == count and not drained.done():
                    drained.set_result(None)

        stop = bot.api.observe(sent)
        await bot.queue([p for p, _ in members], "fan-out notice", PRIORITY_BULK)
        async with asyncio.timeout(count / 10):
            await drained
        stop()
        rate = (count - 1) / (times[-1] - times[0])
        print(f"3. fan-out of {count:,}: {rate:.1f} messages/s = {rate / LIMIT:.3f} x {LIMIT}/s")
        print(f"   {limits_line(bot)}")


async def pending(bot: RunningBot) -> int:
    from sqlalchemy import func, select

    from storage.models import OutboxItem

    async with bot.core.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxItem)) or 0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--urgent", type=int, default=100, help="urgent probes")
    parser.add_argument("--busy", type=int, default=500)
    parser.add_argument("--idle", type=int, default=60, help="idle-chat probes")
    parser.add_argument("--fan-out", type=int, default=1000)
    args = parser.parse_args()
    configure_logging(logging.WARNING)
    await urgent_behind_bulk(args.backlog, args.urgent)
    await idle_behind_busy(args.busy, args.idle)
    await fan_out(args.fan_out)


if __name__ == "__main__":
    asyncio.run(main())
