"""`saferelay check` as Docker's HEALTHCHECK and a monitoring system run it: a subprocess,
one line per check, exit 1 when something is wrong, nothing identifying in what it prints."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, update

from bot.core import Core
from bot.delivery import Outgoing, enqueue
from sandbox import FakeBotApi
from storage.db import alembic_config, current_revision, migrate
from storage.models import OutboxItem, utcnow
from tests.conftest import RunningBot, bare_people, database_env, free_port, secrets_of


async def check(
    data_dir: Path, api: FakeBotApi | None, *args: str, **extra: str
) -> tuple[int, list[str]]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    env = {
        **keep,
        "SAFERELAY_DATA_DIR": str(data_dir),
        "SAFERELAY_SECRETS_DIR": str(secrets_of(data_dir)),
        **database_env(data_dir),  # the PostgreSQL pass's database, if any
        **(
            {"TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.base_url}
            if api is not None
            else {}
        ),
        **extra,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check",
        *args,
        cwd=data_dir.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert not err, err.decode()
    assert process.returncode is not None
    return process.returncode, out.decode().splitlines()


def by_name(lines: list[str]) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in lines}


async def test_a_running_bot_is_healthy_and_nothing_identifying_is_printed(
    bot: RunningBot,
) -> None:
    code, lines = await check(bot.settings.data_dir, bot.api)
    assert code == 0, lines
    assert by_name(lines) == {
        "secrets": "ok",
        "database": "ok",
        "migrations": "ok",
        "outbox": "ok",
        "Bot": "ok",
    }
    printed = "\n".join(lines)
    assert bot.api.token not in printed and bot.api.base_url not in printed
    assert str(bot.settings.data_dir) not in printed


async def test_a_stuck_outbox_fails_with_its_age(core: Core, api: FakeBotApi) -> None:
    # Given a message due an hour ago that no sender has sent
    [person] = bare_people(1)
    async with core.sessions() as session, session.begin():
        session.add(person)
        await session.flush()
        enqueue(session, core.secrets, person.id, Outgoing("hello"))
    async with core.sessions() as session, session.begin():
        await session.execute(update(OutboxItem).values(due_at=utcnow() - timedelta(hours=1)))
    # When the check runs
    code, lines = await check(core.settings.data_dir, api)
    # Then it fails on the outbox alone, saying how long it has waited
    assert code == 1
    assert by_name(lines)["outbox"] == "FAIL"
    [outbox] = [line for line in lines if " outbox " in line]
    assert "1 waiting, oldest due 60 min ago, 0 failed" in outbox
    assert [name for name, state in by_name(lines).items() if state == "FAIL"] == ["outbox"]
    # and a monitoring system that allows more gets a pass
    code, lines = await check(core.settings.data_dir, api, "--max-outbox-age", "90")
    assert code == 0, lines


def _downgrade(connection: Connection, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def test_a_schema_behind_the_code_fails(data_dir: Path, api: FakeBotApi) -> None:
    from bot.app import build_core
    from tests.conftest import make_settings

    core = build_core(make_settings(data_dir))
    url = core.engine.url.render_as_string(hide_password=False)
    first = ScriptDirectory.from_config(alembic_config(url)).get_base()
    assert isinstance(first, str)
    await migrate(core.engine, first)  # a new SQLite file: up to the first revision only
    if await current_revision(core.engine) != first:  # the PostgreSQL pass's copy is at head
        async with core.engine.begin() as connection:
            await connection.run_sync(_downgrade, url, first)
    await core.engine.dispose()
    code, lines = await check(data_dir, api)
    assert code == 1
    assert by_name(lines)["migrations"] == "FAIL"
    assert f"at {first}" in next(line for line in lines if "migrations" in line)


@pytest.mark.sqlite_only("no database yet means no SQLite file; it must not be created")
async def test_missing_pieces_each_fail_without_creating_anything(data_dir: Path) -> None:
    # Given no database yet, no server secrets, and a Bot API nobody answers at
    (secrets_of(data_dir) / "server.json").unlink()
    unreachable = f"http://127.0.0.1:{free_port()}/bot"
    code, lines = await check(
        data_dir,
        None,
        TELEGRAM_BOT_TOKEN="123456789:AAFakeTokenForTestsOnly_abcdefghijklmn",
        TELEGRAM_API_BASE_URL=unreachable,
    )
    # Then each says so, and the check made no database file
    assert code == 1
    assert by_name(lines) == {"secrets": "FAIL", "database": "FAIL", "Bot": "FAIL"}
    assert not (data_dir / "saferelay.db").exists()
    assert unreachable not in "\n".join(lines)


async def test_webhook_mode_without_a_running_bot_fails_both_webhook_checks(
    core: Core, api: FakeBotApi
) -> None:
    # Given settings for webhook mode, but no bot running (so no webhook set, nothing listens)
    port = free_port()
    code, lines = await check(
        core.settings.data_dir,
        api,
        SAFERELAY_WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram",
        SAFERELAY_WEB_PORT=str(port),
    )
    # Then the two checks that concern it fail, and say why in plain words
    assert code == 1
    states = by_name(lines)
    assert states["Bot"] == "FAIL" and states["webhook"] == "FAIL"
    assert any("webhook is not set to our URL" in line for line in lines)
    assert any(f"nothing answers on port {port}" in line for line in lines)
    assert states["database"] == states["migrations"] == states["secrets"] == "ok"
