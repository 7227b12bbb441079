"""A staff phone waiting for approval, as the chat shows it (the sandbox): a neutral line
with an Open button to each admin's page, where the fingerprint is computed and the approval
signed. Nothing to compare is in the chat, and nothing in it approves a key."""

from __future__ import annotations

import nacl.public
import nacl.signing
import pytest

from bot.devices import approved_readers, register_device
from bot.i18n import t
from bot.people import find_actor
from crypto.devices import fingerprint
from tests.conftest import RunningBot
from tests.handlers.conftest import Team

pytestmark = pytest.mark.bot_env(SAFERELAY_WEBAPP_URL="http://127.0.0.1/app/")


async def test_admins_are_told_a_phone_waits_with_an_open_button_only(
    bot: RunningBot, team: Team
) -> None:
    # Given Mina's page registered its keys
    key = bytes(nacl.public.PrivateKey.generate().public_key)
    signing = bytes(nacl.signing.SigningKey.generate().verify_key)
    core = bot.core
    async with core.sessions() as session, session.begin():
        mina = await find_actor(session, core.secrets, team.mina.user_id)
        assert mina is not None
        await register_device(
            session, core.secrets, mina, key, signing, webapp_url="http://127.0.0.1/app/"
        )
    bot.app.bot_data["sender"].wake()

    # Then the admin is told, neutrally, with an Open button to their page; a caseworker not
    notice = await team.admin.wait_for_message(t("en", "device_waiting"))
    assert [b["web_app"]["url"] for row in notice.inline_keyboard() for b in row] == [
        "http://127.0.0.1/app/staff.en.html"
    ]
    assert fingerprint(key, signing) not in (notice.text or "")
    assert "Mina" not in (notice.text or "")
    assert not any(t("en", "device_waiting") in (m.text or "") for m in team.joon.inbox())
    # And nothing in the chat made it a reader
    async with core.sessions() as session:
        assert await approved_readers(session, core.secrets.team_verify_key, [mina.person_id]) == []
