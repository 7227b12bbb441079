"""The demo's page: one phone per person, live, on 127.0.0.1 (aiohttp, the demo's own loop).

Routes, all under a random key made for this run (``/<key>/...``), so another user of the
same machine who finds the port can neither read the chats nor drive them:

* ``GET  /<key>/``             the page (sandbox/web/index.html)
* ``GET  /<key>/static/NAME``  its CSS and JavaScript
* ``GET  /<key>/state``        every pane's visible chat, and the API log, as JSON
* ``GET  /<key>/events``       the same, pushed as server-sent events whenever it changes
* ``POST /<key>/send``         ``{"pane", "text", "reply_to"?}``: the pane's user writes
* ``POST /<key>/press``        ``{"pane", "message_id", "data"}``: they press an inline button
* ``POST /<key>/people``       ``{"kind": "member" | "stranger", "language"}``: a new phone

POSTs take JSON only (a page elsewhere cannot send that across origins without a preflight,
which we never answer), and the Host header must name 127.0.0.1 or localhost, so a DNS
rebinding page is refused too. The API log shows what the product's own logs would: the
method, whose chat (the pane's label, never an id) and the status; never a text.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from sandbox.demo import Demo, Pane
from sandbox.models import Call, ChatMessage, JSONDict

HOST = "127.0.0.1"
LOG_LENGTH = 200
KEEPALIVE_SECONDS = 15.0
# Several changes in a burst (a check-in answer deletes, edits and sends) go out as one push.
COALESCE_SECONDS = 0.05
STATIC = {"app.css": "text/css", "app.js": "text/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    # The address holds the key: it must not travel in a Referer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Methods whose log lines say nothing a viewer needs (PTB's long poll, every few seconds).
QUIET_METHODS = frozenset({"getupdates"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _message(message: ChatMessage) -> JSONDict:
    reply = message.reply_to
    return {
        "id": message.message_id,
        "mine": not message.from_bot,
        "kind": message.kind,
        "text": message.text,
        "entities": [
            {"type": e.get("type"), "offset": e.get("offset"), "length": e.get("length")}
            for e in message.entities
        ],
        "buttons": [
            [
                {"text": str(b.get("text", "")), "data": b.get("callback_data")}
                for b in row
                if isinstance(b, dict)
            ]
            for row in message.inline_keyboard()
        ],
        "reply_to": (
            {"id": reply.message_id, "text": (reply.text or f"<{reply.kind}>")[:80]}
            if reply is not None and not reply.deleted
            else None
        ),
        "edits": message.edit_count,
        "protected": message.protect_content,
        "date": message.date,
    }


def _pane(pane: Pane, api_visible: list[ChatMessage]) -> JSONDict:
    user = pane.user
    toasts = [
        {"id": a["callback_query_id"], "text": a["text"], "alert": a["show_alert"]}
        for a in user.answered_callbacks()[-5:]
        if a.get("text")
    ]
    return {
        "key": pane.key,
        "label": pane.label,
        "role": pane.role,
        "language": pane.language,
        "keyboard": user.reply_keyboard(),
        "messages": [_message(m) for m in api_visible],
        "toasts": toasts,
    }


class DemoPage:
    """The page's web server; ``start(port)``, then ``url``; ``stop()``."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.key = secrets.token_urlsafe(18)
        self.version = 0
        self.log: deque[JSONDict] = deque(maxlen=LOG_LENGTH)
        self._calls = 0
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._unobserve: Callable[[], None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        prefix = f"/{self.key}"
        app.router.add_routes(
            [
                web.get(prefix + "/", self._index),
                web.get(prefix + "/static/{name}", self._static),
                web.get(prefix + "/state", self._state),
                web.get(prefix + "/events", self._events),
                web.post(prefix + "/send", self._send),
                web.post(prefix + "/press", self._press),
                web.post(prefix + "/people", self._people),
            ]
        )
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, HOST, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._unobserve = self.demo.api.observe(self._on_call)
        self.demo.changed = self.touch

    async def stop(self) -> None:
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
        self.demo.changed = lambda: None
        self._closing = True
        self.touch()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the page is not running")
        return f"http://{HOST}:{self._port}/{self.key}/"

    # -- changes -------------------------------------------------------------------------

    def touch(self) -> None:
        """Something changed: wake every open event stream."""
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _on_call(self, call: Call) -> None:
        self._calls += 1
        method = call.method.lower()
        if method not in QUIET_METHODS:
            chat = (
                self.demo.label_of_query(call.params.get("callback_query_id"))
                if method == "answercallbackquery"
                else self.demo.label_of(_chat_of(call))
            )
            self.log.append(
                {
                    "n": self._calls,
                    "at": time.strftime("%H:%M:%S"),
                    "method": call.method,
                    "chat": chat,
                    "status": call.status,
                }
            )
        self.touch()

    def snapshot(self) -> JSONDict:
        api = self.demo.api
        settings = self.demo.settings
        return {
            "version": self.version,
            "panes": [
                _pane(pane, api.visible(pane.user.chat_id)) for pane in self.demo.panes.values()
            ],
            "log": list(self.log),
            "timers": {
                "clear_minutes": settings.clear_after_minutes,
                "escalate_minutes": settings.escalate_minutes,
            },
        }

    # -- guard ---------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0]
        first = request.path.split("/", 2)[1] if request.path.count("/") >= 2 else ""
        if host not in (HOST, "localhost") or not hmac.compare_digest(first, self.key):
            return web.Response(status=404, text="Not found.", headers=SECURITY_HEADERS)
        if request.method == "POST" and request.content_type != "application/json":
            return _error(415, "Send JSON.")
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    # -- routes --------------------------------------------------------------------------

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        html = resources.files("sandbox").joinpath("web/index.html").read_text("utf-8")
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            return _error(404, "Not found.")
        body = resources.files("sandbox").joinpath(f"web/{name}").read_text("utf-8")
        return web.Response(text=body, content_type=STATIC[name], charset="utf-8")

    async def _state(self, _request: web.Request) -> web.StreamResponse:
        return _json(self.snapshot())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **SECURITY_HEADERS}
        )
        await response.prepare(request)
        seen = -1
        with contextlib.suppress(ConnectionResetError):
            while not self._closing:
                if self.version == seen:
                    changed = self._changed
                    try:
                        await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        await response.write(b": still here\n\n")
                        continue
                    await asyncio.sleep(COALESCE_SECONDS)
                    continue
                seen = self.version
                body = json.dumps(self.snapshot(), ensure_ascii=False)
                await response.write(f"data: {body}\n\n".encode())
        return response

    async def _body(self, request: web.Request) -> JSONDict:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text=json.dumps({"ok": False, "error": "Send a JSON object."}),
                content_type="application/json",
            )
        return body

    async def _send(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        text, reply_to = body.get("text"), body.get("reply_to")
        if not isinstance(text, str) or (reply_to is not None and not isinstance(reply_to, int)):
            return _error(400, "Give the text, and the message to reply to if any.")
        try:
            sent = await self.demo.send(str(body.get("pane")), text, reply_to)
        except LookupError:
            return _error(404, "There is no such phone.")
        except ValueError as exc:  # empty, or longer than Telegram allows
            return _error(400, f"Telegram would not send that: {exc}.")
        except AssertionError:
            return _error(409, "That message is gone.")
        return _json({"ok": True, "message_id": sent.message_id})

    async def _press(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        message_id, data = body.get("message_id"), body.get("data")
        if not isinstance(message_id, int) or not isinstance(data, str):
            return _error(400, "Give the message and the button.")
        try:
            await self.demo.press(str(body.get("pane")), message_id, data)
        except LookupError:
            return _error(404, "That message is gone.")
        except AssertionError:
            return _error(409, "That button is gone.")
        return _json({"ok": True})

    async def _people(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        kind, language = body.get("kind"), str(body.get("language", "ko"))
        try:
            if kind == "member":
                pane = await self.demo.add_member(language)
            elif kind == "stranger":
                pane = self.demo.add_stranger(language)
            else:
                return _error(400, "A member or a stranger?")
        except ValueError:
            return _error(400, "The language is ko, en or zh.")
        except (AssertionError, TimeoutError):
            return _error(503, "The bot did not answer in time; try again.")
        return _json({"ok": True, "pane": pane.key})


def _chat_of(call: Call) -> Any:
    chat = call.params.get("chat_id")
    if isinstance(chat, str) and chat.lstrip("-").isdigit():
        return int(chat)
    return chat


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False), status=status, content_type="application/json"
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"ok": False, "error": message}, status)
