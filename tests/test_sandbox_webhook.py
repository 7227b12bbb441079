"""The fake Bot API's webhook (sandbox/webhook.py): updates POSTed like Telegram does, with
the secret header, retried until the bot answers 2xx, getUpdates refused meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from telegram import Bot
from telegram.error import BadRequest, Conflict

from sandbox import FakeBotApi
from tests.conftest import eventually

SECRET = "s3cret_Token-1"


@dataclass
class Receiver:
    """A bot's web server stand-in: records each POST and answers with ``answers`` first."""

    answers: list[int] = field(default_factory=list)
    received: list[tuple[str | None, dict[str, object]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield found
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as api:
        yield api


@pytest.fixture
async def bot(server: FakeBotApi) -> AsyncIterator[Bot]:
    async with Bot(server.token, base_url=server.base_url) as real_bot:
        yield real_bot


async def test_updates_are_posted_with_the_secret_and_retried_until_accepted(
    server: FakeBotApi, bot: Bot, receiver: Receiver
) -> None:
    # Given a bot whose server fails twice before it takes an update
    receiver.answers = [500, 403]
    await bot.set_webhook(
        receiver.url, secret_token=SECRET, allowed_updates=["message"], max_connections=1
    )
    # When a user writes twice
    alice = server.user(1001, "Alice")
    await alice.send_text("first")
    await alice.send_text("second")

    # Then both arrive, in order, each with the header, the first after two refusals
    async def both_confirmed() -> bool:
        return server.pending_updates() == 0 and len(receiver.received) == 4

    await eventually(both_confirmed, what="both updates confirmed")
    texts = [body["message"]["text"] for _, body in receiver.received]  # type: ignore[index]
    assert texts == ["first", "first", "first", "second"]
    assert {header for header, _ in receiver.received} == {SECRET}
    assert [d.status for d in server.webhook_deliveries] == [500, 403, 200, 200]
    info = await bot.get_webhook_info()
    assert info.url == receiver.url and info.pending_update_count == 0
    assert info.last_error_message == "Wrong response from the webhook: 403"
    assert info.allowed_updates == ("message",) and info.max_connections == 1


async def test_get_updates_is_refused_while_a_webhook_is_set_and_nothing_is_dropped(
    server: FakeBotApi, bot: Bot
) -> None:
    # Given a webhook nobody answers (the bot is down)
    await bot.set_webhook("http://127.0.0.1:9/hook", secret_token=SECRET)
    await server.user(1001, "Alice").send_text("while you were away")
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()

    async def failing() -> bool:
        return (await bot.get_webhook_info()).last_error_message is not None

    await eventually(failing, what="a failed delivery noted")
    # When the bot goes back to polling, without dropping what waits
    assert await bot.delete_webhook(drop_pending_updates=False)
    updates = await bot.get_updates()
    # Then the update is still there for it
    assert [u.message.text for u in updates if u.message] == ["while you were away"]


async def test_set_webhook_validates_like_telegram(server: FakeBotApi, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)https url must be provided"):
        await bot.set_webhook("http://bot.example.org/hook")
    with pytest.raises(BadRequest, match=r"(?i)unallowed characters"):
        await bot.set_webhook("https://bot.example.org/hook", secret_token="no spaces")
    # An https address elsewhere is accepted, but the fake never posts off this machine.
    await bot.set_webhook("https://bot.example.org/hook", drop_pending_updates=True)
    await server.user(1001, "Alice").send_text("hello")

    async def refused() -> bool:
        info = await bot.get_webhook_info()
        return info.last_error_message == "the fake Bot API delivers only to loopback addresses"

    await eventually(refused, what="delivery refused off loopback")
    assert server.pending_updates() == 1
    assert not any(delivery.ok for delivery in server.webhook_deliveries)
