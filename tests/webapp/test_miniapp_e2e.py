"""The Mini App end to end: the real bot (sandbox Telegram, its own web server) and the real
pages in headless Chromium. A member writes; the server stores only ciphertext; the approved
caseworker's phone reads it and answers; the member's phone reads the answer, which then
leaves the server. Nothing the member or caseworker wrote appears in the database file, the
log, the outbox or any Bot API call; an unapproved key reads nothing; forged, stale and
replayed calls are refused."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.checkins import open_answers
from bot.cli import build_parser, cmd_devices_trust
from bot.delivery import payload_place
from bot.i18n import t
from bot.settings import Secret
from bot.web import WEB_KEY
from crypto.boxes import ALG_MULTI, multi_recipient_ids
from storage.models import CheckIn, DeviceKey, Note, OutboxItem
from tests.conftest import PASSPHRASE, RunningBot, eventually, team_key_of
from tests.handlers.conftest import Team, pseudonym_of
from tests.webapp.conftest import OfflinePage, Phone

pytestmark = pytest.mark.bot_env(
    SAFERELAY_WEBAPP_URL="http://127.0.0.1/app/", SAFERELAY_WEB_PORT="0"
)

NOTE = "수요일 밤에 단속이 있었어요 NOTE-7Q2"
MESSAGE = "我需要换个地方住 MESSAGE-K9X"
REPLY = "내일 오전에 전화할게요 REPLY-3ZP"
SECRETS = (NOTE, MESSAGE, REPLY)


def base_url(bot: RunningBot) -> str:
    return f"http://127.0.0.1:{bot.app.bot_data[WEB_KEY].port}/app/"


async def ready(page: OfflinePage, value: str = "1") -> None:
    await page.page.wait_for_selector(f"body[data-ready='{value}']", state="attached")


async def trust_admin_phone(bot: RunningBot, phones: dict[str, Phone]) -> str:
    """The admin opens their page; the coordinator trusts the fingerprint it shows with the
    real `saferelay devices trust` (team key file and passphrase)."""
    page = await phones["admin"].open(base_url(bot) + "staff.en.html")
    state = await approvals_state(page)
    shown = (await page.page.text_content("#fingerprint") or "").strip()
    if state == "ready":
        return shown
    assert state == "untrusted"
    assert await page.page.is_visible("#untrusted")
    args = build_parser().parse_args(
        ["devices", "trust", shown, "--key", str(team_key_of(bot.settings.data_dir))]
    )
    settings = replace(bot.settings, passphrase=Secret(PASSPHRASE))
    # The command runs its own event loop, as it does at the shell
    assert await asyncio.to_thread(cmd_devices_trust, settings, args) == 0
    return shown


async def approvals_state(page: OfflinePage) -> str:
    found = await page.page.wait_for_selector("#approvals[data-state]", state="attached")
    assert found is not None
    return str(await found.get_attribute("data-state"))


async def approve(bot: RunningBot, team: Team, phones: dict[str, Phone], name: str) -> str:
    """``name``'s phone opens its page; the admin's phone (trusted by the coordinator first)
    approves the fingerprint it shows, in the admin's page."""
    await trust_admin_phone(bot, phones)
    page = await phones[name].open(base_url(bot) + "staff.en.html")
    await ready(page, "pending")
    shown = (await page.page.text_content("#fingerprint") or "").strip()
    # The admin's chat says only that a phone waits, with an Open button to their page
    notice = await team.admin.wait_for_message(t("en", "device_waiting"))
    assert shown not in (notice.text or "")
    admin = await phones["admin"].open(base_url(bot) + "staff.en.html")
    assert await approvals_state(admin) == "ready"
    item = admin.page.locator("#waiting li", has_text=shown)
    await item.locator("button.approve").click()
    await admin.page.wait_for_selector(
        f"#waiting li:has-text('{t('en', 'staff_webapp_approved')}')"
    )
    return shown


async def closed(page: OfflinePage) -> None:
    """The page said it was sent, and closed itself (Telegram.WebApp.close)."""
    await page.page.wait_for_selector(f"#status:has-text('{t('en', 'webapp_sent')}')")
    assert await page.page.evaluate("() => window.__tgClosed") is True


def plaintext_anywhere(bot: RunningBot, data_dir: Path) -> list[str]:
    """Every place the plaintext must not be: database files, the log, every Bot API call."""
    found = []
    for path in data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            found += [f"{path.name}: {s}" for s in SECRETS if s.encode() in raw]
    log = bot.log.getvalue()
    found += [f"log: {s}" for s in SECRETS if s in log]
    calls = json.dumps([c.params for c in bot.api.calls], ensure_ascii=False, default=str)
    found += [f"Bot API: {s}" for s in SECRETS if s in calls]
    return found


