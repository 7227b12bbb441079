"""The bot's own web server: one aiohttp application for everything the bot serves over HTTP.

Today that is the Telegram webhook (bot/webhook.py); later the Mini App's pages and API add
their routes here too. aiohttp is already what the local Bot API in ``sandbox/`` is built on,
so the project has one web library, not two.

How other modules use it::

    server = WebServer(settings.web_host, settings.web_port)
    server.add_routes([web.post("/path", handler)])   # before start()
    await server.start()
    ...
    await server.stop()

``build_application`` makes one ``WebServer`` and keeps it in ``bot_data[WEB_KEY]``; a module
with pages or an API adds its routes there while the application is being built. The server
starts (in ``post_init``) only when some module added a route, so a bot in polling mode with
no Mini App opens no port at all.

Privacy: no access log. A web server's access log is a dated list of client addresses, and
once members open Mini App pages those addresses are theirs (I1). Errors are logged by type
only, by whoever handles them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiohttp import web

log = logging.getLogger(__name__)

WEB_KEY = "web"
# No request body anywhere is larger than this (a route may set a smaller limit of its own).
MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_SECONDS = 5.0


async def _plain_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, errors included (a 404 raised by the router never reaches a
    middleware's return path): no caching by proxies, no MIME sniffing, not framed by another
    site, no referrer sent onwards, and no server banner.

    Framing: nothing may frame an answer, except a response that names who may frame it
    with its own CSP ``frame-ancestors`` (the Mini App's pages: Telegram's web client shows a
    Mini App in an iframe). Such a response gets no ``X-Frame-Options``: ``DENY`` beside it
    would contradict it (browsers that know CSP then ignore XFO, older ones and some proxies
    do not), and XFO cannot name an allowed origin at all.
    """
    headers = response.headers
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if "frame-ancestors" not in headers.get("Content-Security-Policy", ""):
        headers.setdefault("X-Frame-Options", "DENY")
    headers.pop("Server", None)


class WebServerError(Exception):
    """The web server could not listen (address in use, no permission); says which."""


class WebServer:
    """The bot's aiohttp server on ``host:port`` (port 0: any free port, for tests)."""

    def __init__(self, host: str, port: int, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.host = host
        self.requested_port = port
        self.app = web.Application(client_max_size=max_body_bytes)
        self.app.on_response_prepare.append(_plain_headers)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._routes = 0

    def __repr__(self) -> str:
        return f"WebServer({self.host}:{self.requested_port}, {self._routes} routes)"

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Add routes (``web.get(...)``, ``web.post(...)``); only before :meth:`start`."""
        if self._runner is not None:
            raise RuntimeError("routes must be added before the web server starts")
        added = self.app.add_routes(list(routes))
        self._routes += len(added)

    @property
    def has_routes(self) -> bool:
        return self._routes > 0

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        """The port actually bound (useful when ``port`` was 0)."""
        if self._port is None:
            raise RuntimeError("the web server is not running")
        return self._port

    async def start(self) -> None:
        """Bind and serve. Raises :class:`WebServerError` (address in use, permission): a bot
        that cannot take its webhook must not look as if it were running."""
        if self._runner is not None:
            return
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise WebServerError(
                f"Cannot listen on {self.host}:{self.requested_port} ({exc.strerror}): choose "
                "another SAFERELAY_WEB_HOST / SAFERELAY_WEB_PORT, or stop what uses it."
            ) from None
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner
        log.info("web server listening on %s:%d", self.host, self._port)

    async def stop(self) -> None:
        """Stop taking requests; those in progress get ``SHUTDOWN_SECONDS`` to finish.
        Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await runner.cleanup()
        self._port = None
