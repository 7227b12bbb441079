"""Webhook mode end to end: the real bot behind its own web server, the fake Bot API posting
updates to it like Telegram, and the way back to long polling."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.app import ALLOWED_UPDATES, WEBHOOK_KEY
from bot.i18n import t
from bot.logs import configure_logging, forget_remembered
from bot.webhook import SECRET_HEADER, WebhookDoor
from sandbox import FakeBotApi, FakeUser
from storage.models import CheckIn, Invite, Person, Role
from tests.conftest import (
    RunningBot,
    database_env,
    eventually,
    free_port,
    make_settings,
    secrets_of,
    start_bot,
    stop_bot,
)

PATH = "/telegram/updates"


@contextlib.asynccontextmanager
async def _running(api: FakeBotApi, data_dir: Path, *, webhook: bool) -> AsyncIterator[RunningBot]:
    """The bot, with its log captured, in webhook mode on a free port or polling."""
    log = io.StringIO()
    forget_remembered()
    handler = configure_logging(logging.DEBUG, log)
    extra: dict[str, str] = {}
    if webhook:
        port = free_port()
        extra = {
            "SAFERELAY_WEBHOOK_URL": f"http://127.0.0.1:{port}{PATH}",
            "SAFERELAY_WEB_PORT": str(port),
        }
    settings = make_settings(data_dir, api, **extra)
    try:
        app = await start_bot(api, settings)
        try:
            yield RunningBot(api=api, app=app, settings=settings, log=log)
        finally:
            await stop_bot(app)
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture
async def hooked(api: FakeBotApi, data_dir: Path) -> AsyncIterator[RunningBot]:
    """The bot in webhook mode on a free port of 127.0.0.1."""
    async with _running(api, data_dir, webhook=True) as running:
        yield running


def _url(bot: RunningBot) -> str:
    assert bot.settings.webhook_url is not None
    return bot.settings.webhook_url


async def _count(bot: RunningBot, model: type[Person] | type[CheckIn]) -> int:
    async with bot.core.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _checkin(user: FakeUser) -> None:
    await user.send_command("checkin")
    await user.press(t("en", "checkin_health_4"))
    await user.press(t("en", "no"))
    await user.press(t("en", "checkin_skip"))
    await user.wait_for_message(t("en", "checkin_thanks"))


async def test_enrolment_and_checkin_arrive_by_webhook(hooked: RunningBot) -> None:
    # Given the bot in webhook mode: Telegram knows where to post, and with what secret
    api = hooked.api
    info = await hooked.app.bot.get_webhook_info()
    assert info.url == _url(hooked)
    assert list(info.allowed_updates) == ALLOWED_UPDATES
    # When a newcomer enrols with an invite and checks in
    member = api.user(810001, "Member", language_code="en")
    await hooked.enrol(member, Role.MEMBER, "en")
    await _checkin(member)
    # Then it all came by POST with the secret, none by polling, and the answer is stored
    assert not api.calls_to("getUpdates")
    assert api.webhook_deliveries and all(d.ok for d in api.webhook_deliveries)
    secret = hooked.core.secrets.pepper.webhook_secret()
    assert {d.header for d in api.webhook_deliveries} == {secret}
    assert not any(call.params.get("drop_pending_updates") for call in api.calls_to("setWebhook"))
    assert await _count(hooked, CheckIn) == 1


def _start_update(user: FakeUser, token: str) -> dict[str, object]:
    text = f"/start {token}"
    return {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": user.chat_dict(),
            "from": user.to_dict(),
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len("/start")}],
        },
    }


@pytest.mark.parametrize("header", [None, "", "not-the-secret", "é"])
async def test_a_post_without_the_secret_is_refused_and_nothing_happens(
    hooked: RunningBot, header: str | None
) -> None:
    # Given someone who found the webhook address and holds a valid invite
    token = await hooked.invite(Role.MEMBER)
    user = hooked.api.user(810002, "Stranger", language_code="en")
    user.started = True  # so any reply from the bot would show in the chat
    people_before = await _count(hooked, Person)
    headers = {} if header is None else {SECRET_HEADER: header}
    # When they post an update without the secret (or with another)
    async with aiohttp.ClientSession() as client:
        async with client.post(
            _url(hooked), json=_start_update(user, token), headers=headers
        ) as response:
            status = response.status
        # and try any other method on the webhook path
        async with client.get(_url(hooked)) as response:
            get_status = response.status
    # Then: 403, no reply, no row, the invite unused, and no log line about them
    assert status == 403
    assert get_status == 405
    door: WebhookDoor = hooked.app.bot_data[WEBHOOK_KEY]
    assert door.refused == 1
    await hooked.api.wait_idle()
    assert hooked.api.bot_messages(user.chat_id) == []
    assert await _count(hooked, Person) == people_before
    async with hooked.core.sessions() as session:
        invites_left = await session.scalar(select(func.count()).select_from(Invite))
    assert invites_left == 1  # a used invite is deleted
    assert "810002" not in hooked.log.getvalue() and token not in hooked.log.getvalue()
    # And the same invite, sent through Telegram (with the secret), does work
    await hooked.enrol(user, Role.MEMBER, "en", token=token)
    assert await _count(hooked, Person) == people_before + 1


async def test_switching_modes_loses_no_update(api: FakeBotApi, data_dir: Path) -> None:
    # Given a member enrolled while the bot ran with a webhook
    member = api.user(810003, "Member", language_code="en")
    async with _running(api, data_dir, webhook=True) as bot:
        await bot.enrol(member, Role.MEMBER, "en")
    # When they write while the bot is down (Telegram keeps trying to deliver)
    await member.send_command("checkin")

    async def failing() -> bool:
        return any(not d.ok for d in api.webhook_deliveries)

    await eventually(failing, what="a failed delivery while the bot is down")
    # and the operator switches back to long polling
    async with _running(api, data_dir, webhook=False) as bot:
        # Then the webhook is gone, the waiting update is answered, and all works as before
        await member.wait_for_message(t("en", "checkin_health"))
        assert api.webhook_url == ""
        await member.press(t("en", "checkin_health_3"))
        await member.press(t("en", "yes"))
        await member.press(t("en", "checkin_skip"))
        await member.wait_for_message(t("en", "checkin_thanks"))
        assert api.calls_to("getUpdates")
        assert await _count(bot, CheckIn) == 1


async def test_saferelay_run_with_a_webhook_is_healthy_and_stops_on_sigterm(
    api: FakeBotApi, data_dir: Path
) -> None:
    # Given the real command, as systemd or Docker starts it, in webhook mode
    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    env = {
        **keep,
        "SAFERELAY_DATA_DIR": str(data_dir),
        "SAFERELAY_SECRETS_DIR": str(secrets_of(data_dir)),
        **database_env(data_dir),
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_BASE_URL": api.base_url,
        "SAFERELAY_WEBHOOK_URL": url,
        "SAFERELAY_WEB_PORT": str(port),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, cwd=data_dir.parent,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await api.wait_for(lambda: api.webhook_url == url, timeout=30)
        # When a coordinator enrols by the link
        token = await asyncio.to_thread(_shell_invite, env)
        admin = api.user(810004, "Coordinator", language_code="en")
        await admin.send_command("start", token)
        await admin.wait_for_message(t("en", "language_prompt"), timeout=30)
        # Then `saferelay check` says all is well, webhook included
        checked = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "check", env=env, cwd=data_dir.parent,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(checked.communicate(), timeout=60)
        assert checked.returncode == 0, out.decode()
        assert "webhook set" in out.decode()
        assert re.search(r"^ok +webhook +the bot's web server answers", out.decode(), re.M)
    finally:
        # And SIGTERM (systemctl stop, docker stop) ends it cleanly
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    log = stderr.decode()
    assert process.returncode == 0, log
    assert "Traceback" not in log and api.token not in log and "810004" not in log
    assert api.webhook_url == url  # left set: Telegram keeps updates until we are back


def _shell_invite(env: dict[str, str]) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "bot", "invite", "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


async def test_saferelay_run_says_so_when_the_webhook_port_is_taken(
    api: FakeBotApi, data_dir: Path
) -> None:
    # Given the port the webhook should listen on is already in use (here, by the Bot API)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    env = {
        **keep,
        "SAFERELAY_DATA_DIR": str(data_dir),
        "SAFERELAY_SECRETS_DIR": str(secrets_of(data_dir)),
        **database_env(data_dir),
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_BASE_URL": api.base_url,
        "SAFERELAY_WEBHOOK_URL": f"http://127.0.0.1:{api.port}{PATH}",
        "SAFERELAY_WEB_PORT": str(api.port),
    }
    # When the bot starts, Then it stops at once with one line saying what to change
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, cwd=data_dir.parent,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    log = stderr.decode()
    assert process.returncode == 2, log
    assert f"saferelay: Cannot listen on 127.0.0.1:{api.port}" in log
    assert "SAFERELAY_WEB_PORT" in log and "Traceback" not in log
    assert not api.calls_to("setWebhook")


async def test_an_unreadable_update_from_telegram_does_not_block_the_ones_behind_it(
    hooked: RunningBot,
) -> None:
    # Given Telegram (with the secret) posts something that is not an update
    secret = hooked.core.secrets.pepper.webhook_secret()
    async with aiohttp.ClientSession() as client:
        for body in (b"[1, 2]", b"not json", b'{"update_id": "x"}'):
            async with client.post(
                _url(hooked), data=body, headers={SECRET_HEADER: secret}
            ) as response:
                # Then it is taken off Telegram's queue (a retry could never succeed) ...
                assert response.status == 200
    # ... said once by type in the log, and the next member's update is handled as usual
    assert "webhook: an update that could not be read" in hooked.log.getvalue()
    member = hooked.api.user(810005, "Member", language_code="en")
    await hooked.enrol(member, Role.MEMBER, "en")
    await _checkin(member)
