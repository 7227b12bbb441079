"""The pages themselves: in the member's language, and no key kept where it is not safe."""

from __future__ import annotations

import json
import time

from aiohttp.test_utils import TestServer

from bot.i18n import t
from tests.webapp.conftest import OfflinePage
from webapp.initdata import sign_init_data


async def _open(offline_page: OfflinePage, server: TestServer, page: str, extra: str = "") -> None:
    init = sign_init_data(
        {"auth_date": str(int(time.time())), "user": json.dumps({"id": 1})}, "1:test"
    )
    await offline_page.page.add_init_script(f"window.__tgInitData = {json.dumps(init)};{extra}")
    await offline_page.page.goto(str(server.make_url(f"/webapp/{page}")))


async def test_without_secure_storage_the_page_keeps_no_key_and_says_so(
    offline_page: OfflinePage, webapp_server: TestServer
) -> None:
    # Given a Telegram client without SecureStorage
    await _open(offline_page, webapp_server, "member.ko.html", "window.__tgNoSecureStorage = true;")
    # Then the member is pointed to the chat buttons, kindly, in Korean, and nothing is kept
    status = offline_page.page.locator("#status")
    await status.wait_for(state="visible")
    assert (await status.text_content() or "").strip() == t("ko", "webapp_no_storage")
    assert await offline_page.page.locator("form:visible").count() == 0
    stored = await offline_page.page.evaluate("() => Object.keys(window.localStorage)")
    assert stored == []


async def test_each_language_has_its_own_page(
    offline_page: OfflinePage, webapp_server: TestServer
) -> None:
    for language in ("ko", "en", "zh"):
        await _open(offline_page, webapp_server, f"member.{language}.html")
        assert await offline_page.page.title() == t(language, "webapp_member_title")
        assert await offline_page.page.get_attribute("html", "lang") == language


def test_the_pages_encode_help_requests_as_the_bot_does() -> None:
    # A help request sealed on a phone is read by the staff page and by the team's offline
    # tools (bot/cases.py): both must number categories and urgencies the same way.
    import re
    from pathlib import Path

    from bot.cases import ALL_CATEGORIES, ALL_URGENCIES

    source = (Path(__file__).parents[2] / "webapp/static/js/common.mjs").read_text()

    def listed(name: str) -> tuple[str, ...]:
        found = re.search(rf"export const {name} = \[([^\]]*)\]", source)
        assert found is not None, name
        return tuple(re.findall(r'"([a-z]+)"', found.group(1)))

    assert listed("CATEGORIES") == ALL_CATEGORIES
    assert listed("URGENCIES") == ALL_URGENCIES
