"""Help request -> caseworker alert: end-to-end latency (what a request costs and the
service path's throughput are in bench/request_bench.py).

A member's last step of a help request (the text) is queued on the fake Bot API server;
the clock stops when the caseworker's alert reaches that server. The real Application
polls, the handler seals and stores, the outbox sender sends. Requests go one at a time,
rotating over enough caseworker chats that Telegram's one-message-a-second per chat limit
(which the sender enforces) does not queue them: this measures latency, not the rate limit.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import time

from bench.harness import bench_bot
from bot.i18n import t
from bot.logs import configure_logging
from sandbox import FakeUser
from storage.models import Role
from tests.conftest import RunningBot


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


async def enrol_pairs(bot: RunningBot, pairs: int) -> list[tuple[FakeUser, FakeUser]]:
    """Caseworkers, each with one member they invited."""
    result = []
    for n in range(pairs):
        worker = bot.api.user(700_000 + n, f"W{n}", language_code="en")
        await bot.enrol(worker, Role.CASEWORKER, "en", name=f"W{n}")
        await worker.send_command("invite")
        link = await worker.wait_for_message("?start=")
        member = bot.api.user(800_000 + n, f"M{n}", language_code="en")
        await bot.enrol(member, language="en", token=(link.text or "").rsplit("=", 1)[1])
        result.append((worker, member))
    return result


async def end_to_end(requests: int, pairs: int) -> list[float]:
    latencies: list[float] = []
    async with bench_bot() as bot:
        team = await enrol_pairs(bot, pairs)
        for n in range(requests):
            worker, member = team[n % pairs]
            await member.send_command("ask")
            await member.press(t("en", "cat_medical"))
            await member.press(t("en", "urg_today"))
            await member.wait_for_message(t("en", "ask_text"))
            marker = f"request {n} fever"
            seen = len(bot.api.calls)
            started = time.monotonic()
            await member.send_text(marker)
            while time.monotonic() - started < 30:
                hit = next(
                    (
                        c
                        for c in bot.api.calls[seen:]
                        if c.method == "sendMessage"
                        and c.params.get("chat_id") == worker.chat_id
                        and marker in str(c.params.get("text"))
                    ),
                    None,
                )
                if hit is not None:
                    latencies.append(hit.at - started)
                    break
                await asyncio.sleep(0.0005)
            else:
                raise RuntimeError(f"no alert for request {n} within 30 s")
            await member.wait_for_message(t("en", "ask_sent"), count=None)
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=40, help="caseworker chats to rotate over")
    args = parser.parse_args()
    configure_logging(logging.WARNING, io.StringIO())

    latencies = await end_to_end(args.requests, args.pairs)
    ms = [x * 1000 for x in latencies]
    print(
        f"end to end, help request -> caseworker alert at the Bot API, n={len(ms)}: "
        f"p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
        f"max {max(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
