"""Help requests, alerts, claims and the two-way relay, as members and caseworkers use them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.cases import HelpRequest, sealed_place
from bot.i18n import t
from bot.relay import note_place
from storage.models import Case, Note, Role
from tests.conftest import RunningBot
from tests.handlers.conftest import Team, ask, pseudonym_of, revoke


async def test_help_request_reaches_the_caseworker_and_the_reply_comes_back(
    bot: RunningBot, team: Team
) -> None:
    # Given a member whose caseworker is Mina
    pseudonym = pseudonym_of(team.member)
    # When they ask for medical help today with two lines
    await ask(team.member, "medical", "today", "Fever since Monday.\nNo papers for a clinic.")
    # Then Mina's phone shows an alert naming only the pseudonym, with the three buttons
    alert = await team.mina.wait_for_message("Help request from")
    assert pseudonym in (alert.text or "") and "Member" not in (alert.text or "")
    assert t("en", "cat_medical") in (alert.text or "") and t("en", "urg_today") in (
        alert.text or ""
    )
    assert "Fever since Monday.\nNo papers for a clinic." in (alert.text or "")
    assert [label for label, _ in alert.buttons()] == [
        t("en", "btn_claim"),
        t("en", "btn_reply"),
        t("en", "btn_resolve"),
    ]
    assert alert.protect_content
    # ... and nobody else's (not urgent, and the member has a caseworker)
    await bot.api.wait_idle()
    assert not [m for m in team.joon.inbox() if "Help request" in (m.text or "")]

    # When Mina answers by replying to the alert
    await bot.drained()
    await team.mina.send_text("I can meet you tomorrow at 10.", reply_to=alert.message_id)
    await team.mina.wait_for_message(t("en", "reply_sent", pseudonym=pseudonym))
    # Then the member sees it signed with Mina's chosen name, and nothing of her account
    reply = await team.member.wait_for_message("I can meet you tomorrow at 10.")
    assert reply.text == "Mina: I can meet you tomorrow at 10."
    assert reply.protect_content

    # And both the request and the reply are stored sealed, readable with the team key
    opener = bot.opener()
    async with bot.core.sessions() as session:
        case = await session.scalar(select(Case))
        notes = list(await session.scalars(select(Note)))
    assert case is not None
    request = HelpRequest.from_bytes(opener.open(case.sealed, sealed_place(case.id)))
    assert request == HelpRequest(
        "medical", "today", "Fever since Monday.\nNo papers for a clinic."
    )
    assert [opener.open(n.sealed, note_place(n.id)).decode() for n in notes] == [
        "I can meet you tomorrow at 10."
    ]


async def test_free_text_is_relayed_both_ways_with_the_reply_button(
    bot: RunningBot, team: Team
) -> None:
    pseudonym = pseudonym_of(team.member)
    await team.member.send_text("Are you there? I moved flats.")
    await team.member.wait_for_message(t("en", "relay_sent"))
    relayed = await team.mina.wait_for_message("I moved flats")
    assert relayed.text == f"{pseudonym}: Are you there? I moved flats."
    # Reply button, then text
    await bot.drained()
    await team.mina.press(t("en", "btn_reply"), message=relayed)
    await team.mina.wait_for_message(t("en", "reply_prompt", pseudonym=pseudonym))
    await team.mina.send_text("Glad you told me. Are you safe?")
    assert (await team.member.wait_for_message("Are you safe?")).text == (
        "Mina: Glad you told me. Are you safe?"
    )


async def test_member_without_caseworker_and_urgent_requests_alert_every_staff_member(
    bot: RunningBot, team: Team
) -> None:
    await team.other_member.send_text("hello?")
    for staff in (team.admin, team.mina, team.joon):
        await staff.wait_for_message("hello?")
    await ask(team.member, "danger", "now", None)
    for staff in (team.admin, team.mina, team.joon):
        alert = await staff.wait_for_message("Help request from")
        assert t("en", "urg_now") in (alert.text or "")


async def test_two_claims_race_and_exactly_one_wins(bot: RunningBot, team: Team) -> None:
    # Given an urgent request alerted to both caseworkers
    await ask(team.member, "danger", "now", "Someone is following me")
    mina_alert = await team.mina.wait_for_message("Help request from")
    joon_alert = await team.joon.wait_for_message("Help request from")
    await bot.api.wait_idle()
    await bot.drained()
    # When both press Claim at once
    await team.mina.press(t("en", "btn_claim"), message=mina_alert)
    await team.joon.press(t("en", "btn_claim"), message=joon_alert)
    await bot.api.wait_idle()
    # Then exactly one owns it, and the other is told who
    async with bot.core.sessions() as session:
        case = await session.scalar(select(Case))
    assert case is not None and case.status == "claimed"
    answers = {
        "mina": team.mina.answered_callbacks()[-1]["text"],
        "joon": team.joon.answered_callbacks()[-1]["text"],
    }
    assert sorted(answers.values()) == sorted(
        [t("en", "claim_done"), t("en", "claim_taken", name="Mina")]
    )
    assert answers["mina"] == t("en", "claim_done")
    # ... and the other copies say who claimed it, without the member's words
    pseudonym = pseudonym_of(team.member)
    claimed_line = t("en", "alert_claimed", pseudonym=pseudonym, name="Mina")
    await bot.api.wait_for(lambda: joon_alert.text == claimed_line)
    admin_alert = next(m for m in team.admin.inbox() if pseudonym in (m.text or ""))
    await bot.api.wait_for(lambda: admin_alert.text == claimed_line)
    assert joon_alert.buttons() == []
    # ... and the winner keeps Reply and Resolve
    assert [label for label, _ in mina_alert.buttons()] == [
        t("en", "btn_reply"),
        t("en", "btn_resolve"),
    ]
    # Joon may not answer a request Mina owns
    await team.joon.send_text("I can help", reply_to=joon_alert.message_id)
    await team.joon.wait_for_message(t("en", "reply_taken", pseudonym=pseudonym))
    # Mina resolves it
    await team.mina.press(t("en", "btn_resolve"), message=mina_alert)
    await bot.api.wait_idle()
    async with bot.core.sessions() as session:
        case = await session.scalar(select(Case))
    assert case is not None and case.status == "resolved" and case.brief is None


async def test_cases_lists_open_and_claimed_requests_with_buttons(
    bot: RunningBot, team: Team
) -> None:
    await ask(team.member, "housing", "week", None)
    await team.mina.wait_for_message("Help request from")
    await team.mina.send_command("cases")
    line = await team.mina.wait_for_message(f"· {t('en', 'status_open')} ·")
    assert t("en", "cat_housing") in (line.text or "") and t("en", "urg_week") in (line.text or "")
    await team.mina.press(t("en", "btn_claim"), message=line)
    await bot.api.wait_idle()
    await team.mina.send_command("cases")
    await team.mina.wait_for_message(f"· {t('en', 'status_mine')} ·")
    # Joon was never alerted and the member is not his: he sees nothing
    await team.joon.send_command("cases")
    await team.joon.wait_for_message(t("en", "cases_none"))


async def test_worrying_checkin_alerts_the_caseworker(bot: RunningBot, team: Team) -> None:
    await team.member.send_command("checkin")
    await team.member.press(t("en", "checkin_health_4"))
    await team.member.press(t("en", "no"))
    await team.member.press(t("en", "checkin_skip"))
    await team.member.wait_for_message(t("en", "checkin_thanks"))
    await bot.api.wait_idle()
    assert not [m for m in team.mina.inbox() if "Check-in from" in (m.text or "")]
    await team.member.send_command("checkin")
    await team.member.press(t("en", "checkin_health_2"))
    await team.member.press(t("en", "yes"))
    await team.member.send_text("Police asked about me at work")
    alert = await team.mina.wait_for_message("Check-in from")
    assert "2/5" in (alert.text or "") and "Police asked about me at work" in (alert.text or "")
    await bot.drained()
    await team.mina.send_text("Call me tonight", reply_to=alert.message_id)
    assert (await team.member.wait_for_message("Call me tonight")).text == "Mina: Call me tonight"


async def test_revoked_caseworker_becomes_a_stranger_and_receives_nothing(
    bot: RunningBot, team: Team
) -> None:
    await ask(team.member, "talk", "week", "Feeling low")
    alert = await team.mina.wait_for_message("Help request from")
    await bot.drained()
    await team.mina.press(t("en", "btn_claim"), message=alert)
    await bot.api.wait_idle()
    # When the admin revokes Mina by her chosen name
    await revoke(team.admin, "mina", "Mina")
    # Then the member's words are gone from her phone before she is cut off
    await bot.api.wait_for(
        lambda: not any("Feeling low" in (m.text or "") for m in bot.api.visible(team.mina.chat_id))
    )
    before = len(team.mina.inbox())
    # ... and her commands and replies get the neutral line (once a day) and do nothing
    await team.mina.send_command("cases")
    await team.mina.send_text("hello")
    await bot.api.wait_idle()
    assert [m.text for m in team.mina.inbox()[before:]] == [t("en", "stranger")]
    async with bot.core.sessions() as session:
        case = await session.scalar(select(Case))
    assert case is not None and case.status == "open" and case.claimed_by is None
    # ... and the member's next words go to everyone else, not to her
    await team.member.send_text("still there?")
    await team.joon.wait_for_message("still there?")
    await team.admin.wait_for_message("still there?")
    assert not [m for m in team.mina.inbox() if "still there?" in (m.text or "")]


async def test_reply_to_a_member_who_was_removed_says_so(bot: RunningBot, team: Team) -> None:
    pseudonym = pseudonym_of(team.member)
    await team.member.send_text("one more thing")
    relayed = await team.mina.wait_for_message("one more thing")
    await revoke(team.admin, pseudonym)
    await bot.drained()
    await team.mina.send_text("what is it?", reply_to=relayed.message_id)
    await team.mina.wait_for_message(t("en", "reply_gone", pseudonym=pseudonym))
    await bot.api.wait_idle()
    assert not [m for m in team.member.inbox() if "what is it?" in (m.text or "")]


@pytest.mark.bot_env(SAFERELAY_ESCALATE_MINUTES="0.02", SAFERELAY_SWEEP_SECONDS="0.2")
async def test_unclaimed_urgent_request_escalates_until_claimed(bot: RunningBot) -> None:
    admin = bot.api.user(610001, "Admin", language_code="en")
    mina = bot.api.user(610002, "Mina", language_code="en")
    member = bot.api.user(610003, "Member", language_code="en")
    await bot.enrol(admin, Role.ADMIN, "en", name="Coordinator")
    await bot.enrol(mina, Role.CASEWORKER, "en", name="Mina")
    await bot.enrol(member, Role.MEMBER, "en")
    await ask(member, "danger", "now", "They found my address")
    # Escalated (1.2 s here) to every caseworker and admin, with the member's words
    escalated = await admin.wait_for_message("STILL UNCLAIMED", timeout=10)
    assert "They found my address" in (escalated.text or "")
    await mina.wait_for_message("STILL UNCLAIMED", timeout=10)
    # ... and again at the next interval
    await bot.api.wait_for(
        lambda: sum("STILL UNCLAIMED" in (m.text or "") for m in admin.inbox()) >= 2, timeout=10
    )
    # Once claimed, it stops
    await bot.drained()
    await mina.press(t("en", "btn_claim"), message=mina.inbox()[-1])
    await bot.api.wait_idle()
    async with bot.core.sessions() as session:
        case = await session.scalar(select(Case))
    assert case is not None and case.escalate_at is None and case.escalations >= 2


async def test_a_members_edit_follows_to_staff_and_a_staff_edit_to_the_member(
    bot: RunningBot, team: Team
) -> None:
    # Given a member's message passed on to Mina, and her reply
    sent = await team.member.send_text("I can meet at 3")
    copy = await team.mina.wait_for_message("I can meet at 3")
    await bot.drained()
    reply = await team.mina.send_text("Fine, see you at the park", reply_to=copy.message_id)
    await team.member.wait_for_message("Fine, see you at the park")
    # When the member corrects the time, Mina gets the correction
    await team.member.edit_text(sent, "I can meet at 4")
    corrected = await team.mina.wait_for_message("I can meet at 4")
    assert corrected.text == t(
        "en", "relay_in_corrected", pseudonym=pseudonym_of(team.member), text="I can meet at 4"
    )
    # ... and when Mina corrects her reply, the member gets hers
    await team.mina.edit_text(reply, "Fine, see you at the station")
    got = await team.member.wait_for_message("see you at the station")
    assert got.text == t(
        "en", "reply_from_corrected", name="Mina", text="Fine, see you at the station"
    )
    await team.mina.wait_for_message(
        t("en", "reply_corrected", pseudonym=pseudonym_of(team.member))
    )


async def test_editing_a_check_in_note_tells_nobody(bot: RunningBot, team: Team) -> None:
    await team.member.send_command("checkin")
    await team.member.press(t("en", "checkin_health_4"))
    await team.member.press(t("en", "no"))
    note = await team.member.send_text("all fine this week")
    await team.member.wait_for_message(t("en", "checkin_thanks"))
    await bot.api.wait_idle()
    seen = len(team.mina.inbox())
    await team.member.edit_text(note, "all fine, moved flat")
    await bot.api.wait_idle()
    assert not [m for m in team.mina.inbox()[seen:] if "moved flat" in (m.text or "")]