async def test_member_writes_caseworker_reads_and_answers_only_ciphertext_on_the_server(
    bot: RunningBot, team: Team, phones: dict[str, Phone], data_dir: Path
) -> None:
    core = bot.core
    # Given Mina's phone approved by the admin's phone after comparing fingerprints (the
    # admin's phone trusted by the coordinator with the team key), and Joon's not
    await approve(bot, team, phones, "mina")
    joon_page = await phones["joon"].open(base_url(bot) + "staff.en.html")
    await ready(joon_page, "pending")

    # And the member's menu offers the private path, marked as the end-to-end one
    await team.member.send_command("menu")
    menu = await team.member.wait_for_message(t("en", "menu_title_private"))
    web_apps = [
        b["web_app"]["url"] for row in menu.inline_keyboard() for b in row if "web_app" in b
    ]
    assert web_apps == ["http://127.0.0.1/app/member.en.html"]

    # When the member checks in privately (a worrying one, with a note) ...
    page = await phones["member"].open(base_url(bot) + "member.en.html")
    await ready(page)
    await page.page.check("input[name=health][value='2']")
    await page.page.check("input[name=threat][value='1']")
    await page.page.fill("textarea[name=note]", NOTE)
    await page.page.check("input[name=notify]")
    await page.page.click("#checkin-form button[type=submit]")
    await closed(page)
    # ... and writes a message
    page = await phones["member"].open(base_url(bot) + "member.en.html")
    await ready(page)
    await page.page.fill("textarea[name=text]", MESSAGE)
    await page.page.click("#message-form button[type=submit]")
    await closed(page)

    # Then Mina's chat gets neutral lines with an Open button to her page
    pseudonym = pseudonym_of(team.member)
    alert = await team.mina.wait_for_message(t("en", "private_message", pseudonym=pseudonym))
    assert [b["web_app"]["url"] for row in alert.inline_keyboard() for b in row] == [
        "http://127.0.0.1/app/staff.en.html"
    ]
    await team.mina.wait_for_message(t("en", "private_checkin", pseudonym=pseudonym))

    # And the server holds the envelopes as they came: sealed to the team and Mina's phone
    async with core.sessions() as session:
        checkin = (await session.scalars(select(CheckIn))).one()
        note = (await session.scalars(select(Note).where(Note.from_member.is_(True)))).one()
        keys = {d.person_id: d for d in (await session.scalars(select(DeviceKey))).all()}
    for sealed in (checkin.sealed, note.sealed):
        assert sealed[1] == ALG_MULTI
        assert len(multi_recipient_ids(sealed)) == 2  # the team key and Mina's one phone
    # The offline report opens the check-in with the team key, like a chat check-in
    answers = open_answers(bot.opener(), checkin.id, checkin.sealed)
    assert (answers.health, answers.threat, answers.note) == (2, True, NOTE)
    assert len(keys) == 4  # the admin's, Mina's (approved), Joon's (pending), the member's

    # When Mina opens her page, she reads both; Joon's unapproved page reads nothing
    mina_page = await phones["mina"].open(base_url(bot) + "staff.en.html")
    await ready(mina_page)
    shown = await mina_page.page.locator(".plaintext").all_text_contents()
    assert any(MESSAGE in s for s in shown)
    assert any(NOTE in s and s.startswith("2/5") for s in shown)
    joon_page = await phones["joon"].open(base_url(bot) + "staff.en.html")
    await ready(joon_page, "pending")
    assert await joon_page.page.locator(".plaintext").count() == 0

    # When she answers the message from her page
    await mina_page.page.fill("li textarea[name=text]", REPLY)
    await mina_page.page.click("li form button[type=submit]")
    await mina_page.page.wait_for_selector(f"text={t('en', 'webapp_sent')}")

    # Then the member's chat shows only a neutral line with an Open button
    notice = await team.member.wait_for_message(t("en", "private_reply"))
    assert [b["web_app"]["url"] for row in notice.inline_keyboard() for b in row] == [
        "http://127.0.0.1/app/member.en.html"
    ]
    # And her page shows the answer, after which its ciphertext leaves the server
    page = await phones["member"].open(base_url(bot) + "member.en.html")
    await ready(page)
    assert REPLY in (await page.page.text_content("#reply-list") or "")

    async def reply_gone() -> bool:
        async with core.sessions() as session:
            left = await session.scalars(select(Note).where(Note.from_member.is_(False)))
            return left.first() is None

    await eventually(reply_gone, what="the read reply deleted")

    # And no plaintext anywhere: database files, log, outbox, Bot API calls
    async with core.sessions() as session:
        for item in (await session.scalars(select(OutboxItem))).all():
            opened = core.secrets.server_box.open(item.payload, payload_place(item.id))
            assert not any(s.encode() in opened for s in SECRETS)
    assert plaintext_anywhere(bot, data_dir) == []


