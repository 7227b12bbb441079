"""``saferelay demo`` as a person uses it: the command in a subprocess, its page in Debian's
Chromium (headless, driven by Playwright), every step a click or a typed line.

Chromium is never downloaded: ``tests/run`` installs Debian's package and Playwright only
drives it. The flags keep Chromium off the network (this machine refuses its background
connections, and a test must not make any).
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from bot.i18n import t
from tests.browser import CHROMIUM, CHROMIUM_ARGS, MISSING

VIEWPORT = {"width": 1860, "height": 1000}
STARTUP_SECONDS = 90.0
WAIT_MS = 20_000  # how long a step may take to show on the page (the bot is fast; CI is slow)


@dataclass
class RunningDemo:
    process: subprocess.Popen[str]
    url: str
    tmp: Path  # the TMPDIR the demo's throwaway directory goes into
    stderr: Path

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        """Ctrl-C (or another signal); the exit status and what it said on stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code, self.stderr.read_text("utf-8")


def start_demo(tmp_path: Path) -> RunningDemo:
    """``saferelay demo --port 0``, as the README runs it; its one stdout line is the page."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    stderr = tmp_path / "demo.stderr"
    env = {**os.environ, "TMPDIR": str(tmp)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=stderr.open("w"),
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    with ThreadPoolExecutor(1) as pool:
        line = pool.submit(process.stdout.readline)
        try:
            url = line.result(timeout=STARTUP_SECONDS).strip()
        except TimeoutError:
            process.kill()
            raise AssertionError("no address printed\n" + stderr.read_text("utf-8")) from None
    if not re.fullmatch(r"http://127\.0\.0\.1:\d+/[A-Za-z0-9_-]{20,}/", url):
        process.kill()
        raise AssertionError(f"not an address: {url!r}\n" + stderr.read_text("utf-8"))
    return RunningDemo(process, url, tmp, stderr)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    running = start_demo(tmp_path_factory.mktemp("demo"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(MISSING)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def page(browser: Browser, demo: RunningDemo) -> Iterator[Page]:
    opened = browser.new_page(viewport=VIEWPORT)
    opened.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    opened.goto(demo.url)
    expect(opened.locator("#status")).to_have_text("live")
    try:
        yield opened
    finally:
        opened.close()


def phone(page: Page, key: str) -> Locator:
    return page.locator(f'[data-pane="{key}"]')


def press(pane: Locator, label: str) -> None:
    """Click the newest inline button with exactly this label in the pane."""
    pane.locator(".inline").get_by_role("button", name=label, exact=True).last.click()


def write(pane: Locator, text: str) -> None:
    pane.locator("input[name=text]").fill(text)
    pane.locator("input[name=text]").press("Enter")


def message(pane: Locator, text: str) -> Locator:
    return pane.locator(".msg", has_text=text).last


def test_check_in_and_help_request_reach_the_caseworker_who_claims_and_replies(
    page: Page, tmp_path: Path
) -> None:
    member, caseworker = phone(page, "member-en"), phone(page, "caseworker")
    # Given the sample people, enrolled through real invites before the address was printed
    expect(message(member, "Your name here is")).to_be_visible()
    for key in ("admin", "caseworker", "member-ko", "member-en", "member-zh", "stranger"):
        expect(phone(page, key)).to_be_visible()
    pseudonym = re.search(
        r"Your name here is (.+?)\.", message(member, "Your name here is").inner_text()
    )
    assert pseudonym is not None

    # When the member checks in with the buttons
    press(member, t("en", "menu_checkin"))
    press(member, t("en", "checkin_health_4"))
    press(member, t("en", "no"))
    press(member, t("en", "checkin_skip"))
    # Then the bot thanks them, and every message to them is marked protected
    expect(message(member, t("en", "checkin_thanks"))).to_be_visible()
    expect(message(member, t("en", "checkin_thanks")).locator(".protected")).to_be_visible()

    # When they ask for medical help today, in a few words
    write(member, "/menu")
    press(member, t("en", "menu_ask"))
    press(member, t("en", "cat_medical"))
    press(member, t("en", "urg_today"))
    write(member, "Fever since Monday")
    expect(message(member, t("en", "ask_sent"))).to_be_visible()

    # Then the caseworker's phone lights up with the alert, naming only the pseudonym
    alert = message(caseworker, "Help request from")
    expect(alert).to_contain_text(pseudonym.group(1))
    expect(alert).to_contain_text("Fever since Monday")

    # When the caseworker claims it, then replies to the alert (click it, then write)
    press(alert, t("en", "btn_claim"))
    expect(caseworker.locator(".toast")).to_contain_text(t("en", "claim_done"))
    expect(alert.get_by_role("button", name=t("en", "btn_claim"))).to_have_count(0)
    message(caseworker, "Help request from").locator(".text").click()
    expect(caseworker.locator(".reply-bar")).to_be_visible()
    write(caseworker, "I can call you at six.")
    # Then the member reads it under the caseworker's chosen name
    expect(message(member, "Mina: I can call you at six.")).to_be_visible()

    # And the page, photographed, is a real picture of it
    shot = page.screenshot()
    image = Image.open(io.BytesIO(shot))
    assert image.format == "PNG"
    assert image.size == (VIEWPORT["width"], VIEWPORT["height"])
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500, "a blank or nearly blank page"
    (tmp_path / "demo.png").write_bytes(shot)


def test_a_stranger_gets_the_neutral_line_and_nothing_else(page: Page) -> None:
    stranger = phone(page, "stranger")
    write(stranger, "hello, is this the church group?")
    expect(message(stranger, t("en", "stranger"))).to_be_visible()
    expect(stranger.locator(".msg:not(.mine)")).to_have_count(1)
    expect(stranger.locator(".inline button")).to_have_count(0)


def test_the_quick_exit_button_empties_the_members_chat(page: Page) -> None:
    member = phone(page, "member-ko")
    expect(message(member, t("ko", "menu_clear"))).to_be_visible()
    press(member, t("ko", "menu_clear"))
    expect(member.locator(".msg")).to_have_count(0)
    expect(member.locator(".empty")).to_be_visible()


def test_the_api_log_shows_methods_and_whose_chat_never_the_words(page: Page) -> None:
    member = phone(page, "member-zh")
    write(member, "我的房东又来问证件了")
    expect(message(member, t("zh", "relay_sent"))).to_be_visible()
    page.locator("#log summary").click()
    rows = page.locator("#log-rows tr")
    expect(
        rows.filter(has_text="sendMessage").filter(has_text="Member · 中文").first
    ).to_be_visible()
    # A button's answer is put down to the phone that pressed it
    expect(
        rows.filter(has_text="answerCallbackQuery").filter(has_text="Member · English").first
    ).to_be_visible()
    log_text = page.locator("#log").inner_text()
    assert "房东" not in log_text
    assert not re.search(r"\d{7,}", log_text), "a chat id in the log"


def test_a_member_added_from_the_page_redeems_a_fresh_invite(page: Page) -> None:
    page.locator("#add select").select_option("en")
    page.locator("#add button", has_text="Member").click()
    newcomer = page.locator('[data-pane^="added-"]').last
    # The caseworker's /invite made the link; the new phone used it and picks a language
    press(newcomer, "English")
    expect(message(newcomer, "Your name here is")).to_be_visible()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_demo_leaves_nothing_behind(tmp_path: Path, signum: int) -> None:
    running = start_demo(tmp_path)
    made = list(running.tmp.iterdir())
    assert [p.name.startswith("saferelay-demo-") for p in made] == [True]
    assert (made[0] / "data" / "saferelay.db").exists()
    code, said = running.stop(signum)
    assert code == 0, said
    assert list(running.tmp.iterdir()) == []
    assert "directory is gone" in said
    # The passphrase is shown once, and only on the terminal
    assert said.count("Team passphrase") == 1
