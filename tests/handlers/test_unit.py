"""One unit of work per update (handlers/unit.py): a failed handler's writes go, but the
person's own message is still noted for deletion from their phone."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from bot.i18n import t
from handlers.unit import current_unit
from storage.models import Role
from tests.conftest import RunningBot

FAST_CLEAR = pytest.mark.bot_env(
    SAFERELAY_CLEAR_AFTER_MINUTES="0.02", SAFERELAY_SWEEP_SECONDS="0.2"
)


@FAST_CLEAR
async def test_a_failed_update_still_clears_the_persons_message(bot: RunningBot) -> None:
    member = bot.api.user(650001, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    # Given Telegram refusing the bot's answer (the handler fails before its commit)
    bot.api.fail_next("sendMessage", chat_id=member.chat_id, status=400)
    typed = await member.send_command("menu")
    await member.wait_for_message(t("en", "error"))
    # Then what the member typed still leaves their phone after their delay
    await bot.api.wait_for(lambda: typed.deleted, timeout=10)


async def test_a_relayed_message_is_one_commit(bot: RunningBot) -> None:
    member = bot.api.user(650002, "Member", language_code="en")
    await bot.enrol(member, Role.MEMBER, "en")
    commits: list[str] = []
    engine = bot.core.engine.sync_engine
    await bot.drained()
    await bot.api.wait_idle()

    def on_commit(_conn: object) -> None:
        # Only the update's own (the chat cleaner's runs may commit at any moment).
        if current_unit() is not None:
            commits.append("commit")

    event.listen(engine, "commit", on_commit)
    try:
        await member.send_text("a message for my caseworker, long enough not to be a word")
        await member.wait_for_message(t("en", "relay_sent"))
        await bot.api.wait_idle()
    finally:
        event.remove(engine, "commit", on_commit)
    # The access check, the relay (note + alerts queued) and the note of the bot's answer:
    # one commit for the update itself and one for the answer's id; before, four.
    assert 1 <= len(commits) <= 2
