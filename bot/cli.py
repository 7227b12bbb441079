"""The ``saferelay`` command: init, invite, run, report, audit.

Output here is for the person at the shell (so ``print`` is right); the bot's own activity
goes through logging, which is redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import (
    Anchor,
    AnchorError,
    AuditAction,
    ChainCheck,
    anchor_of,
    anchor_problem,
    check_chain,
    recent,
    record,
)
from bot.settings import Settings, SettingsError, load_settings
from crypto.errors import CryptoError, KeyFileError
from crypto.keyfile import check_passphrase
from crypto.keystore import (
    SERVER_FILE,
    TEAM_KEY_FILE,
    SecretsDir,
    unlock_team_key,
    unlock_team_signer,
)
from crypto.signing import TeamSigner
from storage.db import current_revision, head_revision, make_engine, migrate
from storage.models import AuditEntry, Person, Role

EXIT_BROKEN = 1
EXIT_USAGE = 2
ANCHOR_FILE = "saferelay-audit.anchor"

T = TypeVar("T")


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
    if secrets_dir.exists():
        return secrets_dir
    if (settings.old_secrets_dir / SERVER_FILE).exists():
        raise CliError(
            f"The keys are still inside the data directory ({settings.old_secrets_dir}): "
            "run `saferelay init` once to move them out."
        )
    raise CliError(
        f"No keys in {settings.secrets_dir}: run `saferelay init` first "
        "(or set SAFERELAY_SECRETS_DIR to where they are)."
    )


def _move_out_old_keys(settings: Settings, team_key: Path) -> bool:
    """Versions before 0.4 kept both key files in ``<data>/secrets``; move them out.

    server.json goes to the secrets directory; the team key goes to ``team_key`` so the
    coordinator can take it off the server. Returns whether anything moved.
    """
    old_server = settings.old_secrets_dir / SERVER_FILE
    if not old_server.exists() or SecretsDir(settings.secrets_dir).exists():
        return False
    old_team = settings.old_secrets_dir / "team.key"
    if old_team.exists() and team_key.exists():
        raise CliError(f"{team_key} already exists: choose another place with --team-key.")
    settings.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.move(old_server, settings.secrets_dir / SERVER_FILE)
    print(f"Moved server.json out of the data directory to {settings.secrets_dir}.")
    if old_team.exists():
        team_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.move(old_team, team_key)
        print(f"Moved the team key file to {team_key}.")
    with contextlib.suppress(OSError):
        settings.old_secrets_dir.rmdir()
    return True


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


async def _schema_ready(settings: Settings) -> bool:
    engine = make_engine(settings.database_url)
    try:
        return await current_revision(engine) == head_revision(settings.database_url)
    finally:
        await engine.dispose()


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    """Create the data directory, the keys and the schema; never replace a key."""
    team_key = Path(args.team_key).expanduser()
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    moved = _move_out_old_keys(settings, team_key)
    secrets_dir = SecretsDir(settings.secrets_dir)
    made_keys = False
    if not secrets_dir.exists():
        if team_key.exists():
            raise CliError(
                f"Found {team_key} but no {secrets_dir.server_file}. Refusing to make new "
                "keys: restore server.json from your backup (or set SAFERELAY_SECRETS_DIR)."
            )
        passphrase = _read_passphrase(settings, confirm=True)
        try:
            secrets_dir.create(team_key, passphrase)
        except KeyFileError as exc:
            raise CliError(f"{str(exc).capitalize()}.") from None
        made_keys = True
    elif team_key.exists():
        secrets_dir.check_team_public_key(team_key)

    async def _migrate() -> bool:
        engine = make_engine(settings.database_url)
        try:
            return await migrate(engine)
        finally:
            await engine.dispose()

    migrated = asyncio.run(_migrate())
    if not (made_keys or migrated or moved):
        print(f"Already initialised in {settings.data_dir}; nothing changed.")
        return 0
    if made_keys:
        print(f"Created the server secrets in {secrets_dir.server_file}.")
        print(f"Created the team key file: {team_key.resolve()}")
        print("Move the team key file OFF this server now (a USB stick kept by a coordinator,")
        print("plus a second copy elsewhere): the bot runs without it, and without it and its")
        print("passphrase no stored answer can ever be read. `saferelay report --key PATH`")
        print("uses it when you need it.")
    if _inside(settings.secrets_dir, settings.data_dir):
        print(
            "Warning: the secrets directory is inside the data directory, so a copy of the data"
            " directory holds the keys that open it. Set SAFERELAY_SECRETS_DIR elsewhere."
        )
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
    from bot.people import NewInvite, create_invite
    from storage.db import make_sessionmaker

    secrets = _require_initialised(settings).load()
    role = Role(args.role)

    async def _create() -> tuple[NewInvite, str | None]:
        if not await _schema_ready(settings):
            raise CliError("The database schema is not up to date: run `saferelay init`.")
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                made = await create_invite(session, secrets, role, hours=args.hours)
        finally:
            await engine.dispose()
        return made, await _bot_username(settings)

    try:
        made, username = asyncio.run(_create())
    except ValueError as exc:
        raise CliError(f"{str(exc).capitalize()}.") from None
    token = made.token
    until = made.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    print(f"Invite for one {role.value}, single use, valid until {until}.")
    if username:
        print(f"Open this link in Telegram: https://t.me/{username}?start={token}")
    else:
        print("(Bot username unknown: set TELEGRAM_BOT_TOKEN to get a link. Or send the bot")
        print(" /start followed by this token.)")
    print(token)
    return 0


START_BACKOFF_SECONDS = (1, 2, 5, 10, 30, 60)


async def _wait_for_bot_api(settings: Settings) -> None:
    """Until the Bot API answers ``getMe``: a network blip at start (or a Bot API server that
    comes up after us) costs a wait, one line per attempt, never a crash loop. A token that
    Telegram refuses ends the command, since waiting will not fix it."""
    from telegram import Bot
    from telegram.error import InvalidToken, NetworkError

    bot = Bot(settings.require_token(), base_url=settings.telegram_api_base_url)
    attempt = 0
    while True:
        try:
            await bot.get_me()
            return
        except InvalidToken:
            raise CliError(
                "Telegram refused TELEGRAM_BOT_TOKEN: check it with @BotFather (/mybots)."
            ) from None
        except (NetworkError, OSError) as exc:
            wait = START_BACKOFF_SECONDS[min(attempt, len(START_BACKOFF_SECONDS) - 1)]
            attempt += 1
            print(
                f"saferelay: cannot reach the Bot API at {settings.telegram_api_base_url} "
                f"({type(exc).__name__}); trying again in {wait} s.",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(wait)


def cmd_run(settings: Settings, _args: argparse.Namespace) -> int:
    """Run the bot with long polling until Ctrl-C."""
    from telegram import Update
    from telegram.error import InvalidToken, NetworkError

    from bot.app import build_application
    from bot.logs import configure_logging

    settings.require_token()
    _require_initialised(settings)
    configure_logging(logging.DEBUG if os.environ.get("SAFERELAY_DEBUG") else logging.INFO)
    asyncio.run(_wait_for_bot_api(settings))
    app = build_application(settings)
    try:
        # bootstrap_retries=-1: a blip while polling starts is retried too, never fatal.
        app.run_polling(allowed_updates=Update.ALL_TYPES, bootstrap_retries=-1)
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


def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on an up-to-date database."""
    from storage.db import make_sessionmaker

    async def _run() -> T:
        if not await _schema_ready(settings):
            raise CliError("The database schema is not up to date: run `saferelay init`.")
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    """Yearly wellbeing figures from check-ins; needs the team key file and its passphrase."""
    from bot.reports import save_yearly, yearly_wellbeing

    _require_initialised(settings)
    team_key = Path(args.key).expanduser()
    if not team_key.exists():
        raise CliError(f"No team key file at {team_key}: give its place with --key PATH.")
    passphrase = _read_passphrase(settings, confirm=False)
    opener = unlock_team_key(team_key, passphrase)

    async def _report(session: AsyncSession) -> list[tuple[int, int, int, float, float]]:
        rows = await yearly_wellbeing(session, opener)
        await save_yearly(session, rows)
        await record(session, AuditAction.REPORT, actor_id=None)
        return rows

    rows = _in_transaction(settings, _report)
    print("year  members  check-ins  mean health (1-5)  threat of being sent back")
    for year, members, count, health, threat in rows:
        if members < 5:
            print(f"{year}  fewer than 5 members: not shown, so no one can be singled out")
            continue
        print(f"{year}  {members:7d}  {count:9d}  {health:17.2f}  {threat:24.0%}")
    if not rows:
        print("(no check-ins yet)")
    return 0


