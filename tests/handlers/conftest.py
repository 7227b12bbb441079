"""Fixtures for the handler tests: a small team enrolled through real invites."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bot.i18n import t
from sandbox import FakeUser
from storage.models import Role
from tests.conftest import RunningBot


@dataclass
class Team:
    admin: FakeUser
    mina: FakeUser  # caseworker who invites the member
    joon: FakeUser  # second caseworker
    member: FakeUser
    other_member: FakeUser  # shell-invited, no caseworker


async def staff_invite(bot: RunningBot, inviter: FakeUser) -> str:
    await inviter.send_command("invite")
    message = await inviter.wait_for_message("?start=")
    return (message.text or "").rsplit("?start=", 1)[1].strip()


@pytest.fixture
async def team(bot: RunningBot) -> Team:
    admin = bot.api.user(600001, "Admin", language_code="en")
    mina = bot.api.user(600002, "Mina", language_code="en")
    joon = bot.api.user(600003, "Joon", language_code="en")
    await bot.enrol(admin, Role.ADMIN, "en", name="Coordinator")
    await bot.enrol(mina, Role.CASEWORKER, "en", name="Mina")
    await bot.enrol(joon, Role.CASEWORKER, "en", name="Joon")
    member = bot.api.user(600010, "Member", language_code="en")
    await bot.enrol(member, language="en", token=await staff_invite(bot, mina))
    other = bot.api.user(600011, "Other", language_code="en")
    await bot.enrol(other, Role.MEMBER, "en")
    return Team(admin, mina, joon, member, other)


async def revoke(admin: FakeUser, name: str, shown: str | None = None) -> None:
    """/revoke, then the Remove button under the question naming the person."""
    await admin.send_command("revoke", name)
    question = await admin.wait_for_message("Remove ")
    await admin.press(t("en", "btn_revoke"), message=question)
    await admin.wait_for_message(t("en", "revoke_done", name=shown or name))


def pseudonym_of(user: FakeUser) -> str:
    welcome = next(m for m in user.inbox() if "Your name here is" in (m.text or ""))
    return (welcome.text or "").split("Your name here is ", 1)[1].split(".", 1)[0]


async def ask(user: FakeUser, category: str, urgency: str, text: str | None) -> None:
    await user.send_command("ask")
    await user.press(t("en", f"cat_{category}"))
    await user.press(t("en", f"urg_{urgency}"))
    if text is None:
        await user.press(t("en", "checkin_skip"))
    else:
        await user.send_text(text)
    await user.wait_for_message(t("en", "ask_sent"))
