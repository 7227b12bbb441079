"""The ``saferelay`` command: init, invite, run, report, audit, devices, backup, restore.

Output here is for the person at the shell (so ``print`` is right); the bot's own activity
goes through logging, which is redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import getpass
import logging
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

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
from bot.settings import Settings, SettingsError, database_from, load_settings
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
if TYPE_CHECKING:
    from bot.devices import AdminDevice
    from bot.reports import Request as ReportRequest

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
    engine = make_engine(settings.engine_url())
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
        engine = make_engine(settings.engine_url())
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
        engine = make_engine(settings.engine_url())
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
    """Run the bot until Ctrl-C or SIGTERM: long polling, or a webhook when
    SAFERELAY_WEBHOOK_URL is set."""
    from telegram.error import InvalidToken, NetworkError

    from bot.app import ALLOWED_UPDATES, build_application, run_without_polling
    from bot.logs import configure_logging
    from bot.web import WebServerError
    from bot.webhook import WebhookError

    settings.require_token()
    _require_initialised(settings)
    configure_logging(logging.DEBUG if os.environ.get("SAFERELAY_DEBUG") else logging.INFO)
    asyncio.run(_wait_for_bot_api(settings))
    try:
        app = build_application(settings)
    except WebServerError as exc:  # the Mini App's files missing from this install
        raise CliError(str(exc)) from None
    try:
        if settings.updates and settings.webhook_url is None:
            # bootstrap_retries=-1: a blip while polling starts is retried too, never fatal.
            # Starting to poll also deletes a webhook left from webhook mode (keeping the
            # updates Telegram holds), so switching back is just unsetting the URL.
            app.run_polling(allowed_updates=ALLOWED_UPDATES, bootstrap_retries=-1)
        else:
            # Webhook mode, or a process with SAFERELAY_UPDATES=off that only sends from the
            # shared outbox and runs the sweeps: no getUpdates; serve until SIGINT/SIGTERM.
            asyncio.run(run_without_polling(app))
    except InvalidToken:
        raise CliError(
            "Telegram refused TELEGRAM_BOT_TOKEN: check it with @BotFather (/mybots)."
        ) from None
    except (WebhookError, WebServerError) as exc:
        raise CliError(str(exc)) from None
    except NetworkError as exc:
        raise CliError(
            f"Could not reach the Bot API at {settings.telegram_api_base_url} "
            f"({type(exc).__name__}). Check the network or TELEGRAM_API_BASE_URL."
        ) from None
    return 0


def cmd_demo(_settings: Settings, args: argparse.Namespace) -> int:
    """The whole product on this computer: the real bot against the local Bot API in
    ``sandbox``, and a page of phones on 127.0.0.1. No token, no network."""
    # The bot never imports the sandbox; only this command does, and only when run.
    from sandbox.demo import run_demo

    if not 0 <= args.port <= 65535:
        raise CliError("--port is a number from 1 to 65535 (or 0 for any free port).")
    keep = Path(args.data).expanduser() if args.data else None
    try:
        asyncio.run(run_demo(port=args.port, keep=keep))
    except OSError as exc:
        raise CliError(f"Could not start the demo: {exc.strerror or exc}.") from None
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """One line per check; exit 1 if any failed (for HEALTHCHECK and monitoring)."""
    from bot.health import run_checks

    checks = asyncio.run(
        run_checks(settings, max_outbox_age=timedelta(minutes=args.max_outbox_age))
    )
    for check in checks:
        print(check.line())
    return 0 if all(check.ok for check in checks) else EXIT_BROKEN


def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on an up-to-date database."""
    from storage.db import make_sessionmaker

    async def _run() -> T:
        if not await _schema_ready(settings):
            raise CliError("The database schema is not up to date: run `saferelay init`.")
        engine = make_engine(settings.engine_url())
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def _bound(text: str, *, end: bool) -> date:
    """``2016``, ``2016-07`` or ``2016-07-15``; an end bound covers the whole of what it
    names (``--until 2018`` ends with 2018), so the day after it is returned."""
    parts = [int(p) for p in text.split("-")]
    if not 1 <= len(parts) <= 3:
        raise ValueError(text)
    year, month, day_ = [*parts, 1, 1][:3]
    start = date(year, month, day_)
    if not end:
        return start
    if len(parts) == 1:
        return date(year + 1, 1, 1)
    if len(parts) == 2:
        return date(year + month // 12, month % 12 + 1, 1)
    return start + timedelta(days=1)


def _report_request(args: argparse.Namespace) -> ReportRequest:
    from bot.reports import PRIVATE, PUBLIC, By, Request

    try:
        since = _bound(args.since, end=False) if args.since else None
        until = _bound(args.until, end=True) if args.until else None
    except ValueError:
        raise CliError("--since and --until take a date: 2016, 2016-07 or 2016-07-15.") from None
    if args.public and args.by != By.YEAR.value:
        # A published month next to a published year would let the reader subtract.
        raise CliError("--public reports whole years only: leave out --by.")
    return Request(
        by=By(args.by),
        since=since,
        until=until,
        per_checkin=args.per_checkin,
        rule=PUBLIC if args.public else PRIVATE,
    )


def _report_language(args: argparse.Namespace) -> str:
    if args.lang:
        return str(args.lang)
    prefix = os.environ.get("LANG", "").split("_")[0].split(".")[0].lower()
    return prefix if prefix in ("ko", "zh") else "en"


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    """Wellbeing figures per period from check-ins; needs the team key file and its
    passphrase, and for --group or --region the server secrets too."""
    from bot import reports
    from bot.report_output import chart_language, table, write_chart, write_csv

    if args.db and "://" in args.db:
        try:
            url, password = database_from({"DATABASE_URL": args.db}, settings.data_dir)
        except SettingsError as exc:
            raise CliError(f"--db: {exc}") from None
        settings = replace(settings, database_url=url, database_password=password)
    elif args.db:
        settings = replace(settings, database_url=f"sqlite+aiosqlite:///{Path(args.db).resolve()}")
        if not Path(args.db).exists():
            raise CliError(f"No database file at {args.db}.")
    request = _report_request(args)
    parts = [*([args.group] if args.group else []), *(args.region or [])]
    # Labels and time zones are under the server box: only then are its keys needed.
    server = _require_initialised(settings).load() if parts else None
    team_key = Path(args.key).expanduser()
    if not team_key.exists():
        raise CliError(f"No team key file at {team_key}: give its place with --key PATH.")
    passphrase = _read_passphrase(settings, confirm=False)
    opener = unlock_team_key(team_key, passphrase)
    plain = not parts

    async def _report() -> list[reports.Row]:
        from storage.db import make_sessionmaker

        if not await _schema_ready(settings):
            raise CliError("The database schema is not up to date: run `saferelay init`.")
        engine = make_engine(settings.engine_url())
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                tallies = await reports.collect(
                    session, opener, request, progress=reports.progress_line()
                )
                whole = reports.sums_of(tallies)
                if plain and request.by is reports.By.YEAR:
                    whole = reports.with_saved(whole, await reports.saved_years(session), request)
                    if request.since is None and request.until is None:
                        await reports.save_yearly(session, whole)
                members: dict[str, dict[str, reports.Sums]] = {}
                for part in parts:
                    assert server is not None
                    chosen = (
                        await reports.members_in(session, server, part)
                        if part in reports.REGIONS
                        else await reports.members_labelled(session, server, part)
                    )
                    members[part] = reports.sums_of(tallies, chosen)
                retreats = await reports.retreat_attendance(session, request)
                # Who ran a report, and when (to the day), is on the audit trail.
                await record(session, AuditAction.REPORT, actor_id=None)
                return reports.report_rows(whole, members, retreats, request)
        finally:
            await engine.dispose()

    rows = asyncio.run(_report())
    if not rows:
        print("(no check-ins yet)")
        return 0
    rule = request.rule
    print(table(rows, rule.mean_digits))
    print(
        f"— hidden: fewer than {rule.min_members} members, a share of 0 % or 100 % from fewer "
        f"than {rule.min_for_extremes}, or a part whose rest would give it away."
    )
    print(
        "Means: each check-in counts once."
        if request.per_checkin
        else "Means: each member counts once per period (their own mean over it)."
    )
    if any(row.estimated for row in rows):
        print("* saved before per-member sums were kept: the per-check-in figure.")
    if args.csv:
        write_csv(rows, Path(args.csv))
        print(f"Wrote {args.csv}.")
    if args.chart:
        language, font = chart_language(_report_language(args))
        write_chart(rows, Path(args.chart), language, font)
        used = f"{language} labels, font {font}" if font else f"{language} labels"
        if language != _report_language(args):
            used += " (no font with Hangul and Chinese glyphs installed, e.g. fonts-noto-cjk)"
        print(f"Wrote {args.chart}: {used}.")
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


def cmd_devices_list(settings: Settings, _args: argparse.Namespace) -> int:
    """Print every live staff phone: owner, role, status, fingerprint, and who trusts it."""
    from bot.devices import staff_devices

    secrets = _require_initialised(settings).load()
    shown = _in_transaction(settings, lambda session: staff_devices(session, secrets))
    _print_devices(shown)
    if secrets.team_verify_key is None:
        print("No team verify key on this server yet: no staff phone receives anything until")
        print("the coordinator runs `saferelay devices trust --key PATH` once.")
    return 0


_TRUSTED_BY = {"team": "team key (certifies)", "admin": "an admin's phone", "": "nobody"}


def _print_devices(shown: Sequence[AdminDevice]) -> None:
    print(f"{'fingerprint':14}  {'role':10}  {'status':8}  {'trusted by':20}  owner")
    for d in shown:
        print(
            f"{d.fingerprint:14}  {d.role:10}  {d.status:8}  {_TRUSTED_BY[d.trust]:20}  "
            f"{d.name} ({d.pseudonym})"
        )
    if not shown:
        print("(no staff phones yet)")


def _same_fingerprint(typed: str, shown: str) -> bool:
    return typed.strip().upper().replace(" ", "").replace("-", "") == shown.replace("-", "")


def cmd_devices_trust(settings: Settings, args: argparse.Namespace) -> int:
    """Certify an admin's phone with the team key, after its fingerprint was compared."""
    from bot.devices import staff_devices, trust_admin_device

    secrets_dir = _require_initialised(settings)
    team_key = Path(args.key).expanduser()
    if not team_key.exists():
        raise CliError(f"No team key file at {team_key}: give its place with --key PATH.")
    secrets_dir.check_team_public_key(team_key)
    signer = unlock_team_signer(team_key, _read_passphrase(settings, confirm=False))
    try:
        if secrets_dir.add_team_verify_key(signer):
            print(f"Kept the team verify key in {secrets_dir.server_file}.")
            print("Restart the bot (`saferelay run`) so its pages carry it.")
    except OSError:
        # A systemd install hands server.json over read-only (deploy/saferelay-admin): the
        # key is public, so say what to add where the file is kept.
        line = base64.b64encode(signer.verify_key).decode("ascii")
        print(f"Could not write {secrets_dir.server_file} from here. As root, add this line to")
        print(f'the server.json the bot reads, then restart it:  "team_verify_key": "{line}",')
    # The signer's own verify key, whatever server.json holds yet: what is trusted is checked
    # against it.
    secrets = replace(secrets_dir.load(), team_verify_key=signer.verify_key)
    candidates = [
        d
        for d in _in_transaction(settings, lambda session: staff_devices(session, secrets))
        if d.role == Role.ADMIN.value and d.trust != "team"
    ]
    if not candidates:
        print("No admin's phone waits to be trusted. The admin opens the bot's page on their")
        print("phone first (its fingerprint is shown there).")
        return 0
    typed = args.fingerprint
    if typed is None:
        _print_devices(candidates)
        if not sys.stdin.isatty():
            raise CliError("No terminal to ask for the fingerprint: give it as an argument.")
        typed = input("Fingerprint shown on the admin's phone (or Enter to stop): ")
    if not typed.strip():
        return 0
    chosen = [d for d in candidates if _same_fingerprint(typed, d.fingerprint)]
    if len(chosen) != 1:
        print("No admin's phone waiting has that fingerprint: nothing was trusted.")
        print("Check it on the phone again; if it still differs, do not trust that phone.")
        return EXIT_BROKEN
    [device] = chosen

    async def _trust(session: AsyncSession) -> bool:
        return await trust_admin_device(session, secrets, signer, device.device_id)

    if not _in_transaction(settings, _trust):
        print("That phone is no longer waiting: nothing was trusted.")
        return EXIT_BROKEN
    print(f"Trusted {device.fingerprint}, the phone of {device.name} ({device.pseudonym}).")
    print("It now approves other staff phones in its page.")
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """A backup of the database to PATH, while the bot runs (README, "Backups")."""
    from bot.backup import BackupError, backup

    try:
        done = backup(settings, Path(args.path), overwrite=args.force)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    print(f"Backed up the {done.kind} database to {done.path} ({done.size / 1024:.0f} KiB).")
    print("It holds every sealed record and opens nothing alone; with server.json it tells who")
    print("is enrolled. Keep it off this server, encrypted, and never beside server.json or")
    print("the team key. Test a restore now and then (README, Backups).")
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    """Restore the database from a backup into a fresh data directory or empty database."""
    from bot.backup import BackupError, restore

    secrets = _require_initialised(settings).load()
    try:
        done = restore(settings, secrets, Path(args.path), overwrite=args.force)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    print(f"Restored the {done.kind} database from {done.path}: {done.people} people.")
    if done.migrated:
        print("The backup came from an older version: its schema is now up to date.")
    print("The server secrets here open it. Next: `saferelay run`.")
    return 0


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
    demo = sub.add_parser(
        "demo", help="try it without Telegram: the real bot and a page of phones on 127.0.0.1"
    )
    demo.add_argument(
        "--port", type=int, default=0, help="the page's port on 127.0.0.1 (default: any free one)"
    )
    demo.add_argument(
        "--data",
        metavar="DIR",
        help="keep the demo's database and keys in DIR (default: a throwaway directory)",
    )
    demo.set_defaults(func=cmd_demo)
    sub.add_parser(
        "run", help="run the bot (long polling, or a webhook with SAFERELAY_WEBHOOK_URL)"
    ).set_defaults(func=cmd_run)
    check = sub.add_parser(
        "check",
        help="is it healthy? database, migrations, secrets, Bot API, outbox (exit 1 if not)",
    )
    check.add_argument(
        "--max-outbox-age",
        type=float,
        default=10.0,
        metavar="MINUTES",
        help="fail when a message has been due this long and is still not sent (default 10)",
    )
    check.set_defaults(func=cmd_check)
    report = sub.add_parser(
        "report", help="yearly wellbeing figures (needs the team key file and passphrase)"
    )
    report.add_argument(
        "--key",
        default=f"./{TEAM_KEY_FILE}",
        metavar="PATH",
        help=f"the team key file (default ./{TEAM_KEY_FILE})",
    )
    report.add_argument(
        "--db", metavar="PATH", help="a database file or URL (default DATABASE_URL)"
    )
    report.add_argument("--by", choices=["year", "quarter", "month"], default="year")
    report.add_argument("--since", metavar="DATE", help="from 2016, 2016-07 or 2016-07-15")
    report.add_argument("--until", metavar="DATE", help="to the end of 2018, 2018-06, ...")
    report.add_argument(
        "--group", metavar="LABEL", help="also the members with this label (server secrets)"
    )
    report.add_argument(
        "--region",
        action="append",
        choices=["china", "korea"],
        help="also the members in this region, by time zone; twice to compare (server secrets)",
    )
    report.add_argument(
        "--per-checkin",
        action="store_true",
        help="means over check-ins (default: each member once per period, their own mean)",
    )
    report.add_argument(
        "--public", action="store_true", help="stricter hiding and rounding, for publication"
    )
    report.add_argument("--csv", metavar="PATH", help="also write the table as CSV")
    report.add_argument("--chart", metavar="PATH.png", help="also draw a chart (PNG)")
    report.add_argument(
        "--lang", choices=["en", "ko", "zh"], help="chart labels (default: from LANG)"
    )
    report.set_defaults(func=cmd_report)
    backup = sub.add_parser("backup", help="back up the database to a file (bot may run)")
    backup.add_argument("path", metavar="PATH", help="the backup file to write")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser(
        "restore", help="restore the database from a backup (bot stopped, server.json in place)"
    )
    restore.add_argument("path", metavar="PATH", help="a file made by `saferelay backup`")
    restore.add_argument(
        "--force", action="store_true", help="replace a database that already holds data"
    )
    restore.set_defaults(func=cmd_restore)
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
    devices = sub.add_parser(
        "devices",
        help="staff phones of the Mini App: list them, or trust an admin's phone (team key)",
    )
    devices_sub = devices.add_subparsers(dest="devices_command", required=True)
    devices_sub.add_parser(
        "list", help="every staff phone: fingerprint, role, status, who trusts it"
    ).set_defaults(func=cmd_devices_list)
    trust = devices_sub.add_parser(
        "trust",
        help="certify an admin's phone with the team key after comparing its fingerprint; "
        "it then approves other staff phones in its page",
    )
    trust.add_argument(
        "fingerprint",
        nargs="?",
        metavar="FINGERPRINT",
        help="the fingerprint shown on the admin's phone (asked for if not given)",
    )
    trust.add_argument(
        "--key",
        default=f"./{TEAM_KEY_FILE}",
        metavar="PATH",
        help=f"the team key file (default ./{TEAM_KEY_FILE})",
    )
    trust.set_defaults(func=cmd_devices_trust)
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