def _anchor_signer(settings: Settings, args: argparse.Namespace) -> tuple[TeamSigner, Path]:
    """The team's signing key (asks for the passphrase) and where the anchor file is."""
    team_key = Path(args.key).expanduser()
    if not team_key.exists():
        raise CliError(f"No team key file at {team_key}: give its place with --key PATH.")
    signer = unlock_team_signer(team_key, _read_passphrase(settings, confirm=False))
    anchor_file = Path(args.anchor).expanduser() if args.anchor else team_key.with_name(ANCHOR_FILE)
    return signer, anchor_file


def _write_replacing(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a crash never leaves half an anchor."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Check the audit chain; with --key, check the last signed anchor and sign a new one."""
    _require_initialised(settings)
    signer, anchor_file, anchor = None, None, None
    if args.key is not None:
        signer, anchor_file = _anchor_signer(settings, args)
        if anchor_file.exists():
            try:
                anchor = Anchor.read(anchor_file.read_bytes(), signer)
            except AnchorError as exc:
                print(f"The anchor file {anchor_file} cannot be trusted: {exc}.")
                return EXIT_BROKEN

    async def _verify(session: AsyncSession) -> tuple[ChainCheck, str | None]:
        check = await check_chain(session)
        if check.broken is not None or anchor is None:
            return check, None
        return check, await anchor_problem(session, anchor)

    check, problem = _in_transaction(settings, _verify)
    if check.broken is not None:
        print(f"Audit chain broken at entry {check.broken.seq}: {check.broken.reason}.")
        if check.count:
            print(f"Entries 1 to {check.count} before it are intact.")
        return EXIT_BROKEN
    if problem is not None:
        print(f"Audit chain does not match its anchor: {problem}.")
        return EXIT_BROKEN
    print(f"{check.count} entries, chain intact.")
    if signer is None or anchor_file is None:
        print("The anchor was not checked (no --key): anyone who can write the database could")
        print("have rewritten the whole chain. Run with --key PATH to check and renew it.")
        return 0
    if anchor is not None:
        print(f"Matches the anchor of {anchor.made_on.isoformat()} (entry {anchor.seq}).")
    _renew_anchor(check, signer, anchor_file)
    return 0


def _renew_anchor(check: ChainCheck, signer: TeamSigner, anchor_file: Path) -> None:
    """Sign the head of a chain just found intact, and say what to keep."""
    fresh = anchor_of(check)
    if fresh is None:
        return
    _write_replacing(anchor_file, fresh.signed(signer))
    print(f"Anchored entry {fresh.seq} (hash {fresh.head_hash.hex()[:16]}) in {anchor_file}.")
    print("Keep that file with the team key, off this server.")


def cmd_audit_show(settings: Settings, args: argparse.Namespace) -> int:
    """Print the last entries of the audit trail, staff shown by the names members see."""
    from bot.people import shown_name_of

    secrets = _require_initialised(settings).load()
    if args.limit < 1:
        raise CliError("--limit must be at least 1.")

    async def _show(session: AsyncSession) -> list[tuple[AuditEntry, str]]:
        entries = await recent(session, args.limit)
        actor_ids = {e.actor_id for e in entries if e.actor_id is not None}
        people = await session.scalars(select(Person).where(Person.id.in_(actor_ids)))
        staff = {p.id: shown_name_of(p, secrets) for p in people if p.role != Role.MEMBER.value}
        return [(e, _actor_shown(e.actor_id, staff)) for e in entries]

    shown = _in_transaction(settings, _show)
    print(f"{'seq':>6}  {'day':10}  {'actor':24}  {'action':9}  object")
    for entry, actor in shown:
        print(
            f"{entry.seq:6d}  {entry.day.date().isoformat()}  {actor:24}  {entry.action:9}  "
            f"{entry.object_id or '-'}"
        )
    if not shown:
        print("(no entries yet)")
    return 0


def _actor_shown(actor_id: str | None, staff_names: dict[str, str]) -> str:
    """A staff member's name; the bare id of anyone else (a member erasing themselves, or
    someone whose row is gone); "(shell)" for the command line."""
    if actor_id is None:
        return "(shell)"
    return staff_names.get(actor_id, actor_id)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saferelay", description="A privacy-first Telegram bot for check-ins and help."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the data directory, keys and database")
    init.add_argument(
        "--team-key",
        default=f"./{TEAM_KEY_FILE}",
        metavar="PATH",
        help=f"where to write the team key file (default ./{TEAM_KEY_FILE}); move it off "
        "the server afterwards",
    )
    init.set_defaults(func=cmd_init)
    invite = sub.add_parser("invite", help="create a single-use invite link")
    invite.add_argument("--role", required=True, choices=[r.value for r in Role])
    invite.add_argument(
        "--hours",
        type=int,
        default=None,
        help="valid for N hours (default 72 for a member, 24 for staff)",
    )
    invite.set_defaults(func=cmd_invite)
    sub.add_parser("run", help="run the bot (long polling)").set_defaults(func=cmd_run)
    report = sub.add_parser(
        "report", help="yearly wellbeing figures (needs the team key file and passphrase)"
    )
    report.add_argument(
        "--key",
        default=f"./{TEAM_KEY_FILE}",
        metavar="PATH",
        help=f"the team key file (default ./{TEAM_KEY_FILE})",
    )
    report.set_defaults(func=cmd_report)
    audit = sub.add_parser("audit", help="check or show the audit trail of staff actions")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check the chain (exit 1 naming the first broken entry)"
    )
    verify.add_argument(
        "--key",
        default=None,
        metavar="PATH",
        help="the team key file: also check the last signed anchor and sign a new one",
    )
    verify.add_argument(
        "--anchor",
        default=None,
        metavar="PATH",
        help=f"the anchor file (default: {ANCHOR_FILE} beside the team key file)",
    )
    verify.set_defaults(func=cmd_audit_verify)
    show = audit_sub.add_parser("show", help="print the last entries")
    show.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    show.set_defaults(func=cmd_audit_show)
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