async def test_forged_stale_replayed_and_stranger_calls_are_refused(
    bot: RunningBot, team: Team, phones: dict[str, Phone]
) -> None:
    # Given the member's page, with its submit request captured as it went out
    await approve(bot, team, phones, "mina")
    page = await phones["member"].open(base_url(bot) + "member.en.html")
    await ready(page)
    sent: list[dict[str, Any]] = []

    def capture(request: Any) -> None:
        if request.url.endswith("/api/submit"):
            sent.append({"body": request.post_data, "auth": request.headers["authorization"]})

    page.page.on("request", capture)
    await page.page.fill("textarea[name=text]", MESSAGE)
    await page.page.click("#message-form button[type=submit]")
    await closed(page)
    [submit] = sent
    member = phones["member"]

    async with aiohttp.ClientSession() as http:

        async def call(auth: str, body: str, path: str = "api/submit") -> int:
            headers = {"Authorization": auth, "Content-Type": "application/json"}
            async with http.post(base_url(bot) + path, data=body, headers=headers) as resp:
                return resp.status

        # A replay of the same submission is refused, and nothing is stored twice
        assert await call(submit["auth"], submit["body"]) == 409
        # The same record under a fresh initData is refused too (its row id is taken)
        assert await call("tma " + member.init_data(), submit["body"]) == 409
        # Forged: signed with another token, or a user id changed after signing
        forged = "tma " + member.init_data(token="123:not-the-bot-token")
        assert await call(forged, submit["body"]) == 401
        tampered = submit["auth"].replace(str(member.user_id), str(team.other_member.user_id))
        assert await call(tampered, submit["body"]) == 401
        # Stale: signed by Telegram two hours ago
        assert await call("tma " + member.init_data(age=7200), submit["body"]) == 401
        # No initData, or a hash-less one
        assert await call("", submit["body"]) == 401
        no_hash = submit["auth"].split("&hash=")[0]
        assert await call(no_hash, submit["body"]) == 401
        # A stranger with valid initData learns nothing
        stranger = Phone(member.browser, 999_999, bot.api.token)
        assert await call("tma " + stranger.init_data(), "{}", "api/recipients") == 401
        # A member may not read the staff inbox, nor reply
        body = json.dumps({"public_key": "00" * 32})
        assert await call("tma " + member.init_data(), body, "api/inbox") == 403
        # An envelope not sealed to the team key (or padded otherwise) is refused
        bad = json.loads(submit["body"])
        env = bytearray(base64.b64decode(bad["envelope"]))
        env[2] ^= 1
        bad |= {"envelope": base64.b64encode(bytes(env)).decode(), "record_id": "A" * 22}
        assert await call("tma " + member.init_data(), json.dumps(bad)) == 422
        # Too large a body is refused before it is read
        assert await call("tma " + member.init_data(), "x" * 20_000) == 413

    async with bot.core.sessions() as session:
        notes = (await session.scalars(select(Note))).all()
    assert len(notes) == 1


@pytest.mark.bot_env(
    SAFERELAY_WEBAPP_URL="http://127.0.0.1/app/",
    SAFERELAY_WEB_PORT="0",
    SAFERELAY_MESSAGES_PER_MINUTE="5",
)
async def test_a_flood_of_api_calls_is_slowed_per_person(
    bot: RunningBot, team: Team, phones: dict[str, Phone]
) -> None:
    # Given a limit of five uses a minute (twenty calls), one member calling in a loop
    member, other = (
        phones["member"],
        Phone(phones["member"].browser, team.other_member.user_id, bot.api.token),
    )
    statuses = []
    async with aiohttp.ClientSession() as http:
        for phone in (member,) * 22 + (other,):
            headers = {"Authorization": "tma " + phone.init_data()}
            async with http.post(base_url(bot) + "api/recipients", json={}, headers=headers) as r:
                statuses.append(r.status)
    # Then the calls past twenty are refused, and another member is not held up by it
    assert statuses == [200] * 20 + [429, 429, 200]


async def test_pages_may_be_framed_by_telegram_only_and_the_api_by_nobody(
    bot: RunningBot,
) -> None:
    # Telegram's web client (web.telegram.org) shows a Mini App in an iframe: the pages say
    # so in their CSP, and nothing else on the web server may be framed at all.
    async with aiohttp.ClientSession() as http:
        for page in ("member.ko.html", "staff.zh.html", "js/member.mjs"):
            async with http.get(base_url(bot) + page) as response:
                assert response.status == 200
                assert "X-Frame-Options" not in response.headers
                directives = response.headers["Content-Security-Policy"].split("; ")
                assert "frame-ancestors https://web.telegram.org https://*.telegram.org" in (
                    directives
                )
        async with http.post(base_url(bot) + "api/recipients", json={}) as response:
            assert response.status == 401
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors" not in response.headers.get("Content-Security-Policy", "")
