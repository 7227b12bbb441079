"""Access control: runs before every other handler (group -2).

Who is writing is decided from the database by keyed hash, on every update. A stranger gets
one neutral line whatever they send, the same for a wrong, used or expired invite, so the
bot's answers reveal nothing about the organisation or whether an invite ever existed.
"""

from __future__ import annotations

import logging
import time

from telegram import Chat, MessageEntity, Update
from telegram.ext import ApplicationHandlerStop

from bot.chat import remember
from bot.limits import Verdict
from bot.logs import remember_values
from bot.people import find_actor
from handlers.context import SafeContext
from handlers.render import say

log = logging.getLogger(__name__)


def is_start_command(update: Update) -> bool:
    """The same test PTB's CommandHandler applies: a bot_command entity at the start naming
    /start (with this bot's username, in any case). A stranger's message that merely looks
    like /start gets the stranger line, not a handler that expects an enrolled sender."""
    message = update.message
    if message is None or not message.text or not message.entities:
        return False
    entity = message.entities[0]
    if entity.type != MessageEntity.BOT_COMMAND or entity.offset != 0:
        return False
    command, _, mention = message.text[1 : entity.length].partition("@")
    username = message.get_bot().username or ""
    return command.lower() == "start" and (not mention or mention.lower() == username.lower())


# Message kinds that can identify a place or a person: never stored or passed on, and
# taken out of the member's chat at once.
REVEALING = (
    "location",
    "venue",
    "contact",
    "document",
    "photo",
    "video",
    "voice",
    "video_note",
    "audio",
    "sticker",
    "animation",
)


async def identify_sender(update: Update, context: SafeContext) -> None:
    """Resolve the sender's role from the database; stop strangers and floods here.

    Fails closed: PTB goes on to the next handler group after an exception, so any failure
    in here stops the update instead.
    """
    try:
        await _identify(update, context)
    except ApplicationHandlerStop:
        raise
    except Exception as exc:
        log.error("access control failed, update dropped: %s", type(exc).__name__, exc_info=exc)
        raise ApplicationHandlerStop from None


async def _identify(update: Update, context: SafeContext) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None or chat.type != Chat.PRIVATE or user.is_bot:
        # Groups, channels and other bots: never answer, so nothing is said where others read.
        raise ApplicationHandlerStop
    query = update.callback_query
    if query is not None and not query.data:
        # PTB's pattern handlers all match a press without data: nobody may see one.
        await query.answer()
        raise ApplicationHandlerStop
    core = context.core
    remember_values(user.first_name, user.last_name, user.username)
    message = update.message
    if message is not None and message.text:
        remember_values(message.text)
    async with core.sessions() as session:
        context.actor = actor = await find_actor(session, core.secrets, user.id)
        key = actor.person_id if actor else core.secrets.pepper.user_lookup(user.id).hex()
        verdict = context.limiter.check(key, time.monotonic())
    if actor is not None and actor.is_member and message is not None:
        # Both sides of a member's chat clear themselves; revealing media goes at once.
        at_once = any(getattr(message, kind, None) for kind in REVEALING)
        async with core.sessions() as session, session.begin():
            await remember(
                session,
                actor.person_id,
                [message.message_id],
                core.settings.clear_after_minutes,
                at_once=at_once,
            )
        if at_once:
            context.wake_cleaner()
    if verdict is not Verdict.OK:
        if verdict is Verdict.FIRST_REFUSAL and actor is not None and update.message is not None:
            await say(update, context, "slow_down")
        elif update.callback_query is not None:
            await update.callback_query.answer()
        log.info("flood limit reached")
        raise ApplicationHandlerStop
    if actor is not None or is_start_command(update):
        return
    await answer_stranger(update, context)
    raise ApplicationHandlerStop


async def answer_stranger(update: Update, context: SafeContext) -> None:
    """The one neutral line, for every kind of update a stranger can send."""
    if update.callback_query is not None:
        await update.callback_query.answer()
    if update.message is not None or update.callback_query is not None:
        await say(update, context, "stranger")
