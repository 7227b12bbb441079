"""I5: nothing accepted is lost. Faults from the Bot API, a blocked recipient, a crash."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.chat import PROMPT, About, record_sent, remember
from bot.core import Core
from bot.i18n import t
from sandbox import FakeBotApi, FakeUser
from storage.db import make_engine
from storage.models import ChatMessage, OutboxItem, Role, new_id, utcnow
from tests.conftest import (
    PASSPHRASE,
    RunningBot,
    bare_people,
    eventually,
    make_settings,
    secrets_of,
)

QUICK_TIMEOUT = pytest.mark.bot_env(SAFERELAY_TELEGRAM_TIMEOUT="1")


async def pair(bot: RunningBot) -> tuple[FakeUser, FakeUser]:
    """A caseworker and a member of theirs."""
    mina = bot.api.user(620001, "Mina", language_code="en")
    await bot.enrol(mina, Role.CASEWORKER, "en", name="Mina")
    await mina.send_command("invite")
    link = await mina.wait_for_message("?start=")
    member = bot.api.user(620002, "Member", language_code="en")
    await bot.enrol(member, language="en", token=(link.text or "").rsplit("=", 1)[1])
    return mina, member


def received(user: FakeUser, text: str) -> int:
    return sum(text in (m.text or "") for m in user.inbox())


async def outbox_rows(bot: RunningBot) -> list[OutboxItem]:
    async with bot.core.sessions() as session:
        return list(await session.scalars(select(OutboxItem)))


@QUICK_TIMEOUT
async def test_429_500_dropped_connection_and_timeout_each_deliver_exactly_once(
    bot: RunningBot,
) -> None:
    mina, member = await pair(bot)
    # Given the Bot API refusing sends to Mina in four different ways, one after another
    bot.api.fail_next("sendMessage", chat_id=mina.chat_id, status=429, retry_after=1)
    bot.api.fail_next("sendMessage", chat_id=mina.chat_id, status=500)
    bot.api.fail_next("sendMessage", chat_id=mina.chat_id, drop=True)
    bot.api.fail_next("sendMessage", chat_id=mina.chat_id, status=502, delay=1.5)  # > 1 s timeout
    # When the member writes four messages
    texts = [f"message number {n}" for n in range(1, 5)]
    for text in texts:
        await member.send_text(text)
        await member.wait_for_message(t("en", "relay_sent"), count=None)
    # Then every one arrives, exactly once, in the end
    await bot.api.wait_for(lambda: all(received(mina, x) for x in texts), timeout=40)
    # Once the outbox is empty nothing more can come: each arrived once
    await _outbox_empty(bot.settings.data_dir)
    await bot.api.wait_idle()
    assert [received(mina, x) for x in texts] == [1, 1, 1, 1]
    assert await outbox_rows(bot) == []
    injected = [c for c in bot.api.calls if c.injected]
    assert len(injected) == 4


@QUICK_TIMEOUT
async def test_blocked_recipient_is_reported_to_the_sender(bot: RunningBot) -> None:
    mina, member = await pair(bot)
    await member.send_text("first words")
    relayed = await mina.wait_for_message("first words")
    # When the member blocks the bot and Mina replies
    bot.api.block(member.user_id)
    await bot.drained()
    await mina.send_text("are you ok?", reply_to=relayed.message_id)
    # Then the reply is marked failed (its text dropped) and Mina is told
    pseudonym = (relayed.text or "").split(":", 1)[0]
    await mina.wait_for_message(t("en", "reply_blocked", pseudonym=pseudonym), timeout=10)
    for _ in range(100):  # the notice's own row goes once its send is acknowledged
        rows = await outbox_rows(bot)
        if len(rows) == 1:
            break
        await asyncio.sleep(0.05)
    assert [(r.status, r.last_error, r.payload) for r in rows] == [("failed", "403", None)]


@QUICK_TIMEOUT
async def test_the_sender_keeps_one_message_a_second_per_chat(bot: RunningBot) -> None:
    mina, member = await pair(bot)
    for n in range(4):
        await member.send_text(f"burst {n}")
    await bot.api.wait_for(lambda: received(mina, "burst 3") == 1, timeout=15)
    sends = [
        c.at
        for c in bot.api.calls
        if c.method == "sendMessage"
        and c.params.get("chat_id") == mina.chat_id
        and c.ok
        and "burst" in str(c.params.get("text"))
    ]
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert len(sends) == 4 and min(gaps) >= 0.95


# --- a real crash: the bot process is killed while a send is under way -------------------


def _env(data_dir: Path, api: FakeBotApi | None = None) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    env = {
        **keep,
        "HOME": str(data_dir.parent / "home"),
        "SAFERELAY_DATA_DIR": str(data_dir),
        "SAFERELAY_SECRETS_DIR": str(secrets_of(data_dir)),
        "SAFERELAY_TELEGRAM_TIMEOUT": "30",
        "SAFERELAY_PASSPHRASE": PASSPHRASE,
    }
    if api is not None:
        env |= {"TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.base_url}
    return env


async def _run_bot(data_dir: Path, api: FakeBotApi) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=data_dir.parent,
        env=_env(data_dir, api),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    await process.wait()


@pytest.mark.parametrize("sent_before_crash", [False, True])
async def test_a_message_survives_the_bot_being_killed_mid_send(
    api: FakeBotApi, data_dir: Path, sent_before_crash: bool
) -> None:
    # Given a running bot with a caseworker and her member
    await asyncio.to_thread(_cli, data_dir, "init")
    process = await _run_bot(data_dir, api)
    mina = api.user(630001, "Mina", language_code="en")
    member = api.user(630002, "Member", language_code="en")
    try:
        await mina.send_command("start", await _invite(data_dir, Role.CASEWORKER))
        await mina.press("English", timeout=30)
        await mina.wait_for_message(t("en", "staff_name_prompt"), timeout=10)
        await mina.send_text("Mina")
        await mina.send_command("invite")
        token = (await mina.wait_for_message("?start=", timeout=10)).text.rsplit("=", 1)[1]  # type: ignore[union-attr]
        await member.send_command("start", token)
        await member.press("English", timeout=10)
        await member.wait_for_message("Welcome", timeout=10)
        # When the send to Mina hangs (either before or after Telegram took the message)
        if sent_before_crash:
            api.slow_next("sendMessage", chat_id=mina.chat_id, delay=60, drop=True)
        else:
            api.fail_next("sendMessage", chat_id=mina.chat_id, delay=60)
        await member.send_text("please call me")
        await member.wait_for_message(t("en", "relay_sent"), timeout=10)
        await api.wait_for(
            lambda: any(
                c.method == "sendMessage" and "please call me" in str(c.params.get("text"))
                for c in api.calls
            ),
            timeout=10,
        )
        # ... and the bot is killed outright
        await _kill(process)
        # Then, restarted, it delivers the message: once, or twice if Telegram had it already
        process = await _run_bot(data_dir, api)
        expected = 2 if sent_before_crash else 1
        await api.wait_for(lambda: received(mina, "please call me") >= expected, timeout=30)
        # ... and, once its outbox is empty, never a third time
        await _outbox_empty(data_dir)
        await api.wait_idle()
        assert received(mina, "please call me") == expected
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), timeout=30)


async def _outbox_empty(data_dir: Path) -> None:
    """Until the running bot's outbox holds nothing (read from its database file)."""
    engine = make_engine(make_settings(data_dir).engine_url())
    try:

        async def empty() -> bool:
            async with engine.connect() as connection:
                count = await connection.scalar(select(func.count()).select_from(OutboxItem))
            return count == 0

        await eventually(empty, within=30, what="the outbox to empty")
    finally:
        await engine.dispose()


