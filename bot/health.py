"""``saferelay check``: is this installation healthy? For Docker's HEALTHCHECK and monitoring.

Each check gives one line: ``ok`` or ``FAIL``, a name, and a detail made only of counts,
ages and revision ids -- never a URL (a database URL can hold a password), a token, a name or
a chat. Nothing is changed: no migration, no database file created, nothing sent; the only
Bot API calls are ``getMe`` and, in webhook mode, ``getWebhookInfo``.

What is checked, and why each can fail on its own:

* secrets -- server.json opens and a bot token is set (a mount that went missing, a file
  with the wrong owner);
* database -- it answers a query (PostgreSQL down, a full disk, SQLite file gone);
* migrations -- the schema is at the head revision of this code (an upgrade half done);
* outbox -- how much waits, how long the oldest due message has waited (the sender stuck,
  Telegram refusing us), how many failed for good;
* Bot API -- Telegram answers with this token; in webhook mode, Telegram posts to the URL we
  set and is not stuck on errors (a reverse proxy that lost its route, a certificate);
* webhook -- in webhook mode only, the bot's own web server answers on this machine (a bot
  process that hangs while its container or unit still looks alive).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import Settings
from crypto.errors import CryptoError
from crypto.keystore import SecretsDir
from storage.db import current_revision, head_revision, make_engine
from storage.models import OutboxItem, OutboxStatus

CHECK_SECONDS = 10.0
# The oldest message that was due this long ago and is still not sent means the sender is
# stuck. A big broadcast drains at 30 a second (3,000 members: under two minutes), so ten
# minutes is well past any healthy backlog.
MAX_OUTBOX_AGE = timedelta(minutes=10)
# Telegram failing to deliver to our webhook this recently, with updates waiting, is a fault
# now (not one from yesterday that has since healed).
WEBHOOK_ERROR_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<11} {self.detail}"


def _sqlite_file(url: str) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


async def _guarded(name: str, work: Callable[[], Awaitable[Check]]) -> Check:
    """One check, bounded in time; an exception is a failure named by its type only (its
    message could carry a URL or a password)."""
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            return await work()
    except TimeoutError:
        return Check(name, False, f"no answer within {CHECK_SECONDS:.0f} s")
    except Exception as exc:
        return Check(name, False, f"error ({type(exc).__name__})")


def check_secrets(settings: Settings) -> Check:
    try:
        SecretsDir(settings.secrets_dir).load()
    except (CryptoError, OSError) as exc:
        return Check("secrets", False, f"server secrets unreadable ({type(exc).__name__})")
    if settings.telegram_bot_token is None:
        return Check("secrets", False, "no bot token (TELEGRAM_BOT_TOKEN or _FILE)")
    return Check("secrets", True, "server secrets and bot token readable")


async def check_database(engine: AsyncEngine) -> Check:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return Check("database", True, "reachable")


async def check_migrations(engine: AsyncEngine, url: str) -> Check:
    current, head = await current_revision(engine), head_revision(url)
    if current == head:
        return Check("migrations", True, f"at head ({head})")
    return Check(
        "migrations", False, f"at {current or 'none'}, code expects {head}: restart the bot"
    )


async def check_outbox(engine: AsyncEngine, max_age: timedelta, now: datetime) -> Check:
    pending = OutboxItem.status == OutboxStatus.PENDING.value
    async with engine.connect() as connection:
        waiting = int(await connection.scalar(select(func.count()).where(pending)) or 0)
        oldest = await connection.scalar(
            select(func.min(OutboxItem.due_at)).where(pending, OutboxItem.due_at <= now)
        )
        failed = await connection.scalar(
            select(func.count()).where(OutboxItem.status == OutboxStatus.FAILED.value)
        )
    if isinstance(oldest, str):  # SQLite hands back text for a bare aggregate
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    due = f"oldest due {_ago(age)} ago" if oldest is not None else "none due yet"
    detail = f"{waiting} waiting, {due}, {int(failed or 0)} failed"
    return Check("outbox", age <= max_age.total_seconds(), detail)


async def check_bot_api(settings: Settings, now: datetime) -> Check:
    from telegram import Bot

    bot = Bot(settings.require_token(), base_url=settings.telegram_api_base_url)
    async with bot:
        await bot.get_me()
        if settings.webhook_url is None:
            return Check("Bot API", True, "reachable (long polling)")
        info = await bot.get_webhook_info()
    if info.url != settings.webhook_url:
        return Check("Bot API", False, "reachable, but the webhook is not set to our URL")
    detail = f"reachable, webhook set, {info.pending_update_count} updates waiting"
    error_at = info.last_error_date
    if error_at is not None and info.pending_update_count:
        since = now - error_at
        if since <= WEBHOOK_ERROR_WINDOW:
            reason = (info.last_error_message or "unknown")[:80]
            return Check("Bot API", False, f"{detail}; delivery failing: {reason}")
    return Check("Bot API", True, detail)


def _local_address(host: str) -> str:
    """Where to reach our own server from this machine: a wildcard bind means loopback."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - a listening address compared, not bound
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def check_webhook_server(settings: Settings) -> Check:
    """GET on the webhook path: the bot's server answers 405 (POST only) when it is up."""
    import aiohttp

    url = f"http://{_local_address(settings.web_host)}:{settings.web_port}{settings.webhook_path}"
    try:
        async with aiohttp.ClientSession() as client, client.get(url) as response:
            status = response.status
    except aiohttp.ClientConnectionError:
        return Check("webhook", False, f"nothing answers on port {settings.web_port}")
    if status == 405:
        return Check("webhook", True, f"the bot's web server answers on port {settings.web_port}")
    return Check("webhook", False, f"port {settings.web_port} answers {status}, not the bot")


async def run_checks(
    settings: Settings, *, max_outbox_age: timedelta = MAX_OUTBOX_AGE
) -> list[Check]:
    """Every check, in order; a check that depends on an earlier one is skipped (as a
    failure) when that one failed."""
    now = datetime.now(UTC)
    checks = [check_secrets(settings)]
    database_file = _sqlite_file(settings.database_url)
    if database_file is not None and not database_file.exists():
        # Connecting would create an empty database; say what is wrong instead.
        checks.append(Check("database", False, "no database file: run `saferelay init`"))
    else:
        engine = make_engine(settings.engine_url())
        try:
            database = await _guarded("database", lambda: check_database(engine))
            checks.append(database)
            if database.ok:
                url = engine.url.render_as_string(hide_password=False)
                checks.append(await _guarded("migrations", lambda: check_migrations(engine, url)))
                checks.append(
                    await _guarded("outbox", lambda: check_outbox(engine, max_outbox_age, now))
                )
        finally:
            await engine.dispose()
    if settings.telegram_bot_token is not None:
        checks.append(await _guarded("Bot API", lambda: check_bot_api(settings, now)))
    if settings.webhook_url is not None:
        checks.append(await _guarded("webhook", lambda: check_webhook_server(settings)))
    return checks
