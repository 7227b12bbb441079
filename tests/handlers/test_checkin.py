"""The wellbeing check-in, as a member on a phone goes through it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.checkins import NOTE_LIMIT, CheckInAnswers, open_checkin
from bot.i18n import t
from sandbox import FakeUser
from storage.models import CheckIn, Role
from tests.conftest import RunningBot


async def stored(bot: RunningBot) -> list[CheckInAnswers]:
    opener = bot.opener()
    async with bot.core.sessions() as session:
        rows = list(await session.scalars(select(CheckIn).order_by(CheckIn.created_at)))
    return [open_checkin(opener, row) for row in rows]


async def member(bot: RunningBot, language: str = "en", user_id: int = 800001) -> FakeUser:
    person = bot.api.user(user_id, "Member", language_code=language)
    await bot.enrol(person, Role.MEMBER, language=language)
    return person


async def test_checkin_with_note_is_stored_sealed(bot: RunningBot) -> None:
    user = await member(bot)
    # When the member answers with buttons and writes a note
    await user.send_command("checkin")
    question = await user.wait_for_message(t("en", "checkin_health"))
    assert [label for label, _ in question.buttons()] == [
        t("en", f"checkin_health_{n}") for n in range(1, 6)
    ]
    await user.press(t("en", "checkin_health_2"))
    await user.wait_for_message(t("en", "checkin_threat"))
    await user.press(t("en", "yes"))
    await user.wait_for_message(t("en", "checkin_note"))
    await user.send_text("  Landlord asked for papers again  ")
    await user.wait_for_message(t("en", "checkin_thanks"))
    # Then the answers are stored sealed and open with the team key
    assert await stored(bot) == [
        CheckInAnswers(health=2, threat=True, note="Landlord asked for papers again")
    ]
    # And the question can no longer be answered
    assert not [data for m in user.inbox() for _, data in m.buttons() if data.startswith("ci:")]


async def test_checkin_from_menu_button_with_skip(bot: RunningBot) -> None:
    user = await member(bot, language="ko")
    await user.send_command("menu")
    await user.wait_for_message(t("ko", "menu_title"))
    await user.press(t("ko", "menu_checkin"))
    await user.wait_for_message(t("ko", "checkin_health"))
    await user.press("ci:h:5")
    await user.press(t("ko", "no"))
    await user.press(t("ko", "checkin_skip"))
    await user.wait_for_message(t("ko", "checkin_thanks"))
    assert await stored(bot) == [CheckInAnswers(health=5, threat=False, note=None)]


async def test_cancel_leaves_nothing(bot: RunningBot) -> None:
    user = await member(bot)
    await user.send_command("checkin")
    await user.press(t("en", "checkin_health_3"))
    await user.send_command("cancel")
    await user.wait_for_message(t("en", "cancelled"))
    assert await stored(bot) == []
    # An old button pressed after cancelling does nothing but say it is no longer active.
    await user.forge_press("ci:t:yes")
    await bot.api.wait_idle()
    assert await stored(bot) == []
    assert user.answered_callbacks()[-1]["text"] == t("en", "stale_button")


async def test_typing_instead_of_pressing_gets_a_kind_reminder(bot: RunningBot) -> None:
    user = await member(bot)
    await user.send_command("checkin")
    await user.send_text("4")
    await user.wait_for_message(t("en", "use_buttons"))
    await user.press(t("en", "checkin_health_4"))
    await user.wait_for_message(t("en", "checkin_threat"))


async def test_note_too_long_or_not_text_is_explained(bot: RunningBot) -> None:
    user = await member(bot)
    await user.send_command("checkin")
    await user.press(t("en", "checkin_health_1"))
    await user.press(t("en", "no"))
    await user.send_text("x" * (NOTE_LIMIT + 1))
    await user.wait_for_message(t("en", "checkin_note_too_long", limit=NOTE_LIMIT))
    await user.send_media("sticker")
    await user.wait_for_message(t("en", "checkin_note_text_only"))
    await user.send_text("short")
    await user.wait_for_message(t("en", "checkin_thanks"))
    assert await stored(bot) == [CheckInAnswers(health=1, threat=False, note="short")]


async def test_staff_cannot_check_in(bot: RunningBot) -> None:
    admin = bot.api.user(800002, "Admin", language_code="en")
    await bot.enrol(admin, Role.ADMIN, language="en")
    await admin.send_command("checkin")
    await admin.wait_for_message(t("en", "not_understood"))
    await admin.forge_press("ci:h:1")
    await bot.api.wait_idle()
    assert await stored(bot) == []


async def test_forged_answers_outside_the_scale_are_ignored(bot: RunningBot) -> None:
    user = await member(bot)
    await user.send_command("checkin")
    await user.wait_for_message(t("en", "checkin_health"))
    await user.forge_press("ci:h:9")
    await bot.api.wait_idle()
    assert user.answered_callbacks()[-1]["text"] == t("en", "stale_button")
    await user.press(t("en", "checkin_health_3"))
    await user.wait_for_message(t("en", "checkin_threat"))


@pytest.mark.bot_env(SAFERELAY_CHECKIN_TIMEOUT_MINUTES="0.02")
async def test_half_finished_checkin_expires(bot: RunningBot) -> None:
    user = await member(bot)
    await user.send_command("checkin")
    await user.press(t("en", "checkin_health_2"))
    # After the timeout (1.2 s here) the prompt says so and offers no buttons.
    expired = await user.wait_for_message(t("en", "checkin_expired"), timeout=10)
    assert expired.buttons() == []
    await bot.api.wait_idle()
    assert await stored(bot) == []
    # Pressing the old answer afterwards stores nothing.
    await user.forge_press("ci:t:yes", message=expired)
    await bot.api.wait_idle()
    assert await stored(bot) == []
