"""A real headless Chromium (Debian's) driven by Playwright, offline.

Every request the page makes is routed here: 127.0.0.1 goes through, Telegram's own
``telegram-web-app.js`` is answered with the test double in ``telegram_double.js`` (the page
runs as if opened inside Telegram), and anything else is aborted and recorded, so a test
fails if a page ever reaches for another address.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import RunningBot
from tests.handlers.conftest import Team, team  # noqa: F401 (the enrolled team, for these tests too)
from webapp.routes import build_webapp

TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
DOUBLE = (Path(__file__).parent / "telegram_double.js").read_text()

pytest.importorskip("playwright.async_api")
from playwright.async_api import Browser, Page, Route, async_playwright  # noqa: E402


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


class OfflinePage:
    """A page whose every request stays on 127.0.0.1 (or is Telegram's script, doubled)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.refused: list[str] = []
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(msg.text))
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))

    async def route(self, route: Route) -> None:
        url = route.request.url
        if url == TELEGRAM_SCRIPT:
            await route.fulfill(body=DOUBLE, content_type="text/javascript")
        elif urlsplit(url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            self.refused.append(url)
            await route.abort()


@pytest.fixture
async def offline_page(browser: Browser) -> AsyncIterator[OfflinePage]:
    context = await browser.new_context(service_workers="block")
    page = await context.new_page()
    offline = OfflinePage(page)
    await page.route("**/*", offline.route)
    try:
        yield offline
    finally:
        await context.close()
        assert offline.refused == [], f"the page reached outside: {offline.refused}"


@pytest.fixture
def team_private_key() -> bytes:
    return bytes(range(64, 96))


@pytest.fixture
async def webapp_server(team_private_key: bytes) -> AsyncIterator[TestServer]:
    """The Mini App alone on 127.0.0.1, mounted as the bot's web server will mount it."""
    import nacl.public

    public = bytes(nacl.public.PrivateKey(team_private_key).public_key)
    root = web.Application()
    root.add_subapp("/webapp/", build_webapp(public))
    server = TestServer(root, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


class Phone:
    """One person's phone: a browser context (its Telegram secure storage survives page
    loads), opening Mini App pages as Telegram would, with ``initData`` signed for them."""

    def __init__(self, browser: Browser, user_id: int, token: str, language: str = "en") -> None:
        self.browser = browser
        self.user_id = user_id
        self._token = token
        self._language = language
        self.pages: list[OfflinePage] = []
        self._context: Any = None

    def init_data(self, *, age: float = 0.0, token: str | None = None) -> str:
        from webapp.initdata import sign_init_data

        user = {"id": self.user_id, "first_name": "X", "language_code": self._language}
        fields = {
            "auth_date": str(int(time.time() - age)),
            "query_id": f"AA{self.user_id}",
            "user": json.dumps(user, separators=(",", ":")),
        }
        return sign_init_data(fields, token or self._token)

    async def open(self, url: str, *, init_data: str | None = None) -> OfflinePage:
        if self._context is None:
            self._context = await self.browser.new_context(service_workers="block")
        page = await self._context.new_page()
        offline = OfflinePage(page)
        await page.route("**/*", offline.route)
        await page.add_init_script(
            f"window.__tgInitData = {json.dumps(init_data or self.init_data())};"
        )
        self.pages.append(offline)
        await page.goto(url)
        return offline

    async def close(self) -> None:
        if self._context is not None:
            await self._context.close()
        for offline in self.pages:
            assert offline.refused == [], f"the page reached outside: {offline.refused}"


@pytest.fixture
async def phones(
    browser: Browser,
    bot: RunningBot,
    team: Team,  # noqa: F811 (the team fixture)
) -> AsyncIterator[dict[str, Phone]]:
    token = bot.api.token
    made = {
        name: Phone(browser, getattr(team, name).user_id, token)
        for name in ("member", "mina", "joon", "admin")
    }
    try:
        yield made
    finally:
        for phone in made.values():
            await phone.close()
