"""Access control: runs before every other handler (group -1).

Who is writing is decided from the database by keyed hash, on every update. A stranger gets
one neutral line whatever they send, the same for a wrong, used or expired invite, so the
bot's answers reveal nothing about the organisation or whether an invite ever existed.
"""

from __future__ import annotations

import logging

from telegram import Chat, Update
from telegram.ext import ApplicationHandlerStop

from bot.people import find_actor
from handlers.context import SafeContext
from handlers.render import say

log = logging.getLogger(__name__)


def is_start_command(update: Update) -> bool:
    message = update.message
    return bool(
        message
        and message.text
        and message.text.split(maxsplit=1)[0]
        in (
            "/start",
            f"/start@{message.get_bot().username}",
        )
    )


async def identify_sender(update: Update, context: SafeContext) -> None:
    """Resolve the sender's role from the database; stop strangers here."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None or chat.type != Chat.PRIVATE or user.is_bot:
        # Groups, channels and other bots: never answer, so nothing is said where others read.
        raise ApplicationHandlerStop
    core = context.core
    async with core.sessions() as session:
        context.actor = await find_actor(session, core.secrets, user.id)
    if context.actor is not None or is_start_command(update):
        return
    await answer_stranger(update, context)
    raise ApplicationHandlerStop


async def answer_stranger(update: Update, context: SafeContext) -> None:
    """The one neutral line, for every kind of update a stranger can send."""
    if update.callback_query is not None:
        await update.callback_query.answer()
    if update.message is not None or update.callback_query is not None:
        await say(update, context, "stranger")