def _cli(data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=data_dir.parent,
        env=_env(data_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


async def _invite(data_dir: Path, role: Role) -> str:
    output = await asyncio.to_thread(_cli, data_dir, "invite", "--role", role.value)
    return output.strip().splitlines()[-1]


async def test_a_sent_message_noted_first_by_a_handler_is_recorded_once(core: Core) -> None:
    """The person pressed the prompt's button before the sender recorded the send: the
    handler's row stands (its sooner deletion) and gains what the message is about; no
    unique-index failure rolls the sender back into sending it again."""
    (member,) = bare_people(1)
    async with core.sessions() as session, session.begin():
        session.add(member)
    async with core.sessions() as session, session.begin():
        await remember(session, core.settings, member.id, [42])  # the handler, first
    async with core.sessions() as session, session.begin():
        await record_sent(
            session, core.settings, member.id, 42, about=About(member.id, None, PROMPT)
        )
    async with core.sessions() as session:
        (row,) = list(await session.scalars(select(ChatMessage)))
    assert row.kind == PROMPT
    # The member's own 10 minutes, not the hour a bare prompt gets.
    assert row.delete_at - row.sent_at <= timedelta(minutes=10, seconds=1)


async def test_a_handler_noting_a_message_the_sender_recorded_meanwhile_keeps_the_update(
    core: Core,
) -> None:
    """The other order: the handler looked for the message (not there yet), the sender then
    recorded it, and the handler's update commits after: its row merges into the sender's
    instead of failing the unique index and losing the person's tap."""
    (member,) = bare_people(1)
    async with core.sessions() as session, session.begin():
        session.add(member)
    async with core.sessions() as handler:
        await remember(handler, core.settings, member.id, [43])  # looked: nothing there yet
        async with core.sessions() as sender, sender.begin():  # the sender commits first
            await record_sent(
                sender, core.settings, member.id, 43, about=About(member.id, None, PROMPT)
            )
        await handler.commit()  # the handler's update goes through
    async with core.sessions() as session:
        (row,) = list(await session.scalars(select(ChatMessage)))
    assert row.kind == PROMPT  # what the sender knew it was about stays
    assert row.delete_at - row.sent_at <= timedelta(minutes=10, seconds=1)  # the sooner one


async def test_a_copy_sent_about_a_request_erased_meanwhile_is_recorded_and_leaves_at_once(
    core: Core,
) -> None:
    """An alert was on its way when the member was erased (their requests deleted): the send
    is recorded all the same -- no foreign-key failure rolls it back and leaves the alert in
    the caseworker's chat for good -- and it is due for deletion now, about nobody."""
    (worker,) = bare_people(1, Role.CASEWORKER)
    (member,) = bare_people(1, start=1)
    async with core.sessions() as session, session.begin():
        session.add_all([worker, member])
    erased_case = new_id()  # no such row any more
    async with core.sessions() as session, session.begin():
        await record_sent(
            session, core.settings, worker.id, 44, about=About(member.id, erased_case, "alert")
        )
    async with core.sessions() as session:
        (row,) = list(await session.scalars(select(ChatMessage)))
    assert row.person_id == worker.id and row.message_id == 44
    assert row.case_id is None and row.about_member_id is None and row.kind is None
    assert row.delete_at <= utcnow()
