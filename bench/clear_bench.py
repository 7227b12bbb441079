"""Quick exit: how long clearing a member's chat of 50 messages takes, against the fake
Bot API server on 127.0.0.1 (the real PTB HTTP path; no network latency, so on Telegram
add one round trip per 100 messages: deleteMessages takes up to 100 ids at once)."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import time

from bench.harness import bench_bot
from bot.logs import configure_logging
from storage.models import Role


async def run(rounds: int, size: int) -> list[float]:
    timings = []
    async with bench_bot() as bot:
        for n in range(rounds):
            member = bot.api.user(900_000 + n, f"M{n}", language_code="en")
            await bot.enrol(member, Role.MEMBER, "en")
            while len(bot.api.visible(member.chat_id)) < size - 1:
                await member.send_text("a line")
                await bot.api.wait_idle()
            started = time.monotonic()
            await member.send_command("clear")
            while bot.api.visible(member.chat_id):  # noqa: ASYNC110 - polls the fake
                await asyncio.sleep(0.0005)
            timings.append(time.monotonic() - started)
    return timings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--messages", type=int, default=50)
    args = parser.parse_args()
    configure_logging(logging.WARNING, io.StringIO())
    ms = [x * 1000 for x in await run(args.rounds, args.messages)]
    print(
        f"quick exit, {args.messages} messages, {len(ms)} rounds: "
        f"median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
