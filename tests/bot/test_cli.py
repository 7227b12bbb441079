"""The saferelay command as a coordinator uses it, in a subprocess with a clean environment."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bot.i18n import t
from sandbox import DEFAULT_TOKEN, FakeBotApi

PASSPHRASE = "a coordinator's long passphrase"
# Each command runs in a subprocess with a clean environment, on the default (SQLite); the
# commands on PostgreSQL are driven in-process in tests/handlers/test_backup.py.
pytestmark = pytest.mark.sqlite_only("the saferelay command with a clean environment")


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment whose home is inside the test's directory: the default secrets
    directory (~/.config/saferelay) is then the test's own, never the real one."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "SYSTEMROOT")}
    home = tmp_path / "home"
    return {**keep, "HOME": str(home), "SAFERELAY_DATA_DIR": str(tmp_path / "data"), **extra}


def secrets_dir(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".config" / "saferelay"


def saferelay(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=env_for(tmp_path, **extra),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def initialised_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `saferelay init` per module: the team key's Argon2id (SENSITIVE, 1 GiB)
    takes seconds, so each test gets a copy of its result instead of its own run."""
    template = tmp_path_factory.mktemp("initialised")
    result = saferelay(template, "init", SAFERELAY_PASSPHRASE=PASSPHRASE)
    assert result.returncode == 0, result.stderr
    return template


@pytest.fixture
def initialised(initialised_once: Path, tmp_path: Path) -> Path:
    shutil.copytree(initialised_once, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_init_keeps_the_keys_out_of_the_data_directory(initialised: Path) -> None:
    data = initialised / "data"
    server, team_key = secrets_dir(initialised) / "server.json", initialised / "saferelay-team.key"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(server.parent.stat().st_mode) == 0o700
    for file in (server, team_key):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "saferelay.db").stat().st_mode) == 0o600
    # A copy of data/ holds no key: nothing there opens a chat id or a sealed answer
    assert [p.name for p in data.rglob("*") if p.is_file()] == ["saferelay.db"]
    before = (server.read_bytes(), team_key.read_bytes())

    again = saferelay(initialised, "init", SAFERELAY_PASSPHRASE="a different passphrase")
    assert again.returncode == 0
    assert "nothing changed" in again.stdout
    assert (server.read_bytes(), team_key.read_bytes()) == before


def test_init_tells_the_coordinator_to_move_the_team_key_off_the_server(tmp_path: Path) -> None:
    usb = tmp_path / "usb" / "team.key"
    result = saferelay(tmp_path, "init", "--team-key", str(usb), SAFERELAY_PASSPHRASE=PASSPHRASE)
    assert result.returncode == 0, result.stderr
    assert usb.exists() and not (tmp_path / "saferelay-team.key").exists()
    assert str(usb) in result.stdout and "OFF this server" in result.stdout


def test_the_bot_runs_and_reports_need_the_key_only_when_reading(initialised: Path) -> None:
    team_key = initialised / "saferelay-team.key"
    moved = initialised / "usb.key"
    team_key.rename(moved)
    # The invite path (like `run`) needs only the server secrets
    invite = saferelay(initialised, "invite", "--role", "member")
    assert invite.returncode == 0, invite.stderr
    missing = saferelay(initialised, "report", SAFERELAY_PASSPHRASE=PASSPHRASE)
    assert missing.returncode == 2 and "--key" in missing.stderr
    report = saferelay(initialised, "report", "--key", str(moved), SAFERELAY_PASSPHRASE=PASSPHRASE)
    assert report.returncode == 0, report.stderr
    assert "no check-ins yet" in report.stdout
    # Both the invite and the report run are in the audit trail, made at the shell
    shown = saferelay(initialised, "audit", "show").stdout.splitlines()
    assert [line.split()[2:4] for line in shown[1:]] == [
        ["(shell)", "invite"],
        ["(shell)", "report"],
    ]


