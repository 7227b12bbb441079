"""What one help request costs the bot: CPU in the bot's own process, SQL statements,
commits and Bot API calls, and the service path against raw aiosqlite.

1. CPU: the bot runs as its own process (``python -m bot run``, as in production) against
   the fake Bot API in this process; its CPU time (utime + stime from /proc) is read
   before and after N help requests, each the whole flow a member goes through (/ask, two
   button presses, the text) and the caseworker's alert. The same span with the bot idle
   is measured and subtracted. Texts are long enough never to be a safety word; a second
   run with short one-line texts shows what the Argon2id check of each costs on top.
2. Statements: the same flow in this process, counting what reaches SQLite from the last
   step (the text) to the alert being sent and recorded, split into the update's own work
   and the outbox sender's.
3. Service path: open_case (seal, store, queue the alert, commit) per second, next to a
   raw aiosqlite single-row insert + commit on the same kind of SQLite file (WAL, same
   pragmas), and next to the same insert through SQLAlchemy; all in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import aiosqlite
from sqlalchemy import event, func, select, text

from bench.harness import bench_bot
from bench.relay_bench import enrol_pairs
from bot.app import build_core
from bot.cases import HelpRequest, open_case
from bot.core import Core
from bot.i18n import t
from bot.logs import configure_logging
from bot.people import create_invite
from sandbox import FakeBotApi, FakeUser
from storage.db import migrate
from storage.models import OutboxItem, Role
from tests.conftest import PASSPHRASE, bare_people, make_keys, make_settings, secrets_of

LONG_TEXT = "fever since Monday, cannot go out to buy medicine, please call in the evening"
SHORT_TEXT = "fever"


async def outbox_rows(core: Core) -> int:
    async with core.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxItem)) or 0)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_request(
    api: FakeBotApi,
    worker: FakeUser,
    member: FakeUser,
    words: str,
    last_step: Callable[[], AbstractAsyncContextManager[None]],
) -> None:
    """The whole flow; ``last_step`` measures the text -> alert part."""
    await member.send_command("ask")
    await member.press(t("en", "cat_medical"), timeout=10)
    await member.press(t("en", "urg_today"), timeout=10)
    await member.wait_for_message(t("en", "ask_text"), count=None, timeout=10)
    seen = len(worker.inbox())
    async with last_step():
        await member.send_text(words)
        await member.wait_for_message(t("en", "ask_sent"), count=None, timeout=10)
        await api.wait_for(lambda: len(worker.inbox()) > seen, timeout=10)


async def cpu_per_request(requests: int, pairs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_keys(data_dir)
        async with FakeBotApi() as api:
            settings = make_settings(data_dir, api)
            core = build_core(settings)
            await migrate(core.engine)
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(Path(tmp) / "home"),
                "SAFERELAY_DATA_DIR": str(data_dir),
                "SAFERELAY_SECRETS_DIR": str(secrets_of(data_dir)),
                "SAFERELAY_PASSPHRASE": PASSPHRASE,
                "SAFERELAY_MESSAGES_PER_MINUTE": "1000",
                "TELEGRAM_BOT_TOKEN": api.token,
                "TELEGRAM_API_BASE_URL": api.base_url,
            }
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                team = []
                for n in range(pairs):
                    async with core.sessions() as session, session.begin():
                        made = await create_invite(session, core.secrets, Role.CASEWORKER)
                    worker = api.user(700_000 + n, f"W{n}", language_code="en")
                    await worker.send_command("start", made.token)
                    await worker.press("English", timeout=30)
                    await worker.wait_for_message(t("en", "staff_name_prompt"), timeout=10)
                    await worker.send_text(f"W{n}")
                    await worker.send_command("invite")
                    link = await worker.wait_for_message("?start=", timeout=10)
                    member = api.user(800_000 + n, f"M{n}", language_code="en")
                    await member.send_command("start", (link.text or "").rsplit("=", 1)[1])
                    await member.press("English", timeout=10)
                    await member.wait_for_message("Welcome", timeout=10)
                    team.append((worker, member))
                spent: list[tuple[float, float]] = []  # (CPU seconds, wall seconds)

                @asynccontextmanager
                async def last_step() -> AsyncIterator[None]:
                    cpu, wall = cpu_seconds(process.pid), time.monotonic()
                    yield
                    async with asyncio.timeout(10):
                        while await outbox_rows(core):  # noqa: ASYNC110 - polls the database
                            await asyncio.sleep(0.002)
                    spent.append((cpu_seconds(process.pid) - cpu, time.monotonic() - wall))

                for n in range(10):  # warm-up: imports, caches, first compilations
                    await one_request(api, *team[n % pairs], LONG_TEXT, last_step)
                # Short texts: at most 5 per member, well under the 10 word checks a minute
                # a member gets, so every one is derived.
                runs = (
                    ("long text", LONG_TEXT, requests),
                    ("short one-line text", SHORT_TEXT, min(requests, 5 * pairs)),
                )
                for label, words, count in runs:
                    spent.clear()
                    before, started = cpu_seconds(process.pid), time.monotonic()
                    for n in range(count):
                        await one_request(api, *team[n % pairs], words, last_step)
                    busy, span = cpu_seconds(process.pid) - before, time.monotonic() - started
                    idle_before = cpu_seconds(process.pid)
                    await asyncio.sleep(min(span, 20.0))  # idle: sweeps and polling only
                    idle = (cpu_seconds(process.pid) - idle_before) / min(span, 20.0)
                    whole = (busy - idle * span) / count * 1000
                    last = sum(c - idle * w for c, w in spent) / count * 1000
                    print(
                        f"1. CPU in the bot process per help request ({label}), n={count}: "
                        f"last step (text -> stored -> alert sent) {last:.1f} ms; whole flow "
                        f"(/ask, two buttons, text, alert) {whole:.1f} ms "
                        f"(idle {idle * 1000:.1f} ms/s subtracted)"
                    )
            finally:
                process.terminate()
                await process.wait()
                await core.engine.dispose()


async def statements_per_request(requests: int) -> None:
    async with bench_bot() as bot:
        ((worker, member),) = await enrol_pairs(bot, 1)
        counted: list[tuple[str, str]] = []
        phase = ["off"]

        def on_statement(_c: object, _cur: object, sql: str, *_a: object) -> None:
            if phase[0] != "off":
                counted.append((phase[0], sql))

        def on_commit(_c: object) -> None:
            if phase[0] != "off":
                counted.append((phase[0], "COMMIT"))

        engine = bot.core.engine.sync_engine
        event.listen(engine, "before_cursor_execute", on_statement)
        event.listen(engine, "commit", on_commit)
        totals: dict[str, list[int]] = {"update": [], "sender": [], "commits": [], "api": []}
        for n in range(requests):
            await member.send_command("ask")
            await member.press(t("en", "cat_medical"))
            await member.press(t("en", "urg_today"))
            await member.wait_for_message(t("en", "ask_text"), count=None)
            await bot.drained()
            await bot.api.wait_idle()
            counted.clear()
            calls = len(bot.api.calls)
            phase[0] = "update"
            seen = len(worker.inbox())
            await member.send_text(f"{LONG_TEXT} ({n})")
            await member.wait_for_message(t("en", "ask_sent"), count=None)
            await bot.api.wait_idle()
            phase[0] = "sender"
            await bot.api.wait_for(lambda: len(worker.inbox()) > seen)  # noqa: B023
            await bot.drained()
            phase[0] = "off"
            ours = [(p, s) for p, s in counted if "count(*)" not in s]  # drained()'s polls
            totals["update"].append(sum(1 for p, s in ours if p == "update" and s != "COMMIT"))
            totals["sender"].append(sum(1 for p, s in ours if p == "sender" and s != "COMMIT"))
            totals["commits"].append(sum(1 for p, s in ours if p == "update" and s == "COMMIT"))
            totals["api"].append(sum(1 for c in bot.api.calls[calls:] if c.method != "getUpdates"))
        median = {k: sorted(v)[len(v) // 2] for k, v in totals.items()}
        print(
            f"2. last step of a help request, medians of {requests}: {median['update']} SQL "
            f"statements and {median['commits']} commit in the update, "
            f"{median['sender']} more in the outbox sender (alert sent and noted for "
            f"deletion, plus its look-ups); {median['api']} Bot API calls "
            "(getUpdates left out)"
        )


async def service_path(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_keys(data_dir)
        core = build_core(make_settings(data_dir))
        await migrate(core.engine)
        (worker,) = bare_people(1, Role.CASEWORKER)
        (member,) = bare_people(1)
        member.caseworker_id = worker.id
        async with core.sessions() as session, session.begin():
            session.add_all([worker, member])
        async with core.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE raw_sa (id TEXT PRIMARY KEY, body BLOB)"))

        started = time.perf_counter()
        for n in range(count):
            request = HelpRequest("medical", "today", f"request {n}: {LONG_TEXT}")
            async with core.sessions() as session, session.begin():
                await open_case(session, core, member.id, request)
        service = count / (time.perf_counter() - started)

        body = b"x" * 400
        started = time.perf_counter()
        for n in range(count):
            async with core.engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO raw_sa (id, body) VALUES (:id, :body)"),
                    {"id": f"r{n}", "body": body},
                )
        through_sa = count / (time.perf_counter() - started)
        await core.engine.dispose()

        async with aiosqlite.connect(data_dir / "saferelay.db") as db:
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON"):
                await db.execute(f"PRAGMA {pragma}")
            await db.execute("CREATE TABLE raw_aio (id TEXT PRIMARY KEY, body BLOB)")
            await db.commit()
            started = time.perf_counter()
            for n in range(count):
                await db.execute("INSERT INTO raw_aio (id, body) VALUES (?, ?)", (f"r{n}", body))
                await db.commit()
            raw = count / (time.perf_counter() - started)
    print(f"3. service path (seal, store, queue the alert, commit): {service:7.0f} requests/s")
    print(f"   raw aiosqlite insert + commit, same kind of file:    {raw:7.0f} rows/s")
    print(f"   the same insert + commit through SQLAlchemy:         {through_sa:7.0f} rows/s")
    print(
        f"   ratio service / raw aiosqlite: {service / raw:.2f}; "
        f"service / SQLAlchemy insert: {service / through_sa:.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--statements", type=int, default=20)
    parser.add_argument("--service", type=int, default=2000)
    args = parser.parse_args()
    configure_logging(logging.WARNING, io.StringIO())
    await cpu_per_request(args.requests, args.pairs)
    await statements_per_request(args.statements)
    await service_path(args.service)


if __name__ == "__main__":
    asyncio.run(main())
