"""Enrolment through invites, and what strangers see (nothing)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.i18n import t
from bot.people import create_invite
from storage.models import Invite, Person, Role, utcnow
from tests.conftest import RunningBot

STRANGER_LINES = {t(lang, "stranger") for lang in ("ko", "en", "zh")}
# A pseudonym in any of the three languages: "Calm Otter 27", "맑은 구름 27", "青松 27".
PSEUDONYM = re.compile(r"([A-Z][a-z]+ [A-Z][a-z]+|[가-힣]+ [가-힣]+|[一-鿿]{2}) \d{2}")


async def count(bot: RunningBot, model: type) -> int:
    async with bot.core.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_admin_invite_enrols_an_admin(bot: RunningBot) -> None:
    # Given an admin invite made from the shell
    coordinator = bot.api.user(700001, "Coordinator", language_code="en")
    # When it is opened, English chosen and a name for replies given
    await bot.enrol(coordinator, Role.ADMIN, language="en", name="Mina")
    # Then the coordinator is told they are an admin, with their name in the bot
    await coordinator.wait_for_message("You are set up as admin")
    await coordinator.wait_for_message(t("en", "staff_name_prompt"))
    await coordinator.wait_for_message(t("en", "staff_name_saved", name="Mina"))
    texts = [m.text or "" for m in coordinator.inbox()]
    assert any(PSEUDONYM.search(text) for text in texts)
    assert t("en", "staff_help_admin") in texts
    async with bot.core.sessions() as session:
        person = await session.scalar(select(Person))
    assert person is not None and person.role == "admin" and person.language == "en"


async def test_member_picks_language_and_reads_three_lines(bot: RunningBot) -> None:
    member = bot.api.user(700002, "Member")
    await member.send_command("start", await bot.invite(Role.MEMBER))
    picker = await member.wait_for_message(t("ko", "language_prompt"))
    assert [text for text, _ in picker.buttons()] == ["한국어", "English", "中文"]
    assert picker.protect_content

    await member.press("中文")
    welcome = await member.wait_for_message("欢迎")
    assert PSEUDONYM.search(welcome.text or "")
    for key in ("welcome_kept", "welcome_clears", "welcome_help"):
        assert t("zh", key) in (welcome.text or "")
    assert [text for text, _ in welcome.buttons()] == [
        t("zh", "menu_checkin"),
        t("zh", "menu_ask"),
        t("zh", "menu_notices"),
        t("zh", "menu_clear"),
        t("zh", "menu_settings"),
        t("zh", "menu_language"),
    ]
    # The picker no longer offers buttons that could be pressed again.
    assert bot.api.visible(member.chat_id)[1].buttons() == []


async def test_invite_is_single_use(bot: RunningBot) -> None:
    token = await bot.invite(Role.MEMBER)
    first, second = bot.api.user(700003, "First"), bot.api.user(700004, "Second")
    await first.send_command("start", token)
    await first.wait_for_message(t("ko", "language_prompt"))
    await second.send_command("start", token)
    reply = await second.wait_for_message()
    assert reply.text in STRANGER_LINES
    assert await count(bot, Person) == 1


async def test_expired_invite_is_refused_like_any_bad_token(bot: RunningBot) -> None:
    async with bot.core.sessions() as session, session.begin():
        token = (
            await create_invite(
                session, bot.core.secrets, Role.MEMBER, hours=1, now=utcnow() - timedelta(hours=2)
            )
        ).token
    late = bot.api.user(700005, "Late", language_code="en")
    await late.send_command("start", token)
    assert (await late.wait_for_message()).text == t("en", "stranger")
    assert await count(bot, Person) == 0


async def test_strangers_all_get_the_same_neutral_line_and_leave_no_row(bot: RunningBot) -> None:
    # Given a live invite that none of them has
    await bot.invite(Role.ADMIN)
    used = await bot.invite(Role.MEMBER)
    await bot.enrol(bot.api.user(700006, "Owner"), token=used)
    invites_before = await count(bot, Invite)

    attempts = {
        "no token": ("start", None),
        "wrong token": ("start", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        "used token": ("start", used),
        "absurd token": ("start", "x" * 300),
        "other command": ("checkin", None),
    }
    replies: list[str | None] = []
    for n, (command, arg) in enumerate(attempts.values()):
        stranger = bot.api.user(710000 + n, "Stranger", language_code="en")
        await stranger.send_command(command, arg)
        replies.append((await stranger.wait_for_message()).text)
    texter = bot.api.user(710100, "Texter", language_code="en")
    await texter.send_text("hello, who runs this?")
    replies.append((await texter.wait_for_message()).text)
    presser = bot.api.user(710200, "Presser", language_code="en")
    await presser.send_text("hi")
    await presser.wait_for_message()
    await presser.forge_press("menu:checkin")
    await bot.api.wait_idle()

    # Then every one of them saw exactly one identical line naming nothing -- and the
    # presser, who already had it today, no second one
    assert set(replies) == {t("en", "stranger")}
    assert [m.text for m in presser.inbox()] == [t("en", "stranger")]
    assert await count(bot, Person) == 1
    assert await count(bot, Invite) == invites_before


async def test_enrolled_person_starting_again_keeps_the_invite(bot: RunningBot) -> None:
    member = bot.api.user(700007, "Again", language_code="en")
    await bot.enrol(member, Role.MEMBER, language="en")
    spare = await bot.invite(Role.ADMIN)
    await member.send_command("start", spare)
    await member.wait_for_message(t("en", "already_enrolled"))
    async with bot.core.sessions() as session:
        unused = await session.scalar(select(func.count()).select_from(Invite))
    assert unused == 1


async def test_group_chats_get_no_answer(bot: RunningBot) -> None:
    # The bot is silent outside private chats, so nothing is said where others read.
    member = bot.api.user(700008, "Grouped")
    await bot.enrol(member, Role.MEMBER)
    sent_before = len(bot.api.calls)
    await bot.api.inject_update(
        {
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": -100123, "type": "group", "title": "g"},
                "from": {"id": 700008, "is_bot": False, "first_name": "Grouped"},
                "text": "/menu",
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            }
        }
    )
    await bot.api.wait_idle()
    assert not [c for c in bot.api.calls[sent_before:] if c.method == "sendMessage"]


@pytest.mark.parametrize(("language", "script"), [("ko", "[가-힣]"), ("zh", "[一-鿿]")])
async def test_a_member_gets_a_pseudonym_in_their_language(
    bot: RunningBot, language: str, script: str
) -> None:
    member = bot.api.user(620090, "Member", language_code=language)
    await bot.enrol(member, Role.MEMBER, language)
    async with bot.core.sessions() as session:
        person = await session.scalar(select(Person))
    assert person is not None and re.search(script, person.pseudonym)
    welcome = next(m.text or "" for m in member.inbox() if person.pseudonym in (m.text or ""))
    assert welcome.startswith(t(language, "welcome_name", pseudonym=person.pseudonym))
    if language == "ko":
        assert f"{person.pseudonym} " not in welcome  # the particle sits on the name
