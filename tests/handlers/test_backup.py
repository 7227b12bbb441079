"""`saferelay backup` while the bot runs, `saferelay restore` into a fresh data directory
(SQLite) or an empty database (PostgreSQL, on that pass): afterwards a report and `/cases`
show what they showed before. The commands run as a coordinator runs them (``main``)."""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.checkins import CheckInAnswers, record_checkin
from bot.cli import main
from bot.i18n import t
from sandbox import FakeBotApi, FakeUser
from storage.models import Role
from tests.conftest import (
    PASSPHRASE,
    TEST_DATABASE,
    RunningBot,
    database_env,
    make_keys,
    make_settings,
    secrets_of,
    start_bot,
    stop_bot,
    team_key_of,
)
from tests.handlers.conftest import ask, staff_invite


async def saferelay(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str],
    *argv: str,
) -> tuple[int, str]:  # fmt: skip
    """`saferelay ARGV` in this process (its own event loop, so in a thread) with ``env``:
    the exit code and everything it printed."""
    for name in ("DATABASE_URL", "DATABASE_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def env_of(data_dir: Path, database: dict[str, str]) -> dict[str, str]:
    return {
        "SAFERELAY_DATA_DIR": str(data_dir),
        "SAFERELAY_SECRETS_DIR": str(secrets_of(data_dir)),
        "SAFERELAY_PASSPHRASE": PASSPHRASE,
        **database,
    }


@pytest.fixture
async def running(api: FakeBotApi, data_dir: Path) -> AsyncIterator[RunningBot]:
    settings = make_settings(data_dir, api)
    app = await start_bot(api, settings)
    try:
        yield RunningBot(api, app, settings, io.StringIO())
    finally:
        if app.running:  # a test may have stopped it to restore
            await stop_bot(app)


async def cases_shown(caseworker: FakeUser) -> list[str]:
    """What /cases lists, each line without its age (minutes pass during the test)."""
    seen = len(caseworker.inbox())
    await caseworker.send_command("cases")
    await caseworker.wait_for_message(t("en", "cases_title"))
    await caseworker.wait_for_message(count=seen + 3)  # the title and two requests
    return sorted(
        (m.text or "").rsplit(" · ", 1)[0]
        for m in caseworker.inbox()[seen:]
        if m.text and " · " in m.text
    )


async def test_a_backup_restored_on_a_fresh_data_directory_shows_the_same(
    running: RunningBot,
    data_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a caseworker with two members' requests, one claimed, and a year of check-ins
    # from enough members for the report to show its figures
    admin, mina = running.api.user(660001, "Admin"), running.api.user(660002, "Mina")
    await running.enrol(admin, Role.ADMIN, "en", name="Coordinator")
    await running.enrol(mina, Role.CASEWORKER, "en", name="Mina")
    members = [running.api.user(660010 + n, f"M{n}") for n in range(2)]
    for member in members:
        await running.enrol(member, language="en", token=await staff_invite(running, mina))
    await ask(members[0], "medical", "today", "Tooth pain for a week")
    await ask(members[1], "housing", "week", None)
    await running.drained()
    alert = await mina.wait_for_message("Tooth pain")
    await mina.press(t("en", "btn_claim"), message=alert)
    await running.api.wait_idle()
    core = running.core
    surveyed = await running.seed(7, 661000)
    async with core.sessions() as session, session.begin():
        for n, (person_id, _) in enumerate(surveyed):
            answers = CheckInAnswers(1 + n % 5, n % 2 == 0)
            at = datetime(2025, 1 + n, 1, tzinfo=UTC)
            await record_checkin(session, core.secrets.team_sealer, person_id, answers, at=at)
    before_cases = await cases_shown(mina)
    report = ("report", "--key", str(team_key_of(data_dir)), "--since", "2025", "--until", "2025")
    env = env_of(data_dir, database_env(data_dir))
    code, before_report = await saferelay(monkeypatch, capsys, env, *report)
    assert code == 0, before_report
    assert "2025" in before_report and "2.57" in before_report  # mean health of seven

    # When the coordinator backs up while the bot runs, then stops it
    backup_file = tmp_path / "saferelay.backup"
    code, said = await saferelay(monkeypatch, capsys, env, "backup", str(backup_file))
    assert code == 0, said
    assert backup_file.stat().st_mode & 0o077 == 0  # for the coordinator alone
    await stop_bot(running.app)
    # ... and restores it on a fresh data directory (an empty database), with server.json
    # put back from its own backup; the team key stays offline with the coordinator
    fresh = tmp_path / "elsewhere" / "data"
    fresh.parent.mkdir()
    shutil.copytree(secrets_of(data_dir), secrets_of(fresh))
    database = {}
    if TEST_DATABASE == "postgresql":
        database = {"DATABASE_URL": request.getfixturevalue("empty_postgres_url")}
    fresh_env = env_of(fresh, database)
    code, said = await saferelay(monkeypatch, capsys, fresh_env, "restore", str(backup_file))
    assert code == 0, said
    assert "11 people" in said  # admin, Mina, two members, seven surveyed

    # Then the report from the restored database is the same, line for line
    code, after_report = await saferelay(monkeypatch, capsys, fresh_env, *report)
    assert code == 0, after_report
    assert after_report == before_report
    # ... and the restored bot lists Mina's requests as before, and reaches her
    settings = make_settings(fresh, running.api, **database)
    app = await start_bot(running.api, settings)
    try:
        assert await cases_shown(mina) == before_cases
    finally:
        await stop_bot(app)
    # ... and restoring again over the data now there is refused, saying what to do
    code, said = await saferelay(monkeypatch, capsys, fresh_env, "restore", str(backup_file))
    assert code == 2 and "already holds data" in said and "--force" in said


async def test_a_backup_is_refused_a_second_time_and_restore_needs_the_server_secrets(
    running: RunningBot,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = env_of(data_dir, database_env(data_dir))
    backup_file = tmp_path / "b"
    assert (await saferelay(monkeypatch, capsys, env, "backup", str(backup_file)))[0] == 0
    # An existing file is not overwritten unless asked
    code, said = await saferelay(monkeypatch, capsys, env, "backup", str(backup_file))
    assert code == 2 and "already exists" in said
    assert (await saferelay(monkeypatch, capsys, env, "backup", str(backup_file), "--force"))[
        0
    ] == 0
    # A fresh data directory without server.json is told to put it back first
    bare = tmp_path / "bare" / "data"
    code, said = await saferelay(monkeypatch, capsys, env_of(bare, {}), "restore", str(backup_file))
    assert code == 2 and "No keys in" in said
    # Other files are not taken for backups
    stray = tmp_path / "notes.txt"
    stray.write_text("hello")
    code, said = await saferelay(monkeypatch, capsys, env, "restore", str(stray))
    assert code == 2 and "not a saferelay backup" in said


async def test_restoring_beside_the_wrong_server_secrets_is_caught(
    running: RunningBot,
    data_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a backup of a bot with one enrolled admin
    await running.enrol(running.api.user(670001, "Admin"), Role.ADMIN, "en", name="Coordinator")
    backup_file = tmp_path / "b"
    env = env_of(data_dir, database_env(data_dir))
    assert (await saferelay(monkeypatch, capsys, env, "backup", str(backup_file)))[0] == 0
    # When it is restored where `saferelay init` made new keys instead of restoring them
    other = tmp_path / "other" / "data"
    make_keys(other)
    database = {}
    if TEST_DATABASE == "postgresql":
        database = {"DATABASE_URL": request.getfixturevalue("empty_postgres_url")}
    code, said = await saferelay(monkeypatch, capsys, env_of(other, database), "restore",
                                 str(backup_file))  # fmt: skip
    # Then the coordinator is told to put back the server.json the backup was made with
    assert code == 2 and "server.json that was in use" in said
