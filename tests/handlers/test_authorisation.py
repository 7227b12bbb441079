"""I3: every command and button is re-checked against the database, whatever it claims."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.i18n import t
from storage.models import Case, Invite, Person
from tests.conftest import RunningBot
from tests.handlers.conftest import Team, ask, pseudonym_of


async def snapshot(bot: RunningBot) -> tuple[object, ...]:
    async with bot.core.sessions() as session:
        cases = [(c.id, c.status, c.claimed_by) for c in await session.scalars(select(Case))]
        people = [(p.id, p.revoked_at) for p in await session.scalars(select(Person))]
        invites = await session.scalar(select(func.count()).select_from(Invite))
    return (cases, people, invites)


async def test_member_using_staff_commands_learns_nothing(bot: RunningBot, team: Team) -> None:
    before = await snapshot(bot)
    seen = len(team.member.inbox())
    commands = [
        ("invite", None),
        ("invite", "admin"),
        ("cases", None),
        ("revoke", "Mina"),
        ("name", None),
    ]
    for command, arg in commands:
        await team.member.send_command(command, arg)
        await bot.api.wait_idle()
    assert [m.text for m in team.member.inbox()[seen:]] == [t("en", "not_understood")] * 5
    assert await snapshot(bot) == before
    assert not any("?start=" in (m.text or "") for m in team.member.inbox())


async def test_caseworker_using_admin_commands_is_refused(bot: RunningBot, team: Team) -> None:
    before = await snapshot(bot)
    for arg in ("admin", "caseworker"):
        await team.joon.send_command("invite", arg)
        await team.joon.wait_for_message(t("en", "not_allowed"))
    await team.joon.send_command("revoke", "Mina")
    await bot.api.wait_for(
        lambda: sum(m.text == t("en", "not_allowed") for m in team.joon.inbox()) == 3
    )
    await bot.api.wait_idle()
    assert await snapshot(bot) == before


async def test_forged_buttons_are_refused_without_effect(bot: RunningBot, team: Team) -> None:
    # Given a case of Mina's member, never alerted to Joon
    await ask(team.member, "money", "week", "rent")
    await team.mina.wait_for_message("Help request from")
    await bot.api.wait_idle()
    async with bot.core.sessions() as session:
        case_id = await session.scalar(select(Case.id))
    before = await snapshot(bot)
    await team.joon.send_command("menu")
    await team.joon.wait_for_message(t("en", "staff_help_caseworker"))
    # When Joon forges Claim and Resolve on it, and on a case that does not exist
    for data in (
        f"case:claim:{case_id}",
        f"case:resolve:{case_id}",
        "case:claim:doesnotexist0000000000",
        "case:claim:' OR 1=1 --",
        "rp",
    ):
        await team.joon.forge_press(data)
        await bot.api.wait_idle()
    # Then nothing changed and he was told no (or that the button is dead)
    assert await snapshot(bot) == before
    answers = [a["text"] for a in team.joon.answered_callbacks()][-5:]
    assert answers == [t("en", "not_allowed")] * 3 + [
        t("en", "stale_button"),
        t("en", "not_allowed"),
    ]
    # And a member forging a staff button gets only "no longer active"
    await team.member.forge_press(f"case:claim:{case_id}")
    await bot.api.wait_idle()
    assert team.member.answered_callbacks()[-1]["text"] == t("en", "stale_button")
    assert await snapshot(bot) == before


async def test_replying_to_a_message_that_is_not_an_alert_goes_nowhere(
    bot: RunningBot, team: Team
) -> None:
    help_message = team.joon.inbox()[-1]
    await team.joon.send_text("hello member", reply_to=help_message.message_id)
    await team.joon.wait_for_message(t("en", "reply_how"))
    await bot.api.wait_idle()
    assert not any("hello member" in (m.text or "") for m in team.member.inbox())
    assert pseudonym_of(team.member)  # the member is still there, just not reachable this way


async def test_staff_commands_without_their_argument_answer_with_the_usage(
    bot: RunningBot, team: Team
) -> None:
    for command, arg, key in (
        ("forget", None, "forget_usage"),
        ("revoke", None, "revoke_usage"),
        ("invite", "foo", "invite_usage_admin"),
    ):
        await team.admin.send_command(command, arg)
        await team.admin.wait_for_message(t("en", key))
    await team.mina.send_command("invite", "foo")
    await team.mina.wait_for_message(t("en", "invite_usage"))