def test_weak_passphrases_are_refused_with_a_reason(tmp_path: Path) -> None:
    for weak, reason in (("short pass", "at least 12"), ("password1234", "too easy to guess")):
        result = saferelay(tmp_path, "init", SAFERELAY_PASSPHRASE=weak)
        assert result.returncode == 2
        assert reason in result.stderr and "Traceback" not in result.stderr
    assert not secrets_dir(tmp_path).exists() or not any(secrets_dir(tmp_path).iterdir())
    assert not (tmp_path / "saferelay-team.key").exists()


def test_init_moves_keys_out_of_an_old_data_directory(tmp_path: Path) -> None:
    from crypto.keystore import SecretsDir
    from tests.conftest import FAST_KDF

    # Given the layout of earlier versions: both key files in data/secrets
    old = tmp_path / "data" / "secrets"
    SecretsDir(old).create(old / "team.key", PASSPHRASE, FAST_KDF)
    server = (old / "server.json").read_bytes()
    refused = saferelay(tmp_path, "invite", "--role", "member")
    assert refused.returncode == 2 and "saferelay init" in refused.stderr
    # When init runs once
    result = saferelay(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    # Then the data directory holds no key, and the bot reads them from their new places
    assert not old.exists()
    assert (secrets_dir(tmp_path) / "server.json").read_bytes() == server
    assert (tmp_path / "saferelay-team.key").exists()
    assert saferelay(tmp_path, "invite", "--role", "member").returncode == 0


def test_init_without_terminal_or_passphrase_says_what_to_set(tmp_path: Path) -> None:
    result = saferelay(tmp_path, "init")
    assert result.returncode == 2
    assert "SAFERELAY_PASSPHRASE" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "saferelay-team.key").exists()


def test_init_refuses_to_replace_a_lost_half(initialised: Path) -> None:
    (secrets_dir(initialised) / "server.json").unlink()
    result = saferelay(initialised, "init", SAFERELAY_PASSPHRASE=PASSPHRASE)
    assert result.returncode == 2
    assert "Refusing to make new keys" in result.stderr


def test_invite_prints_the_bare_token_last(initialised: Path) -> None:
    result = saferelay(initialised, "invite", "--role", "member", "--hours", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines[-1]) >= 32 and " " not in lines[-1]
    assert "member" in lines[0]


def test_invite_before_init_and_bad_hours_are_explained(tmp_path: Path) -> None:
    result = saferelay(tmp_path, "invite", "--role", "admin")
    assert result.returncode == 2 and "saferelay init" in result.stderr
    (tmp_path / "data").mkdir()


def test_invite_rejects_an_unknown_role(initialised: Path) -> None:
    result = saferelay(initialised, "invite", "--role", "owner")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize(
    ("token", "expected"),
    [(None, "TELEGRAM_BOT_TOKEN is not set"), ("not-a-token", "does not look like a bot token")],
)
def test_run_without_a_good_token_names_the_variable(
    initialised: Path, token: str | None, expected: str
) -> None:
    extra = {"TELEGRAM_BOT_TOKEN": token} if token else {}
    result = saferelay(initialised, "run", **extra)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "BotFather" in lines[0]
    if token:
        assert token not in result.stderr


def test_token_from_dotenv_file(initialised: Path) -> None:
    (initialised / ".env").write_text("TELEGRAM_BOT_TOKEN=broken\n")
    result = saferelay(initialised, "run")
    assert "does not look like a bot token" in result.stderr


def test_report_with_wrong_passphrase_fails_clearly(initialised: Path) -> None:
    result = saferelay(initialised, "report", SAFERELAY_PASSPHRASE="not the right one")
    assert result.returncode == 2
    assert result.stderr.strip() == "saferelay: That passphrase does not unlock the team key."


