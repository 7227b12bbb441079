"""The admin's approval of a Mini App device key, through Telegram (the sandbox)."""

from __future__ import annotations

import nacl.public

from bot.devices import approved_readers, register_device
from bot.i18n import t
from bot.people import find_actor
from crypto.devices import fingerprint
from tests.conftest import RunningBot, eventually
from tests.handlers.conftest import Team


async def _register(bot: RunningBot, user_id: int, key: bytes) -> str:
    core = bot.core
    async with core.sessions() as session, session.begin():
        actor = await find_actor(session, core.secrets, user_id)
        assert actor is not None
        _, device_id = await register_device(session, core.secrets, actor, key)
    bot.app.bot_data["sender"].wake()
    return str(device_id)


async def _readers(bot: RunningBot, person_ids: list[str]) -> list[bytes]:
    async with bot.core.sessions() as session:
        return [r.public_key for r in await approved_readers(session, person_ids)]


async def test_admin_approves_after_comparing_the_fingerprint(bot: RunningBot, team: Team) -> None:
    # Given Mina's page registered its key
    key = bytes(nacl.public.PrivateKey.generate().public_key)
    await _register(bot, team.mina.user_id, key)
    async with bot.core.sessions() as session:
        mina = await find_actor(session, bot.core.secrets, team.mina.user_id)
    assert mina is not None

    # Then the admin is asked, with the fingerprint her phone shows; a caseworker is not
    question = await team.admin.wait_for_message(fingerprint(key))
    assert "Mina" in (question.text or "")
    assert not any(fingerprint(key) in (m.text or "") for m in team.joon.inbox())
    assert await _readers(bot, [mina.person_id]) == []

    # When the admin presses Approve
    await bot.drained()
    await team.admin.press(t("en", "btn_device_approve"), message=question)

    # Then the key is a reader, and the question says what was done
    await team.admin.wait_for_message(t("en", "device_approved", fingerprint=fingerprint(key)))
    await eventually(lambda: _has(bot, mina.person_id, key), what="the key approved")


async def _has(bot: RunningBot, person_id: str, key: bytes) -> bool:
    return key in await _readers(bot, [person_id])
