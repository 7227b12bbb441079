"""Webhook mode: Telegram POSTs each update to the bot's own web server (bot/web.py).

Polling and webhook differ only in how an update reaches PTB's ``update_queue``; everything
after it (access control, handlers, the outbox) is the same. As in PTB's "custom webhook"
example, the Application has no Updater in this mode and the route puts
``Update.de_json(...)`` on the queue itself.

Who may post: Telegram sends ``X-Telegram-Bot-Api-Secret-Token`` with the ``secret_token``
given to ``setWebhook``. Ours is derived from the pepper (``Pepper.webhook_secret``): stable
across restarts, nothing more to configure, and it never leaves the server but to Telegram.
A request without it, or with another, gets 403 and nothing else happens: the body is not
read, nothing is queued, nothing logged but a count.

Nothing accepted is lost (I5): Telegram keeps an update and retries until we answer 2xx, and
we answer 2xx only once the update is on the queue -- the same point at which long polling
confirms an update (its next getUpdates). The webhook stays set when the bot stops, so
Telegram holds what arrives meanwhile and delivers it after the restart.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aiohttp import web
from telegram import Bot, Update
from telegram.error import BadRequest
from telegram.ext import Application

from bot import activity
from bot.settings import Settings

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# Telegram's largest update (a 4096-character message with entities, a reply, a keyboard)
# is a few tens of KiB; anything far beyond is not from Telegram.
MAX_UPDATE_BYTES = 256 * 1024
# One connection: Telegram then posts updates strictly in order, as polling returns them, so
# a member's two quick taps cannot overtake each other. The route only queues the update
# (well under a millisecond), so one connection carries far more than the bot can answer
# at Telegram's 30 messages a second; raising it trades order for nothing we need.
MAX_CONNECTIONS = 1


class WebhookError(Exception):
    """Telegram refused our webhook (a bad URL, a port it does not post to): the message
    says what to change."""


class WebhookDoor:
    """The webhook route and what it saw: ``refused`` counts requests without the secret."""

    def __init__(self, application: Application[Any, Any, Any, Any, Any, Any], secret: str) -> None:
        self._application = application
        self._expected = secret.encode("ascii")
        self.refused = 0

    def __repr__(self) -> str:
        return f"WebhookDoor(refused={self.refused})"

    def routes(self, path: str) -> list[web.RouteDef]:
        """The one route of webhook mode: POST ``path``. aiohttp answers any other method
        there with 405, and nothing else is served under it."""
        return [web.post(path, self.receive_update)]

    async def receive_update(self, request: web.Request) -> web.Response:
        """Queue one update from Telegram; 403 for anyone else, before reading the body."""
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._expected):
            self.refused += 1
            activity.count("webhook posts refused")
            return web.Response(status=403)
        if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
            return web.Response(status=413)
        # Only a sender with the secret gets this far; the server's own limit caps the read.
        body = await request.read()
        if len(body) > MAX_UPDATE_BYTES:
            return web.Response(status=413)
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise TypeError("not an update")
            update = Update.de_json(data, self._application.bot)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Only Telegram has the secret, and it never sends this. Answered 200 all the
            # same: Telegram would post it again and again, and with one connection nothing
            # behind it would ever arrive. Logged by type only (it may hold a message).
            log.warning("webhook: an update that could not be read (%s)", type(exc).__name__)
            return web.Response(status=200)
        await self._application.update_queue.put(update)
        return web.Response(status=200)


async def set_webhook(bot: Bot, settings: Settings, secret: str, allowed: list[str]) -> None:
    """Tell Telegram where to post. ``drop_pending_updates`` stays off: updates that waited
    while we were down (or while we polled) are still delivered."""
    assert settings.webhook_url is not None
    try:
        await bot.set_webhook(
            url=settings.webhook_url,
            secret_token=secret,
            allowed_updates=allowed,
            drop_pending_updates=False,
            max_connections=MAX_CONNECTIONS,
        )
    except BadRequest as exc:
        raise WebhookError(
            f"Telegram refused SAFERELAY_WEBHOOK_URL ({exc.message}). It must be a public "
            "https:// address on port 443, 80, 88 or 8443 with a valid certificate."
        ) from None
