"""The audit trail of a real day: what staff did through Telegram, in ids only."""

from __future__ import annotations

from sqlalchemy import select, text

from bot.audit import check_chain
from bot.i18n import t
from sandbox import FakeUser
from storage.models import AuditEntry, Case, Person
from tests.conftest import RunningBot, eventually
from tests.handlers.conftest import Team, ask, pseudonym_of, revoke


async def person_id(bot: RunningBot, user: FakeUser) -> str:
    lookup = bot.core.secrets.pepper.user_lookup(user.user_id)
    async with bot.core.sessions() as session:
        found = await session.scalar(select(Person.id).where(Person.tg_lookup == lookup))
    assert found is not None
    return found


async def test_claims_resolves_and_revokes_are_audited_without_names_or_words(
    bot: RunningBot, team: Team
) -> None:
    admin_id, mina_id = await person_id(bot, team.admin), await person_id(bot, team.mina)
    joon_id, member_id = await person_id(bot, team.joon), await person_id(bot, team.member)
    # Given a help request from Mina's member
    await ask(team.member, "medical", "today", "Fever since Monday, no papers")
    alert = await team.mina.wait_for_message("Help request from")
    await bot.drained()
    # When Mina claims and resolves it, and the admin removes Joon
    await team.mina.press(t("en", "btn_claim"), message=alert)
    await team.mina.press(t("en", "btn_resolve"), message=alert)

    async def resolved() -> bool:
        async with bot.core.sessions() as session:
            return await session.scalar(select(Case.status)) == "resolved"

    await eventually(resolved, what="the request resolved")
    await revoke(team.admin, "joon", "Joon")

    # Then the trail holds each action with who did it and to which row
    async with bot.core.sessions() as session:
        case_id = await session.scalar(select(Case.id))
        rows = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        check = await check_chain(session)
        raw = repr(list(await session.execute(text("SELECT * FROM audit"))))
    done = [(r.actor_id, r.action, r.object_id) for r in rows]
    assert (mina_id, "enrol", member_id) in done  # she made the member's invite
    assert done[-3:] == [
        (mina_id, "claim", case_id),
        (mina_id, "resolve", case_id),
        (admin_id, "revoke", joon_id),
    ]
    assert check.broken is None and check.count == len(rows)
    # ... and no name, pseudonym or word of the member's anywhere in it
    for secret in ("Fever", "Mina", "Joon", "Coordinator", pseudonym_of(team.member), "medical"):
        assert secret not in raw
