"""Telegram's side of a webhook, for the fake Bot API: updates are POSTed to the bot.

What Telegram does, and so this does:

* ``setWebhook(url, secret_token, allowed_updates, drop_pending_updates, max_connections)``
  switches the bot from ``getUpdates`` (then answered 409) to delivery by POST; queued updates
  stay queued unless ``drop_pending_updates`` is set.
* Each update is POSTed as JSON with ``X-Telegram-Bot-Api-Secret-Token`` when a secret was
  set. A 2xx answer confirms it; anything else (or no answer) is remembered as
  ``last_error_message`` / ``last_error_date`` in ``getWebhookInfo`` and the same update is
  tried again after a pause, so nothing is lost and nothing overtakes it.
* ``deleteWebhook`` stops delivery; what was not yet confirmed is there for ``getUpdates``.

Where the fake differs: updates are delivered one at a time, in order, whatever
``max_connections`` says; the pause between tries is short (``retry_seconds``) instead of
Telegram's growing one, and it never gives up; and the fake accepts ``http://`` for loopback
addresses and delivers ONLY to loopback addresses (127.0.0.1, ::1, localhost) -- tests never
talk to any other address. An https URL elsewhere is accepted by ``setWebhook`` (as
Telegram would) but every delivery then fails with a clear ``last_error_message``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from sandbox.models import JSONDict, bad_request

if TYPE_CHECKING:
    from sandbox.server import FakeBotApi

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
DEFAULT_RETRY_SECONDS = 0.05
POST_TIMEOUT_SECONDS = 10.0
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


@dataclass
class Delivery:
    """One POST the fake made: what it sent and how the bot answered."""

    update_id: int
    header: str | None
    status: int | None
    error: str | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def check_url(url: str) -> None:
    """Telegram's answer to a URL it would not post to (plus: plain http only to loopback)."""
    if not url:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return
    if parts.scheme != "https" or not parts.hostname:
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")


def check_secret(secret: str | None) -> None:
    if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")


class WebhookSender:
    """Posts the server's queued updates to ``url`` until stopped; see the module docstring."""

    def __init__(
        self,
        server: FakeBotApi,
        url: str,
        secret: str | None,
        max_connections: int,
        retry_seconds: float,
    ) -> None:
        self.url = url
        self.secret = secret
        self.max_connections = max_connections
        self.retry_seconds = retry_seconds
        self.last_error_date: int | None = None
        self.last_error_message: str | None = None
        self._server = server
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fake-webhook")

    async def stop(self) -> None:
        """Stop now. A POST in flight is abandoned and its update stays queued, so it may
        arrive twice (Telegram, too, delivers at least once)."""
        self._stopping = True
        self._server._notify()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def info(self) -> JSONDict:
        info: JSONDict = {"max_connections": self.max_connections}
        if self.last_error_date is not None:
            info["last_error_date"] = self.last_error_date
            info["last_error_message"] = self.last_error_message
        return info

    async def _run(self) -> None:
        loopback = urllib.parse.urlsplit(self.url).hostname in LOOPBACK
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            while not self._stopping:
                server = self._server
                if not server._updates:
                    event = server._event()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), 1.0)
                    continue
                update = server._updates[0]
                if not loopback:
                    self._failed(update, "the fake Bot API delivers only to loopback addresses")
                else:
                    await self._post(client, update)
                if server._updates and server._updates[0] is update:
                    await asyncio.sleep(self.retry_seconds)

    async def _post(self, client: aiohttp.ClientSession, update: JSONDict) -> None:
        headers = {SECRET_HEADER: self.secret} if self.secret is not None else {}
        try:
            async with client.post(self.url, json=update, headers=headers) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._failed(update, f"Connection failed ({type(exc).__name__})")
            return
        delivery = Delivery(update["update_id"], self.secret, status)
        self._server.webhook_deliveries.append(delivery)
        if delivery.ok:
            if self._server._updates and self._server._updates[0] is update:
                self._server._updates.pop(0)
            return
        delivery.error = f"Wrong response from the webhook: {status}"
        self.last_error_date = int(time.time())
        self.last_error_message = delivery.error

    def _failed(self, update: JSONDict, message: str) -> None:
        self._server.webhook_deliveries.append(
            Delivery(update["update_id"], self.secret, None, message)
        )
        self.last_error_date = int(time.time())
        self.last_error_message = message
