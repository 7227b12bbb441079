"""A help request through the Mini App, end to end: the real bot (sandbox Telegram, its own
web server) and the real pages in headless Chromium. The member chooses category and urgency
with buttons, writes a few words, and decides what stays unlocked; the page seals it all to
the team key and the caseworkers' approved phones; the server opens a real case (the same
alerts, Claim / Resolve, escalation and audit trail as a chat request) from only what was
left unlocked; the caseworker's page shows the request. Nothing locked is anywhere else."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.cases import HelpRequest, read_brief, sealed_place
from bot.i18n import t
from crypto.boxes import ALG_MULTI, multi_recipient_ids
from storage.models import AuditEntry, Case
from tests.conftest import RunningBot
from tests.handlers.conftest import Team, pseudonym_of
from tests.webapp.conftest import Phone
from tests.webapp.test_miniapp_e2e import approve, base_url, closed, ready

pytestmark = pytest.mark.bot_env(
    SAFERELAY_WEBAPP_URL="http://127.0.0.1/app/", SAFERELAY_WEB_PORT="0"
)

WORDS = "단속반이 집 앞에 와 있어요 HELP-5RW"


def found_outside_the_envelope(bot: RunningBot, data_dir: Path, secrets: list[str]) -> list[str]:
    """Where locked words turn up: database files, the log, every Bot API call."""
    found = []
    for path in data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            found += [f"{path.name}: {s}" for s in secrets if s.encode() in raw]
    found += [f"log: {s}" for s in secrets if s in bot.log.getvalue()]
    calls = json.dumps([c.params for c in bot.api.calls], ensure_ascii=False, default=str)
    found += [f"Bot API: {s}" for s in secrets if s in calls]
    return found


async def test_a_right_now_request_sealed_on_the_phone_opens_a_case_everyone_can_claim(
    bot: RunningBot, team: Team, phones: dict[str, Phone], data_dir: Path
) -> None:
    core = bot.core
    # Given both caseworkers' phones approved
    await approve(bot, team, phones, "mina")
    await approve(bot, team, phones, "joon")

    # When the member asks for help "right now" about danger, leaving the page's default:
    # urgency unlocked, category locked
    page = await phones["member"].open(base_url(bot) + "member.en.html")
    await ready(page)
    assert await page.page.is_checked("input[name=show_urgency]")
    assert not await page.page.is_checked("input[name=show_category]")
    await page.page.check("input[name=category][value=danger]")
    await page.page.check("input[name=urgency][value=now]")
    await page.page.fill("textarea[name=words]", WORDS)
    await page.page.click("#help-form button[type=submit]")
    await closed(page)

    # Then every caseworker and admin gets the chat's urgent alert, saying how soon but not
    # what about, with an Open button to their own page beside Claim / Reply / Resolve
    pseudonym = pseudonym_of(team.member)
    line = t(
        "en",
        "alert_case",
        pseudonym=pseudonym,
        category=t("en", "cat_sealed"),
        urgency=t("en", "urg_now"),
    )
    alerts = {name: await getattr(team, name).wait_for_message(line) for name in ("mina", "joon")}
    await team.admin.wait_for_message(line)
    rows = alerts["mina"].inline_keyboard()
    assert [b["web_app"]["url"] for b in rows[0]] == ["http://127.0.0.1/app/staff.en.html"]
    assert [label for label, _ in alerts["mina"].buttons()] == [
        t("en", "btn_claim"),
        t("en", "btn_reply"),
        t("en", "btn_resolve"),
    ]

    # And the case holds the member's envelope as it came, sealed to the team, both
    # approved phones and the admin's (who approved them); the bot itself holds only
    # "right now", and it escalates
    async with core.sessions() as session:
        case = (await session.scalars(select(Case))).one()
        shown = read_brief(core.secrets, case)
    assert case.sealed[1] == ALG_MULTI and len(multi_recipient_ids(case.sealed)) == 4
    assert shown == HelpRequest("sealed", "now")
    assert case.escalate_at is not None
    # ... which the team's offline key opens like any chat request
    opened = HelpRequest.from_bytes(bot.opener().open(case.sealed, sealed_place(case.id)))
    assert (opened.category, opened.urgency, opened.text, opened.duress) == (
        "danger",
        "now",
        WORDS,
        False,
    )

    # When Joon opens his page, his phone shows the request in full
    joon_page = await phones["joon"].open(base_url(bot) + "staff.en.html")
    await ready(joon_page)
    [shown_text] = await joon_page.page.locator(".plaintext").all_text_contents()
    assert shown_text == f"{t('en', 'cat_danger')} · {t('en', 'urg_now')} · {WORDS}"

    # When Mina claims it from the chat, as any request
    await bot.drained()
    await team.mina.press(t("en", "btn_claim"), message=alerts["mina"])
    claimed_line = t("en", "alert_claimed", pseudonym=pseudonym, name="Mina")
    await bot.api.wait_for(lambda: alerts["joon"].text == claimed_line)
    # Then her alert keeps its Open button, and the claim is in the audit trail
    await bot.api.wait_for(lambda: len(alerts["mina"].buttons()) == 2)
    assert "web_app" in alerts["mina"].inline_keyboard()[0][0]
    async with core.sessions() as session:
        case = (await session.scalars(select(Case))).one()
        actions = (await session.scalars(select(AuditEntry.action))).all()
    assert case.status == "claimed" and case.escalate_at is None
    assert "claim" in actions

    # And nothing locked is anywhere: not the words, not the category's name
    assert found_outside_the_envelope(bot, data_dir, [WORDS, t("en", "cat_danger")]) == []


async def test_what_is_shown_is_what_the_member_unlocked_and_nothing_else_is_accepted(
    bot: RunningBot, team: Team, phones: dict[str, Phone], data_dir: Path
) -> None:
    core = bot.core
    await approve(bot, team, phones, "mina")
    # When the member unlocks the category and locks the urgency
    page = await phones["member"].open(base_url(bot) + "member.en.html")
    await ready(page)
    sent: list[dict[str, str]] = []
    page.page.on(
        "request",
        lambda r: sent.append({"body": r.post_data or ""}) if r.url.endswith("/submit") else None,
    )
    await page.page.check("input[name=category][value=housing]")
    await page.page.check("input[name=urgency][value=now]")
    await page.page.fill("textarea[name=words]", WORDS)
    await page.page.uncheck("input[name=show_urgency]")
    await page.page.check("input[name=show_category]")
    await page.page.click("#help-form button[type=submit]")
    await closed(page)

    # Then only their caseworker is told, once: what about, not how soon; no escalation
    pseudonym = pseudonym_of(team.member)
    line = t(
        "en",
        "alert_case",
        pseudonym=pseudonym,
        category=t("en", "cat_housing"),
        urgency=t("en", "urg_sealed"),
    )
    await team.mina.wait_for_message(line)
    await bot.drained()
    assert not [m for m in team.joon.inbox() if pseudonym in (m.text or "")]
    async with core.sessions() as session:
        case = (await session.scalars(select(Case))).one()
        assert read_brief(core.secrets, case) == HelpRequest("housing", "sealed")
    assert case.escalate_at is None
    assert len(multi_recipient_ids(case.sealed)) == 2  # the team key and Mina's phone
    # What the page sent said so, and no more
    [submit] = sent
    assert json.loads(submit["body"])["shown"] == {"category": "housing"}

    # A page (or anyone) claiming to show what a member cannot choose is refused
    member = phones["member"]
    async with aiohttp.ClientSession() as http:
        for shown in ({"category": "silent"}, {"urgency": "sealed"}, {"words": "x"}, ["now"]):
            body = json.loads(submit["body"]) | {"record_id": "B" * 22, "shown": shown}
            headers = {"Authorization": "tma " + member.init_data()}
            async with http.post(base_url(bot) + "api/submit", json=body, headers=headers) as r:
                assert r.status == 422, shown
    async with core.sessions() as session:
        assert len((await session.scalars(select(Case))).all()) == 1
    assert found_outside_the_envelope(bot, data_dir, [WORDS]) == []
