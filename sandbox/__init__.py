"""A fake Telegram Bot API server for tests, driven by the real python-telegram-bot.

Usage::

    async with FakeBotApi() as server:
        app = (
            ApplicationBuilder()
            .token(server.token)
            .base_url(server.base_url)
            .base_file_url(server.base_file_url)
            .build()
        )
        ...
        alice = server.user(1001, "Alice")
        await alice.send_command("start")
        reply = await alice.wait_for_message("Welcome")
        await alice.press("Yes")

The server listens on 127.0.0.1 only (a random free port by default) and runs inside the
caller's event loop.  ``python -m sandbox --port 8081`` runs it standalone.

``FakeBotApi(limits=True)`` (or ``server.set_limits(True)``) enforces Telegram's flood limits:
30 messages a second overall and about one a second per chat (a bucket of 3), answering 429
with ``retry_after`` beyond them; ``server.flood_refusals`` and ``server.max_per_second()``
measure how close the bot came. See ``sandbox/README.md``, "Telegram limits".
"""

from sandbox.formatting import EntityParseError, command_entities, parse_text, utf16_len
from sandbox.models import MEDIA_KINDS, ApiError, Call, ChatMessage
from sandbox.server import (
    DEFAULT_TOKEN,
    LIMITED_METHODS,
    FakeBotApi,
    FakeUser,
    FloodRefusal,
)

__all__ = [
    "DEFAULT_TOKEN",
    "LIMITED_METHODS",
    "MEDIA_KINDS",
    "ApiError",
    "Call",
    "ChatMessage",
    "EntityParseError",
    "FakeBotApi",
    "FakeUser",
    "FloodRefusal",
    "command_entities",
    "parse_text",
    "utf16_len",
]
