"""Issue: safety on the phone. The chat clears itself, quick exit, duress, erasure, limits."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot.checkins import open_checkin
from bot.i18n import LANGUAGES, catalogue, t
from bot.wording import MEMBER_SCREEN_WORDS
from sandbox import FakeBotApi, FakeUser
from storage.db import make_engine, make_sessionmaker
from storage.models import (
    Case,
    ChatMessage,
    CheckIn,
    Note,
    OutboxItem,
    Person,
    Role,
    Tally,
    utcnow,
)
from tests.conftest import RunningBot, eventually, make_settings, start_bot, stop_bot
from tests.handlers.conftest import Team, ask, pseudonym_of


async def count(bot: RunningBot, model: type) -> int:
    async with bot.core.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# Messages clear after 1.2 s; the cleaner looks every 0.2 s.
FAST_CLEAR = pytest.mark.bot_env(
    SAFERELAY_CLEAR_AFTER_MINUTES="0.02", SAFERELAY_SWEEP_SECONDS="0.2"
)


async def checkin(user: FakeUser, lang: str = "en", note: str | None = None) -> None:
    await user.send_command("checkin")
    await user.press(t(lang, "checkin_health_3"))
    await user.press(t(lang, "no"))
    if note is None:
        await user.press(t(lang, "checkin_skip"))
    else:
        await user.send_text(note)
    await user.wait_for_message(t(lang, "checkin_thanks"))


@FAST_CLEAR
async def test_the_whole_exchange_disappears_after_the_delay(bot: RunningBot) -> None:
    member = bot.api.user(640001, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    await checkin(member)
    # start, language question, welcome, check-in prompt (now the thanks), the note
    assert len(bot.api.visible(member.chat_id)) >= 5
    # After the delay both sides are gone: the member's own messages and the bot's
    await bot.api.wait_for(lambda: bot.api.visible(member.chat_id) == [], timeout=10)
    assert all(m.deleted for m in bot.api.chat(member.chat_id))

    # ... and so are the rows that said what to delete (a moment after the last delete call)
    async def no_rows_left() -> bool:
        return await count(bot, ChatMessage) == 0

    await eventually(no_rows_left, what="the chat_messages rows to go")
    # Every message the bot sent the member was protected from forwarding and saving
    assert all(
        m.protect_content for m in bot.api.bot_messages(member.chat_id, include_deleted=True)
    )


@FAST_CLEAR
async def test_staff_chats_keep_the_staff_delay_not_the_members(bot: RunningBot) -> None:
    admin = bot.api.user(640002, "Admin", language_code="en")
    await bot.enrol(admin, Role.ADMIN, "en", name="Coordinator")
    member = bot.api.user(640006, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    # Once a member's chat enrolled after the admin has cleared on the member delay...
    await bot.api.wait_for(lambda: bot.api.visible(member.chat_id) == [], timeout=10)
    # ... the admin's chat, on SAFERELAY_STAFF_CLEAR_AFTER_HOURS (24 h), is still there
    assert len(bot.api.visible(admin.chat_id)) >= 4


async def test_member_chooses_the_delay_in_settings(bot: RunningBot) -> None:
    member = bot.api.user(640003, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    await member.send_command("settings")
    await member.wait_for_message(t("en", "settings_title"))
    assert [label for label, _ in member.last().buttons()][:4] == [
        t("en", "clear_2"),
        t("en", "clear_10"),
        t("en", "clear_60"),
        t("en", "clear_1440"),
    ]
    await member.press(t("en", "clear_60"))
    await bot.api.wait_idle()
    async with bot.core.sessions() as session:
        person = await session.scalar(select(Person))
        latest = await session.scalar(select(func.max(ChatMessage.delete_at)))
        earliest_sent = await session.scalar(select(func.max(ChatMessage.sent_at)))
    assert person is not None and person.clear_after_minutes == 60
    await member.send_text("after the change")
    await bot.api.wait_idle()
    async with bot.core.sessions() as session:
        row = await session.scalar(select(ChatMessage).order_by(ChatMessage.sent_at.desc()))
    assert row is not None
    assert 59 * 60 < (row.delete_at - row.sent_at).total_seconds() <= 60 * 60
    assert latest is not None and earliest_sent is not None
    # No delay may exceed Telegram's 48-hour window
    async with bot.core.sessions() as session:
        longest = max(
            (r.delete_at - r.sent_at).total_seconds()
            for r in await session.scalars(select(ChatMessage))
        )
    assert longest < 48 * 3600


async def test_pending_deletions_survive_a_restart(api: FakeBotApi, data_dir: Path) -> None:
    # Given a member's chat with deletions pending when the bot stops
    settings = make_settings(
        data_dir, api, SAFERELAY_CLEAR_AFTER_MINUTES="0.03", SAFERELAY_SWEEP_SECONDS="0.2"
    )
    app = await start_bot(api, settings)
    bot = RunningBot(api, app, settings, io.StringIO())
    member = api.user(640004, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    await stop_bot(app)
    assert api.visible(member.chat_id) != []
    # When the bot is down past the delay, then starts again
    engine = make_engine(settings.engine_url())
    async with make_sessionmaker(engine)() as session:
        latest = await session.scalar(select(func.max(ChatMessage.delete_at)))
    await engine.dispose()
    assert latest is not None
    await api.wait_for(lambda: utcnow() > latest, timeout=10)
    assert api.visible(member.chat_id) != []
    app = await start_bot(api, settings)
    try:
        # Then the overdue deletions happen at once
        await api.wait_for(lambda: api.visible(member.chat_id) == [], timeout=5)
    finally:
        await stop_bot(app)


@FAST_CLEAR
async def test_failed_deletions_are_retried_and_crash_nothing(bot: RunningBot) -> None:
    bot.api.fail_next("deleteMessages", count=3, status=500)
    member = bot.api.user(640005, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    await bot.api.wait_for(lambda: bot.api.visible(member.chat_id) == [], timeout=90)
    assert "handler failed" not in bot.log.getvalue()


@pytest.mark.parametrize("how", ["command", "button", "code word"])
async def test_quick_exit_empties_the_chat_at_once_without_a_trace(
    bot: RunningBot, how: str
) -> None:
    member = bot.api.user(640006, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    if how == "code word":
        await member.send_command("settings")
        await member.press(t("en", "set_code_word"))
        await member.wait_for_message(t("en", "ask_code_word"))
        await member.send_text("Tomatoes")
        await member.wait_for_message(t("en", "code_word_saved"))
    # Given a chat with a check-in half done
    await member.send_command("checkin")
    await member.press(t("en", "checkin_health_2"))
    await member.wait_for_message(t("en", "checkin_threat"))
    assert len(bot.api.visible(member.chat_id)) >= 5
    # When the member clears it
    if how == "command":
        await member.send_command("clear")
    elif how == "button":
        await member.send_command("menu")
        await member.press(t("en", "menu_clear"))
    else:
        await member.send_text("  tomatoes ")
    await bot.api.wait_idle()
    # Then nothing is left: no message of either side, no reply to the clearing itself
    assert bot.api.visible(member.chat_id) == []
    assert await count(bot, ChatMessage) == 0
    # And the half-done check-in is over: the next words are not taken as its note
    await member.send_text("hello again")
    await member.wait_for_message(t("en", "relay_sent"))
    assert await count(bot, CheckIn) == 0


@pytest.mark.bot_env(SAFERELAY_MESSAGES_PER_MINUTE="200")
async def test_clearing_50_messages(bot: RunningBot) -> None:
    member = bot.api.user(640007, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    for n in range(24):
        await member.send_text(f"line {n}")
    await bot.api.wait_for(lambda: len(bot.api.visible(member.chat_id)) >= 50, timeout=20)
    await bot.api.wait_idle()
    await member.send_command("clear")
    await bot.api.wait_idle()
    assert bot.api.visible(member.chat_id) == []
    calls = [c for c in bot.api.calls if c.method == "deleteMessages"]
    assert sum(len(c.params["message_ids"]) for c in calls) >= 50


async def member_transcript(user: FakeUser) -> list[tuple[str | None, object]]:
    return [(m.text, m.reply_markup) for m in user.inbox()]


async def test_duress_word_answers_exactly_as_usual_and_alerts_staff(
    bot: RunningBot, team: Team
) -> None:
    # Given two members, one of whom has chosen "sunflower" as a duress word
    plain = team.member
    duress = bot.api.user(600012, "Duress", language_code="en")
    await duress.send_command("start", await bot.invite(Role.MEMBER))
    await duress.press("English")
    await duress.wait_for_message("Welcome")
    await duress.send_command("settings")
    await duress.press(t("en", "set_duress_word"))
    question = await duress.wait_for_message(t("en", "ask_duress_word"))
    word = await duress.send_text("Sunflower")
    await duress.wait_for_message(t("en", "duress_word_saved"))
    await bot.api.wait_idle()
    # What the word does, and the word itself, leave the screen at once
    await bot.api.wait_for(lambda: question.deleted and word.deleted, timeout=5)

    async def scenario(user: FakeUser) -> list[tuple[str | None, object]]:
        seen = len(user.inbox())
        await user.send_text("sunflower")
        await user.wait_for_message(t("en", "relay_sent"), count=None)
        await checkin(user, note="sunflower")
        await bot.api.wait_idle()
        return [(m.text, m.reply_markup) for m in user.inbox()[seen:]]

    # When both send the word alone and as a check-in note
    plain_view = await scenario(plain)
    duress_view = await scenario(duress)
    # Then what each member sees is the same, byte for byte
    assert plain_view == duress_view
    # And every caseworker and admin got an urgent, unmistakable alert, for the second only
    for staff in (team.admin, team.mina, team.joon):
        alert = await staff.wait_for_message("🚨")
        assert "Duress" not in (alert.text or "")
    async with bot.core.sessions() as session:
        urgent = list(await session.scalars(select(Case).where(Case.escalate_at.is_not(None))))
    assert len(urgent) == 2  # the word alone, and as the note
    # The plain member's word was an ordinary message
    assert not [
        m
        for m in team.mina.inbox()
        if "🚨" in (m.text or "") and pseudonym_of(plain) in (m.text or "")
    ]


@pytest.mark.sqlite_only("SQLite's files and secure_delete; README, PostgreSQL, says what differs")
async def test_erasure_leaves_nothing_in_the_database_files(bot: RunningBot, team: Team) -> None:
    member = team.member
    pseudonym = pseudonym_of(member)
    # Given a member with check-ins, a request, messages and replies
    await checkin(member, note="Kept a diary under the mattress")
    await ask(member, "medical", "today", "Tooth pain for a week")
    await member.send_text("Quiet words for Mina")
    relayed = await team.mina.wait_for_message("Quiet words for Mina")
    await bot.drained()
    await team.mina.send_text("Noted, talk soon", reply_to=relayed.message_id)
    await member.wait_for_message("Noted, talk soon")
    await bot.api.wait_idle()
    async with bot.core.sessions() as session:
        person = await session.scalar(select(Person).where(Person.pseudonym == pseudonym))
        assert person is not None
        blobs = [person.tg_lookup, person.chat_ref]
        blobs += [c.sealed for c in await session.scalars(select(CheckIn))]
        blobs += [n.sealed for n in await session.scalars(select(Note))]
        blobs += [c.sealed for c in await session.scalars(select(Case))]
    # When the member asks to be forgotten and confirms
    await member.send_command("forget")
    await member.wait_for_message(t("en", "forget_question"))
    await member.press(t("en", "forget_confirm"))
    await bot.api.wait_idle()
    # Then their chat is empty, their caseworker is told only that a member left
    await bot.api.wait_for(lambda: bot.api.visible(member.chat_id) == [], timeout=5)
    await bot.api.wait_for(
        lambda: any(m.text == t("en", "member_left") for m in team.mina.inbox()), timeout=10
    )
    # ... and each copy about them in Mina's chat is rewritten (at her chat's 1/s pace)
    await bot.api.wait_for(lambda: relayed.text == t("en", "member_left"), timeout=10)
    # ... and once their chat is clear, their row goes too

    async def row_gone() -> bool:
        async with bot.core.sessions() as session:
            return await session.get(Person, person.id) is None

    await eventually(row_gone, what="the erased member's row to go")
    async with bot.core.sessions() as session:
        for column in (
            CheckIn.person_id,
            Case.member_id,
            Note.member_id,
            ChatMessage.about_member_id,
            ChatMessage.person_id,
            OutboxItem.recipient_id,
            Person.id,
        ):
            left = await session.scalar(select(func.count()).where(column == person.id))
            assert left == 0, column
        assert (
            await session.scalar(
                select(func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.about_member_id == person.id)
            )
            == 0
        )
        tally = await session.scalar(select(Tally).where(Tally.name == "members_erased"))
    assert tally is not None and tally.value == 1
    # And after a checkpoint and vacuum nothing of theirs is in the files, WAL included
    async with bot.core.engine.connect() as connection:
        await connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        await connection.commit()
        await connection.execute(text("VACUUM"))
    data_dir = bot.settings.data_dir
    files = {p.name: p.read_bytes() for p in data_dir.iterdir() if p.is_file()}
    for name, content in files.items():
        assert pseudonym.encode() not in content, name
        for blob in blobs:
            assert blob[-24:] not in content, name
    # The member is a stranger now
    await member.send_text("hello?")
    assert (await member.wait_for_message(t("en", "stranger"))).text == t("en", "stranger")


async def test_admin_can_erase_a_member(bot: RunningBot, team: Team) -> None:
    pseudonym = pseudonym_of(team.other_member)
    await team.admin.send_command("forget", pseudonym)
    await team.admin.wait_for_message(pseudonym)
    await team.admin.press(t("en", "forget_confirm"))
    await team.admin.wait_for_message(t("en", "forget_done_admin"))
    async with bot.core.sessions() as session:
        gone = await session.scalar(select(Person).where(Person.pseudonym == pseudonym))
    assert gone is None
    # A caseworker may not
    await team.joon.send_command("forget", pseudonym_of(team.member))
    await team.joon.wait_for_message(t("en", "not_allowed"))


async def test_flood_gets_one_calm_message_then_quiet(bot: RunningBot, team: Team) -> None:
    member = team.member
    seen = len(member.inbox())
    for n in range(25):
        await member.send_text(f"msg {n}")
    await bot.api.wait_idle()
    replies = [m.text for m in member.inbox()[seen:]]
    limit = bot.settings.messages_per_minute
    # The enrolment taps of the last minute count too, hence "about" the limit
    assert replies.count(t("en", "slow_down")) == 1
    accepted = replies.count(t("en", "relay_sent"))
    assert limit - 3 <= accepted <= limit
    assert len(replies) == accepted + 1
    await bot.api.wait_for(
        lambda: sum("msg " in (m.text or "") for m in team.mina.inbox()) == accepted, timeout=40
    )


@pytest.mark.parametrize("kind", ["sticker", "photo", "voice", "document", "location", "contact"])
async def test_media_is_refused_kindly_never_stored_and_removed_at_once(
    bot: RunningBot, team: Team, kind: str
) -> None:
    notes_before = await count(bot, Note)
    sent = await team.member.send_media(kind)
    await team.member.wait_for_message(t("en", "relay_text_only"))
    await bot.api.wait_for(lambda: sent.deleted, timeout=5)
    assert await count(bot, Note) == notes_before
    assert not [m for m in team.mina.inbox() if m.payload]


async def test_overlong_text_is_explained(bot: RunningBot, team: Team) -> None:
    await team.member.send_text("x" * 2001)
    await team.member.wait_for_message(t("en", "relay_too_long", limit=2000))


STAFF_ONLY = (
    "alert_",
    "staff_",
    "btn_",
    "claim_",
    "case_",
    "cases_",
    "reply_",
    "invite_",
    "revoke_",
    "status_",
    "resolve_",
    "role_",
    "not_allowed",
    "member_left",
    "forget_question_admin",
    "forget_done_admin",
    "unknown_value",
    "relay_in",
    "bc_",
    "tag_",
    "due_",
    "schedule_",
    "watch_",
    "cat_silent",
    "cat_unreachable",
    "command_broadcast",
    "command_tag",
    "command_due",
    "command_schedule",
)


@pytest.mark.parametrize("language", LANGUAGES)
def test_member_screens_use_everyday_words(language: str) -> None:
    for key, value in catalogue(language).items():
        if key.startswith(STAFF_ONLY) and key not in ("reply_from",):
            continue
        lowered = value.lower()
        for word in MEMBER_SCREEN_WORDS:
            assert word not in lowered, (language, key, word)


async def test_bot_description_is_neutral_and_strangers_get_no_menu(bot: RunningBot) -> None:
    texts = [str(c.params) for c in bot.api.calls if c.method == "setMyDescription"]
    assert len(texts) == 3
    for text_ in texts:
        for word in MEMBER_SCREEN_WORDS:
            assert word not in text_.lower()
    # No menu is set globally, in any language: a stranger's "/" button shows nothing
    assert not [c for c in bot.api.calls if c.method == "setMyCommands"]
    for language in ("", "ko", "en", "zh", "ru"):
        assert bot.api.commands(language_code=language) == []


async def test_checkin_note_with_duress_word_is_still_a_normal_checkin(
    bot: RunningBot, team: Team
) -> None:
    await team.member.send_command("settings")
    await team.member.press(t("en", "set_duress_word"))
    await team.member.send_text("sunflower")
    await team.member.wait_for_message(t("en", "duress_word_saved"))
    await checkin(team.member, note="Sunflower")
    opener = bot.opener()
    async with bot.core.sessions() as session:
        stored = [open_checkin(opener, c) for c in await session.scalars(select(CheckIn))]
    assert [s.note for s in stored] == ["Sunflower"]
