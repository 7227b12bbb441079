"""Help request -> caseworker alert: end-to-end latency, and the service path's throughput.

1. End to end: a member's last step of a help request (the text) is queued on the fake Bot
   API server; the clock stops when the caseworker's alert reaches that server. The real
   Application polls, the handler seals and stores, the outbox sender sends. Requests go
   one at a time, rotating over enough caseworker chats that Telegram's one-message-a-second
   per chat limit (which the sender enforces) does not queue them: this measures latency,
   not the rate limit.
2. Service path alone: build the request, seal it, store the case, enqueue the alert, commit
   -- per request, in requests/s; next to the raw rate of a single-row insert-and-commit on
   the same SQLite file in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.harness import bench_bot
from bot.cases import HelpRequest, open_case
from bot.i18n import t
from bot.logs import configure_logging
from storage.models import Role
from tests.conftest import RunningBot, make_keys, make_settings
from tests.fakebot import FakeUser


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


async def service_path(count: int) -> tuple[float, float]:
    """(service requests/s, raw insert+commit rows/s) on one SQLite file, same run."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_keys(data_dir)
        from bot.app import build_core
        from storage.db import migrate
        from storage.models import Person, new_id

        core = build_core(make_settings(data_dir))
        await migrate(core.engine)
        async with core.sessions() as session, session.begin():
            worker = Person(
                id=new_id(),
                tg_lookup=b"w" * 32,
                chat_ref=b"x",
                role="caseworker",
                pseudonym="W 1",
                language="en",
            )
            member = Person(
                id=new_id(),
                tg_lookup=b"m" * 32,
                chat_ref=b"x",
                role="member",
                pseudonym="M 1",
                language="en",
                caseworker_id=worker.id,
            )
            session.add_all([worker, member])
        async with core.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE raw_bench (id TEXT PRIMARY KEY, body BLOB)"))

        started = time.perf_counter()
        for n in range(count):
            request = HelpRequest("medical", "today", f"request {n}: fever since Monday")
            async with core.sessions() as session, session.begin():
                await open_case(session, core, member.id, request)
        service_rate = count / (time.perf_counter() - started)

        body = b"x" * 400
        started = time.perf_counter()
        for n in range(count):
            async with core.engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO raw_bench (id, body) VALUES (:id, :body)"),
                    {"id": f"r{n}", "body": body},
                )
        raw_rate = count / (time.perf_counter() - started)
        await core.engine.dispose()
    return service_rate, raw_rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=40, help="caseworker chats to rotate over")
    parser.add_argument("--service", type=int, default=2000, help="service-path iterations")
    args = parser.parse_args()
    configure_logging(logging.WARNING, io.StringIO())

    service_rate, raw_rate = await service_path(args.service)
    print(f"service path (parse, seal, store, enqueue, commit): {service_rate:8.0f} requests/s")
    print(f"raw single-row insert + commit, same SQLite file:  {raw_rate:8.0f} rows/s")
    print(f"ratio service / raw: {service_rate / raw_rate:.2f}")

    latencies = await end_to_end(args.requests, args.pairs)
    ms = [x * 1000 for x in latencies]
    print(
        f"end to end, help request -> caseworker alert at the Bot API, n={len(ms)}: "
        f"p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
        f"max {max(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
