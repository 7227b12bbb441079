"""Issue 7: what a revoked account, a seized phone and a hostile account could still do.

Each test drives the real bot through the fake Bot API as people would, and each fails on
the code before the hardening (see the issue for the finding behind it).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bot.cases import MAX_OPEN_URGENT
from bot.i18n import t
from bot.people import find_by_name
from crypto.hashing import Pepper
from sandbox import FakeUser
from storage.models import Invite, Person, Role, utcnow
from tests.conftest import RunningBot, eventually
from tests.handlers.conftest import Team, ask, pseudonym_of, revoke, staff_invite


async def set_safety_word(member: FakeUser, word: str) -> None:
    await member.send_command("settings")
    await member.press(t("en", "set_duress_word"))
    await member.wait_for_message(t("en", "ask_duress_word"))
    await member.send_text(word)
    await member.wait_for_message(t("en", "duress_word_saved"))


def visible_texts(bot: RunningBot, user: FakeUser) -> list[str]:
    return [m.text or "" for m in bot.api.visible(user.chat_id)]


async def person_count(bot: RunningBot) -> int:
    async with bot.core.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Person)) or 0)


async def invites_of(bot: RunningBot, user: FakeUser) -> int:
    async with bot.core.sessions() as session:
        lookup = bot.core.secrets.pepper.user_lookup(user.user_id)
        maker = await session.scalar(select(Person.id).where(Person.tg_lookup == lookup))
        count = await session.scalar(
            select(func.count()).select_from(Invite).where(Invite.created_by == maker)
        )
    return int(count or 0)


# --- 1. revocation cuts everything a person made or holds -------------------------------


async def test_a_revoked_admins_pending_admin_invite_enrols_nobody(
    bot: RunningBot, team: Team
) -> None:
    # Given a second admin who made an admin invite and has not passed it on yet
    second = bot.api.user(600020, "Second", language_code="en")
    await bot.enrol(second, Role.ADMIN, "en", name="Second")
    await second.send_command("invite", "admin")
    link = await second.wait_for_message("?start=")
    token = (link.text or "").rsplit("?start=", 1)[1].strip()
    # When the first admin revokes them
    await revoke(team.admin, "Second")
    # Then the link message is gone from their phone, the invite from the database...
    await bot.api.wait_for(lambda: not any("?start=" in x for x in visible_texts(bot, second)))
    assert await invites_of(bot, second) == 0
    # ... and the link enrols nobody
    before = await person_count(bot)
    newcomer = bot.api.user(600021, "Newcomer", language_code="en")
    await newcomer.send_command("start", token)
    await newcomer.wait_for_message(t("en", "stranger"))
    assert await person_count(bot) == before


async def test_an_invite_whose_maker_is_no_longer_active_is_refused(
    bot: RunningBot, team: Team
) -> None:
    # Given an invite from Joon, whose account is cut off by some other path than /revoke
    token = await staff_invite(bot, team.joon)
    async with bot.core.sessions() as session, session.begin():
        lookup = bot.core.secrets.pepper.user_lookup(team.joon.user_id)
        await session.execute(
            update(Person).where(Person.tg_lookup == lookup).values(revoked_at=utcnow())
        )
    before = await person_count(bot)
    # When a newcomer opens it
    newcomer = bot.api.user(600022, "Newcomer", language_code="en")
    await newcomer.send_command("start", token)
    # Then they are a stranger, and nobody was enrolled
    await newcomer.wait_for_message(t("en", "stranger"))
    assert await person_count(bot) == before


async def test_invites_lists_open_links_and_cancel_kills_one(bot: RunningBot, team: Team) -> None:
    # Given two open member invites from Mina
    first = await staff_invite(bot, team.mina)
    await bot.api.wait_idle()
    await staff_invite(bot, team.mina)
    await bot.api.wait_idle()
    assert await invites_of(bot, team.mina) == 2
    # When she lists them: one line each, each with its Cancel button
    seen = len(team.mina.inbox())
    await team.mina.send_command("invites")
    await team.mina.wait_for_message(t("en", "invites_title"))
    await bot.api.wait_idle()
    lines = [m for m in team.mina.inbox()[seen:] if m.buttons()]
    assert [label for m in lines for label, _ in m.buttons()] == [t("en", "btn_cancel_invite")] * 2
    # ... and cancels both
    for line in lines:
        await team.mina.press(t("en", "btn_cancel_invite"), message=line)
        await bot.api.wait_idle()
    # Then no link is left on her phone or in the database, and the first link is dead
    assert await invites_of(bot, team.mina) == 0
    await bot.api.wait_for(lambda: not any("?start=" in x for x in visible_texts(bot, team.mina)))
    await team.mina.send_command("invites")
    await team.mina.wait_for_message(t("en", "invites_none"))
    newcomer = bot.api.user(600023, "Newcomer", language_code="en")
    await newcomer.send_command("start", first)
    await newcomer.wait_for_message(t("en", "stranger"))


async def test_the_link_message_goes_once_the_invite_is_used(bot: RunningBot, team: Team) -> None:
    await team.joon.send_command("invite")
    await team.joon.wait_for_message("?start=")
    token = (team.joon.last().text or "").rsplit("?start=", 1)[1].strip()
    newcomer = bot.api.user(600024, "Newcomer", language_code="en")
    await bot.enrol(newcomer, Role.MEMBER, "en", token=token)
    await bot.api.wait_for(lambda: not any("?start=" in x for x in visible_texts(bot, team.joon)))


async def test_staff_invites_last_24_hours_member_invites_72(bot: RunningBot, team: Team) -> None:
    await team.admin.send_command("invite", "caseworker")
    await team.admin.wait_for_message("?start=")
    await bot.api.wait_idle()
    await team.admin.send_command("invite")
    await bot.api.wait_for(
        lambda: sum("?start=" in (m.text or "") for m in team.admin.inbox()) == 2
    )
    async with bot.core.sessions() as session:
        rows = list(await session.scalars(select(Invite).order_by(Invite.expires_at)))
    hours = sorted(round((i.expires_at - utcnow()).total_seconds() / 3600) for i in rows)
    assert hours == [24, 72]


# --- 2. revoking a member clears their phone ------------------------------------------


async def test_revoking_a_member_clears_their_phone_and_forget_still_works(
    bot: RunningBot, team: Team
) -> None:
    await team.member.send_text("are you there?")
    await team.mina.wait_for_message("are you there?")
    pseudonym = pseudonym_of(team.member)
    assert visible_texts(bot, team.member)
    # When the admin revokes the member
    await revoke(team.admin, pseudonym)
    # Then everything in their chat goes at once, not after their clearing delay
    await bot.api.wait_for(lambda: visible_texts(bot, team.member) == [], timeout=10)
    # ... and the admin can still erase them
    await team.admin.send_command("forget", pseudonym)
    await team.admin.wait_for_message(t("en", "forget_question_admin", pseudonym=pseudonym))
    await team.admin.press(t("en", "forget_confirm"), message=team.admin.last())
    await team.admin.wait_for_message(t("en", "forget_done_admin"))

    async def gone() -> bool:
        async with bot.core.sessions() as session:
            found = await session.scalar(select(Person).where(Person.pseudonym == pseudonym))
            return found is None

    await eventually(gone, what="the revoked member's row to be erased")


async def test_the_sender_forgets_chat_ids_on_revoke_and_erasure(
    bot: RunningBot, team: Team
) -> None:
    sender = bot.app.bot_data["sender"]
    # Given a member and their caseworker who have each had a message from the outbox
    await team.member.send_text("are you there?")
    alert = await team.mina.wait_for_message("are you there?")
    await bot.drained()  # the alert is answerable once the sender has recorded it
    await team.mina.send_text("yes, here", reply_to=alert.message_id)
    await team.member.wait_for_message("yes, here")
    async with bot.core.sessions() as session:
        (mina,) = await find_by_name(session, bot.core.secrets, "Mina")
        (member,) = await find_by_name(session, bot.core.secrets, pseudonym_of(team.member))
    await bot.drained()
    assert sender.keeps_chat_of(mina.id) and sender.keeps_chat_of(member.id)
    # When the caseworker is revoked and the member erased, their chat ids go from memory
    await revoke(team.admin, "Mina")
    assert not sender.keeps_chat_of(mina.id)
    await team.admin.send_command("forget", member.pseudonym)
    await team.admin.wait_for_message(t("en", "forget_question_admin", pseudonym=member.pseudonym))
    await team.admin.press(t("en", "forget_confirm"), message=team.admin.last())
    await team.admin.wait_for_message(t("en", "forget_done_admin"))
    assert not sender.keeps_chat_of(member.id)


# --- 3. staff phones clear too --------------------------------------------------------


@pytest.mark.bot_env(SAFERELAY_STAFF_CLEAR_AFTER_HOURS="0.0005", SAFERELAY_SWEEP_SECONDS="0.2")
async def test_member_words_leave_staff_phones_after_the_staff_delay(
    bot: RunningBot, team: Team
) -> None:
    # Given a member's words relayed to their caseworker (the delay here is 1.8 s)
    await team.member.send_text("I moved to the new flat")
    await team.mina.wait_for_message("I moved to the new flat")
    # Then after the staff delay the copy is gone from her phone, and her own reply too
    await bot.api.wait_for(
        lambda: not any("new flat" in x for x in visible_texts(bot, team.mina)), timeout=15
    )


# --- 9. safety words are checked before the flood limit -------------------------------


@pytest.mark.bot_env(SAFERELAY_MESSAGES_PER_MINUTE="8")
async def test_a_duress_word_from_a_rate_limited_member_still_alerts(
    bot: RunningBot, team: Team
) -> None:
    member = team.member
    await set_safety_word(member, "marigold")
    # Given a member past their flood limit
    for n in range(8):
        await member.send_text(f"hello {n}")
    await member.wait_for_message(t("en", "slow_down"))
    # When they send their safety word
    await member.send_text("Marigold")
    # Then staff are alerted all the same
    await team.admin.wait_for_message("URGENT", timeout=10)


# --- 4. words: derived once per short message, never otherwise ------------------------


async def test_the_bot_derives_once_per_short_message_and_never_otherwise(
    bot: RunningBot, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.safety as safety

    calls: list[str] = []
    real = safety.word_digest

    def counting(pepper: Pepper, person_id: str, word: str, cost: object = None) -> bytes:
        calls.append(word)
        return real(pepper, person_id, word)

    monkeypatch.setattr(safety, "word_digest", counting)
    member = team.member
    await member.send_text("A long message about my week, far longer than any word could be.")
    await member.send_text("two\nlines")
    await member.send_command("menu")
    await member.press("✅ Check in")
    await member.wait_for_message("healthy")
    await member.send_command("cancel")
    await bot.api.wait_idle()
    assert calls == []
    await member.send_text("ok")
    await team.mina.wait_for_message("ok")
    await bot.api.wait_idle()
    assert calls == ["ok"]


async def test_a_safety_word_is_urgent_even_past_the_cap_on_urgent_requests(
    bot: RunningBot, team: Team
) -> None:
    member = team.member
    await set_safety_word(member, "marigold")
    # Given the member already has the most urgent requests open that buttons may raise
    for _ in range(MAX_OPEN_URGENT):
        await ask(member, "danger", "now", None)
    await bot.drained()
    # When they send their safety word, the admin (not only their caseworker) is alerted
    await member.send_text("marigold")
    await team.admin.wait_for_message(t("en", "alert_duress").split("{")[0], timeout=10)


# --- 8 and 11. strangers ---------------------------------------------------------------


async def test_a_stranger_hears_one_english_line_a_day_whatever_they_send(
    bot: RunningBot,
) -> None:
    stranger = bot.api.user(650001, "Stranger", language_code="ru")
    await stranger.send_command("start")
    await stranger.send_text("hello?")
    await stranger.send_command("start", "not-a-real-invite-token-000000")
    await stranger.send_command("help")
    await bot.api.wait_idle()
    assert [m.text for m in stranger.inbox()] == [t("en", "stranger")]


async def test_only_enrolled_chats_get_a_command_menu(bot: RunningBot, team: Team) -> None:
    def menu(user: FakeUser) -> list[str]:
        scope = {"type": "chat", "chat_id": user.chat_id}
        return [c["command"] for c in bot.api.commands(scope=scope)]

    await bot.api.wait_for(lambda: "checkin" in menu(team.member))
    await bot.api.wait_for(lambda: "revoke" in menu(team.admin))
    assert "revoke" not in menu(team.mina) and "cases" in menu(team.mina)
    stranger = bot.api.user(650002, "Stranger", language_code="en")
    await stranger.send_text("hi")
    await bot.api.wait_idle()
    assert menu(stranger) == []
    # A revoked person's menu goes with them
    await revoke(team.admin, pseudonym_of(team.member))
    await bot.api.wait_for(lambda: menu(team.member) == [], timeout=10)


# --- 12. unique names ------------------------------------------------------------------


async def test_staff_names_are_unique_and_never_a_members_pseudonym(
    bot: RunningBot, team: Team
) -> None:
    for taken in ("MINA", pseudonym_of(team.member)):
        await team.joon.send_command("name")
        await team.joon.wait_for_message(t("en", "staff_name_prompt"))
        await team.joon.send_text(taken)
        await team.joon.wait_for_message(t("en", "staff_name_taken"))
        await team.joon.send_command("cancel")
        await bot.api.wait_idle()


async def test_revoke_asks_first_and_no_keeps_everyone(bot: RunningBot, team: Team) -> None:
    await team.admin.send_command("revoke", "Mina")
    question = await team.admin.wait_for_message("Remove Mina?")
    assert "caseworker" in (question.text or "")
    await team.admin.press(t("en", "forget_keep"), message=question)
    await bot.api.wait_idle()
    async with bot.core.sessions() as session:
        revoked = await session.scalar(
            select(func.count()).select_from(Person).where(Person.revoked_at.is_not(None))
        )
    assert revoked == 0


# --- 14. staff enrolment is one clean flow ---------------------------------------------


async def test_a_reply_during_an_unfinished_enrolment_reaches_the_member(
    bot: RunningBot, team: Team
) -> None:
    # Given a caseworker who opened their invite but never answered the language question
    late = bot.api.user(600030, "Late", language_code="en")
    await late.send_command("start", await bot.invite(Role.CASEWORKER))
    await bot.api.wait_for(lambda: bool(late.inbox()))
    await bot.api.wait_idle()
    # When a member without a caseworker writes, and the new caseworker replies to it
    await team.other_member.send_text("can someone call me")
    copy = await late.wait_for_message("can someone call me")
    await bot.drained()
    await late.send_text("Yes, tonight at 8", reply_to=copy.message_id)
    # Then the member gets the reply, and it did not become the caseworker's name
    await team.other_member.wait_for_message("Yes, tonight at 8")
    async with bot.core.sessions() as session:
        lookup = bot.core.secrets.pepper.user_lookup(late.user_id)
        person = await session.scalar(select(Person).where(Person.tg_lookup == lookup))
    assert person is not None and person.display_name != "Yes, tonight at 8"
    # ... and unrelated text asks the unfinished step again instead of filling it
    await late.send_text("what now?")
    await late.wait_for_message(t("en", "language_prompt"))


async def test_invites_expire_out_of_the_list_after_a_week(bot: RunningBot, team: Team) -> None:
    await staff_invite(bot, team.mina)
    async with bot.core.sessions() as session, session.begin():
        await session.execute(update(Invite).values(expires_at=utcnow() - timedelta(days=8)))
    await team.mina.send_command("invites")
    await team.mina.wait_for_message(t("en", "invites_none"))
