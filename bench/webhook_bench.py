"""Webhook vs long polling, and what forged webhook posts cost, against the fake Bot API on
127.0.0.1 (the real PTB HTTP path both ways; no network, so on Telegram add its latency).

(a) A member's ``/menu`` until the menu shows: the bot polling, then the same bot with a
    webhook, alternating, each repetition on a fresh bot. Ratio webhook / polling.
(b) Someone who found the webhook URL floods it with posts lacking the secret: what one
    refusal costs, and a member's ``/menu`` during such a flood against without it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import time
from collections.abc import Callable

import aiohttp

from bench.harness import bench_bot
from bot.logs import configure_logging
from storage.models import Role
from tests.conftest import RunningBot, free_port


def _webhook_env() -> dict[str, str]:
    port = free_port()
    return {
        "SAFERELAY_WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram",
        "SAFERELAY_WEB_PORT": str(port),
    }


async def _menu_round_trips(bot: RunningBot, count: int, uid: int) -> list[float]:
    member = bot.api.user(uid, f"M{uid}", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    timings = []
    for _ in range(count):
        seen = len(member.inbox())
        started = time.monotonic()
        await member.send_command("menu")
        while len(member.inbox()) <= seen:  # noqa: ASYNC110 - polls the fake
            await asyncio.sleep(0.0002)
        timings.append(time.monotonic() - started)
        await bot.api.wait_idle()
    return timings


async def modes(reps: int, count: int) -> tuple[list[float], list[float]]:
    polling: list[float] = []
    webhook: list[float] = []
    for rep in range(reps):
        async with bench_bot() as bot:
            polling += await _menu_round_trips(bot, count, 910_000 + rep)
        async with bench_bot(**_webhook_env()) as bot:
            webhook += await _menu_round_trips(bot, count, 920_000 + rep)
    return polling, webhook


async def _flood(url: str, stop: Callable[[], bool], counter: list[int], workers: int) -> None:
    forged = {"update_id": 1, "message": {"message_id": 1, "date": 0, "text": "x"}}
    async with aiohttp.ClientSession() as client:

        async def one() -> None:
            while not stop():
                async with client.post(url, json=forged) as response:
                    assert response.status == 403
                    counter[0] += 1

        await asyncio.gather(*(one() for _ in range(workers)))


async def forged(count: int, workers: int) -> tuple[float, list[float], list[float]]:
    async with bench_bot(**_webhook_env()) as bot:
        url = bot.settings.webhook_url
        assert url is not None
        # Cost of one refusal, sequential posts on one connection.
        counter = [0]
        started = time.monotonic()
        done = False
        task = asyncio.create_task(_flood(url, lambda: done, counter, 1))
        while counter[0] < 2000:  # noqa: ASYNC110 - counts the flood
            await asyncio.sleep(0.01)
        done = True
        await task
        per_refusal = (time.monotonic() - started) / counter[0]
        quiet = await _menu_round_trips(bot, count, 930_000)
        stopping = False
        counter = [0]
        flood = asyncio.create_task(_flood(url, lambda: stopping, counter, workers))
        busy = await _menu_round_trips(bot, count, 930_001)
        stopping = True
        await flood
    return per_refusal, quiet, busy


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--workers", type=int, default=20)
    args = parser.parse_args()
    configure_logging(logging.WARNING, io.StringIO())
    polling, webhook = await modes(args.reps, args.messages)
    print(f"/menu round trip, long polling: {_ms(polling)} ({len(polling)} messages)")
    print(f"/menu round trip, webhook:      {_ms(webhook)} ({len(webhook)} messages)")
    ratio = statistics.median(webhook) / statistics.median(polling)
    print(f"webhook / polling (medians): {ratio:.2f}")
    per_refusal, quiet, busy = await forged(args.messages, args.workers)
    print(f"one forged post refused (403), sequential: {per_refusal * 1e6:.0f} µs")
    print(f"/menu with no flood:                  {_ms(quiet)}")
    print(f"/menu while {args.workers} clients post forged updates: {_ms(busy)}")
    print(f"flooded / quiet (medians): {statistics.median(busy) / statistics.median(quiet):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
