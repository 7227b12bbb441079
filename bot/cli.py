"""The ``saferelay`` command: init, invite, run, report.

Output here is for the person at the shell (so ``print`` is right); the bot's own activity
goes through logging, which is redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta

from bot.settings import Settings, SettingsError, load_settings
from crypto.errors import CryptoError, KeyFileError
from crypto.keyfile import check_passphrase
from crypto.keystore import SecretsDir
from storage.db import current_revision, head_revision, make_engine, migrate
from storage.models import Role, utcnow

EXIT_USAGE = 2


class CliError(Exception):
    """Ends the command with this one line on stderr and exit status 2."""


def _read_passphrase(settings: Settings, *, confirm: bool) -> str:
    if settings.passphrase is not None:
        return settings.passphrase.get()
    if not sys.stdin.isatty():
        raise CliError("No terminal to ask for the passphrase: set SAFERELAY_PASSPHRASE.")
    for _ in range(3):
        first = getpass.getpass("Team passphrase: ")
        if not confirm:
            return first
        try:
            check_passphrase(first)
        except KeyFileError as exc:
            print(f"{str(exc).capitalize()}. Please try again.", file=sys.stderr)
            continue
        if getpass.getpass("Same passphrase again: ") == first:
            return first
        print("The two passphrases differ. Please try again.", file=sys.stderr)
    raise CliError("No passphrase set.")


def _require_initialised(settings: Settings) -> SecretsDir:
    secrets_dir = SecretsDir(settings.secrets_dir)
    if not secrets_dir.server_file.exists():
        raise CliError(f"{settings.data_dir} is not initialised: run `saferelay init` first.")
    return secrets_dir


async def _schema_ready(settings: Settings) -> bool:
    engine = make_engine(settings.database_url)
    try:
        return await current_revision(engine) == head_revision(settings.database_url)
    finally:
        await engine.dispose()


def cmd_init(settings: Settings, _args: argparse.Namespace) -> int:
    """Create the data directory, the keys and the schema; never replace a key."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets_dir = SecretsDir(settings.secrets_dir)
    server, team = secrets_dir.server_file.exists(), secrets_dir.team_key_file.exists()
    made_keys = False
    if server != team:
        present, missing = (
            (secrets_dir.server_file, secrets_dir.team_key_file)
            if server
            else (secrets_dir.team_key_file, secrets_dir.server_file)
        )
        raise CliError(
            f"Found {present} but not {missing}. Refusing to make new keys: restore the "
            "missing file from your backup."
        )
    if not server:
        passphrase = _read_passphrase(settings, confirm=True)
        try:
            secrets_dir.create(passphrase)
        except KeyFileError as exc:
            raise CliError(f"{str(exc).capitalize()}.") from None
        made_keys = True
    else:
        secrets_dir.check_team_public_key()

    async def _migrate() -> bool:
        engine = make_engine(settings.database_url)
        try:
            return await migrate(engine)
        finally:
            await engine.dispose()

    migrated = asyncio.run(_migrate())
    if not made_keys and not migrated:
        print(f"Already initialised in {settings.data_dir}; nothing changed.")
        return 0
    if made_keys:
        print(f"Created keys in {settings.secrets_dir} (server.json, team.key).")
        print("Keep a copy of team.key and its passphrase somewhere safe and offline:")
        print("without them no stored answer can ever be read.")
    if migrated:
        print(f"Database ready: {settings.database_url.split(':///')[-1]}")
    print("Next: `saferelay invite --role admin`, then `saferelay run`.")
    return 0


async def _bot_username(settings: Settings) -> str | None:
    """Ask Telegram (or the configured local server) for the bot's username, if possible."""
    if settings.telegram_bot_token is None:
        return None
    from telegram import Bot
    from telegram.error import TelegramError

    bot = Bot(
        settings.telegram_bot_token.get(),
        base_url=settings.telegram_api_base_url,
        base_file_url=settings.telegram_file_base_url,
    )
    try:
        async with asyncio.timeout(15):
            me = await bot.get_me()
        return me.username
    except (TelegramError, TimeoutError, OSError):
        return None