async def test_run_enrols_an_admin_against_a_local_bot_api_and_stops_on_ctrl_c(
    initialised: Path, api: FakeBotApi
) -> None:
    extra = {"TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.base_url}
    # Given an invite link from the shell (the username comes from the Bot API)
    invite = await asyncio.to_thread(saferelay, initialised, "invite", "--role", "admin", **extra)
    assert f"https://t.me/{api.bot_username}?start=" in invite.stdout
    token = invite.stdout.strip().splitlines()[-1]
    # When the bot runs and the coordinator opens the link
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=initialised,
        env=env_for(initialised, **extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        coordinator = api.user(91234567, "Coordinator", language_code="en")
        await coordinator.send_command("start", token)
        await coordinator.wait_for_message(t("en", "language_prompt"), timeout=30)
        await coordinator.press("English")
        await coordinator.wait_for_message("You are set up as admin", timeout=10)
        await coordinator.send_text("Mina")
        await coordinator.wait_for_message(t("en", "staff_name_saved", name="Mina"), timeout=10)
    finally:
        # Then Ctrl-C stops it cleanly
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert "Traceback" not in log
    assert api.token not in log and "91234567" not in log
    assert any(c.method == "setMyCommands" for c in api.calls)


def test_python_dash_m_bot_shows_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for command in ("init", "invite", "run", "report"):
        assert command in result.stdout


async def test_run_waits_for_an_unreachable_bot_api_instead_of_crashing(
    initialised: Path,
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/bot"
    # Given the Bot API is down when the bot starts
    token = DEFAULT_TOKEN
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=initialised,
        env=env_for(initialised, TELEGRAM_BOT_TOKEN=token, TELEGRAM_API_BASE_URL=base_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        # Then it says so in one plain line and keeps trying
        line = (await asyncio.wait_for(process.stderr.readline(), timeout=30)).decode()
        assert "cannot reach the Bot API" in line and "trying again" in line
        assert process.returncode is None
        # When the Bot API comes up, the bot starts polling it
        async with FakeBotApi(port=port) as api:
            await api.wait_for(lambda: any(c.method == "getUpdates" for c in api.calls), timeout=30)
            process.send_signal(signal.SIGINT)
            _, rest = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert "Traceback" not in rest.decode()


# --------------------------------------------------------------------------- audit


def invite_token(root: Path) -> str:
    made = saferelay(root, "invite", "--role", "member")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def by_hand(root: Path, sql: str, *params: object) -> None:
    """What someone with the database file can do, with no help from the bot."""
    with sqlite3.connect(root / "data" / "saferelay.db") as db:
        db.execute(sql, params)


def test_audit_verify_names_an_entry_altered_by_hand(initialised: Path) -> None:
    # Given three invites made at the shell: three entries, intact
    for _ in range(3):
        invite_token(initialised)
    intact = saferelay(initialised, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert "3 entries, chain intact" in intact.stdout and "not checked" in intact.stdout
    # When the second is altered by hand
    by_hand(initialised, "UPDATE audit SET object_id = 'someone-else' WHERE seq = 2")
    # Then verify fails, naming it
    broken = saferelay(initialised, "audit", "verify")
    assert broken.returncode == 1
    assert "broken at entry 2: altered" in broken.stdout
    assert "Entries 1 to 1 before it are intact" in broken.stdout


def test_audit_verify_names_an_entry_deleted_from_the_middle(initialised: Path) -> None:
    for _ in range(3):
        invite_token(initialised)
    by_hand(initialised, "DELETE FROM audit WHERE seq = 2")
    broken = saferelay(initialised, "audit", "verify")
    assert broken.returncode == 1
    assert "broken at entry 2: missing" in broken.stdout


def rehash_everything(root: Path) -> None:
    """Recompute every hash, as someone would who changed an entry and knows the scheme."""
    from crypto.hashing import chain_link

    with sqlite3.connect(root / "data" / "saferelay.db") as db:
        rows = db.execute(
            "SELECT seq, substr(day, 1, 10), actor_id, action, object_id FROM audit ORDER BY seq"
        ).fetchall()
        prev = bytes(32)
        for seq, day, actor, action, obj in rows:
            link = chain_link((str(seq), day, actor or "", action, obj or ""), prev)
            db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, link, seq))
            prev = link


def test_the_signed_anchor_catches_a_rewrite_the_chain_alone_cannot(initialised: Path) -> None:
    team_key = initialised / "saferelay-team.key"
    anchor = initialised / "saferelay-audit.anchor"
    # Given two entries, verified with the team key: an anchor is signed beside the key
    for _ in range(2):
        invite_token(initialised)
    first = saferelay(
        initialised, "audit", "verify", "--key", str(team_key), SAFERELAY_PASSPHRASE=PASSPHRASE
    )
    assert first.returncode == 0, first.stderr
    assert "Anchored entry 2" in first.stdout and anchor.exists()
    assert stat.S_IMODE(anchor.stat().st_mode) == 0o600
    # When entry 1 is changed and every hash recomputed
    by_hand(initialised, "UPDATE audit SET action = 'report', object_id = NULL WHERE seq = 1")
    rehash_everything(initialised)
    # Then the chain alone looks whole ...
    assert saferelay(initialised, "audit", "verify").returncode == 0
    # ... but not against the anchor, and the anchor is not moved on
    before = anchor.read_bytes()
    caught = saferelay(
        initialised, "audit", "verify", "--key", str(team_key), SAFERELAY_PASSPHRASE=PASSPHRASE
    )
    assert caught.returncode == 1
    assert "entry 2 no longer has the hash anchored" in caught.stdout
    assert anchor.read_bytes() == before


def test_erasing_a_member_leaves_the_audit_chain_verifiable(initialised: Path) -> None:
    from bot.app import build_core
    from bot.erasure import erase_member
    from bot.people import redeem_invite
    from bot.settings import load_settings
    from storage.models import Person

    # Given a member who enrolled through a shell invite ...
    token = invite_token(initialised)
    settings = load_settings(
        {**env_for(initialised), "SAFERELAY_SECRETS_DIR": str(secrets_dir(initialised))}
    )

    async def enrol_and_erase() -> str:
        core = build_core(settings)
        try:
            async with core.sessions() as session, session.begin():
                member = await redeem_invite(
                    session, core.secrets, token, telegram_user_id=9, chat_id=9, language="en"
                )
                assert member is not None
            # ... who then leaves, and whose row the chat upkeep deletes
            async with core.sessions() as session, session.begin():
                assert await erase_member(
                    session, core.secrets, member.person_id, actor_id=member.person_id
                )
            async with core.sessions() as session, session.begin():
                await session.delete(await session.get(Person, member.person_id))
            return member.person_id
        finally:
            await core.engine.dispose()

    member_id = asyncio.run(enrol_and_erase())
    # Then the chain still verifies, and shows only that an id was erased
    verified = saferelay(initialised, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "3 entries, chain intact" in verified.stdout
    shown = saferelay(initialised, "audit", "show", "--limit", "2")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 3  # a header and two entries
    assert "(shell)" in lines[1] and "enrol" in lines[1] and member_id in lines[1]
    assert "erase" in lines[2] and member_id in lines[2]


def test_devices_trust_keeps_the_team_verify_key_for_an_older_install(initialised: Path) -> None:
    import json

    # Given an install made before the team's verify key was kept in server.json
    server = secrets_dir(initialised) / "server.json"
    document = json.loads(server.read_text())
    made_with = document.pop("team_verify_key")
    server.write_text(json.dumps(document))
    listed = saferelay(initialised, "devices", "list")
    assert listed.returncode == 0, listed.stderr
    assert "(no staff phones yet)" in listed.stdout
    assert "saferelay devices trust" in listed.stdout  # says what is missing, and the fix

    # When the coordinator runs `devices trust` with the team key file
    team_key = initialised / "saferelay-team.key"
    trusted = saferelay(
        initialised, "devices", "trust", "--key", str(team_key), SAFERELAY_PASSPHRASE=PASSPHRASE
    )
    # Then the verify key is back, the same one, private, and nothing else was changed
    assert trusted.returncode == 0, trusted.stderr
    assert "Kept the team verify key" in trusted.stdout
    assert "No admin's phone waits to be trusted" in trusted.stdout
    kept = json.loads(server.read_text())
    assert kept == {**document, "team_verify_key": made_with}
    assert stat.S_IMODE(server.stat().st_mode) == 0o600
    # A wrong passphrase is refused clearly, whatever the fingerprint
    wrong = saferelay(
        initialised,
        "devices",
        "trust",
        "ABCD-EF12-3456",
        "--key",
        str(team_key),
        SAFERELAY_PASSPHRASE="not the right one",
    )
    assert wrong.returncode == 2
    assert "passphrase" in wrong.stderr