def cmd_invite(settings: Settings, args: argparse.Namespace) -> int:
    """Create a single-use invite and print the link and, last, the bare token."""
    from bot.people import create_invite
    from storage.db import make_sessionmaker

    secrets = _require_initialised(settings).load()
    role = Role(args.role)

    async def _create() -> tuple[str, str | None]:
        if not await _schema_ready(settings):
            raise CliError("The database schema is not up to date: run `saferelay init`.")
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                token = await create_invite(session, secrets, role, hours=args.hours)
        finally:
            await engine.dispose()
        return token, await _bot_username(settings)

    try:
        token, username = asyncio.run(_create())
    except ValueError as exc:
        raise CliError(f"{str(exc).capitalize()}.") from None
    until = (utcnow() + timedelta(hours=args.hours)).strftime("%Y-%m-%d %H:%M UTC")
    print(f"Invite for one {role.value}, single use, valid until {until}.")
    if username:
        print(f"Open this link in Telegram: https://t.me/{username}?start={token}")
    else:
        print("(Bot username unknown: set TELEGRAM_BOT_TOKEN to get a link. Or send the bot")
        print(" /start followed by this token.)")
    print(token)
    return 0


def cmd_run(settings: Settings, _args: argparse.Namespace) -> int:
    """Run the bot with long polling until Ctrl-C."""
    from telegram import Update
    from telegram.error import InvalidToken, NetworkError

    from bot.app import build_application
    from bot.logs import configure_logging

    settings.require_token()
    _require_initialised(settings)
    configure_logging(logging.DEBUG if os.environ.get("SAFERELAY_DEBUG") else logging.INFO)
    app = build_application(settings)
    try:
        app.run_polling(allowed_updates=Update.ALL_TYPES)
    except InvalidToken:
        raise CliError(
            "Telegram refused TELEGRAM_BOT_TOKEN: check it with @BotFather (/mybots)."
        ) from None
    except NetworkError as exc:
        raise CliError(
            f"Could not reach the Bot API at {settings.telegram_api_base_url} "
            f"({type(exc).__name__}). Check the network or TELEGRAM_API_BASE_URL."
        ) from None
    return 0


def cmd_report(settings: Settings, _args: argparse.Namespace) -> int:
    """Yearly wellbeing figures from check-ins; needs the team passphrase."""
    from bot.reports import save_yearly, yearly_wellbeing

    secrets_dir = _require_initialised(settings)
    passphrase = _read_passphrase(settings, confirm=False)
    opener = secrets_dir.unlock(passphrase)

    async def _report() -> list[tuple[int, int, int, float, float]]:
        from storage.db import make_sessionmaker

        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                rows = await yearly_wellbeing(session, opener)
                await save_yearly(session, rows)
                return rows
        finally:
            await engine.dispose()

    rows = asyncio.run(_report())
    print("year  members  check-ins  mean health (1-5)  threat of being sent back")
    for year, members, count, health, threat in rows:
        if members < 5:
            print(f"{year}  fewer than 5 members: not shown, so no one can be singled out")
            continue
        print(f"{year}  {members:7d}  {count:9d}  {health:17.2f}  {threat:24.0%}")
    if not rows:
        print("(no check-ins yet)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saferelay", description="A privacy-first Telegram bot for check-ins and help."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create the data directory, keys and database").set_defaults(
        func=cmd_init
    )
    invite = sub.add_parser("invite", help="create a single-use invite link")
    invite.add_argument("--role", required=True, choices=[r.value for r in Role])
    invite.add_argument("--hours", type=int, default=72, help="valid for N hours (default 72)")
    invite.set_defaults(func=cmd_invite)
    sub.add_parser("run", help="run the bot (long polling)").set_defaults(func=cmd_run)
    sub.add_parser(
        "report", help="yearly wellbeing figures (asks for the team passphrase)"
    ).set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Everything we create (database, -wal, -shm, keys) is for this user alone.
    os.umask(0o077)
    try:
        settings = load_settings()
        result: int = args.func(settings, args)
        return result
    except (SettingsError, CliError) as exc:
        print(f"saferelay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CryptoError as exc:
        print(f"saferelay: {str(exc).capitalize()}.", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
