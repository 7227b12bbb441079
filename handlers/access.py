"""Access control: runs before every other handler (group -2).

Who is writing is decided from the database by keyed hash, on every update. A stranger gets
one neutral line whatever they send, the same for a wrong, used or expired invite, so the
bot's answers reveal nothing about the organisation or whether an invite ever existed --
and at most once a day, sent in the background, so strangers (however many) cannot hold up
the updates of enrolled members.

A member's clear word and safety word are checked here, before the flood limit: a member
in danger who has been typing fast still raises the alert.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from telegram import Chat, MessageEntity, Update
from telegram.ext import ApplicationHandlerStop

from bot import activity
from bot.i18n import t
from bot.limits import Verdict
from bot.logs import remember_values
from bot.people import Actor, actor_of, find_person
from bot.safety import matches
from crypto.words import could_be_word
from handlers.context import STRANGERS_KEY, SafeContext
from handlers.render import language_of, say
from handlers.safety import AWAITING_WORD, act_on_word
from handlers.unit import current_unit

log = logging.getLogger(__name__)

# Word checks per member a minute, within or past the flood limit. Each costs one Argon2id
# derivation (~50 ms) and updates are handled one at a time, so this bounds what one
# account can add to everyone else's wait: 10 a minute is at most ~0.5 s a minute
# (bench/starvation_bench.py). A member in trouble sends a word among their first few lines.
WORD_CHECKS_PER_MINUTE = 10
STRANGER_QUIET_SECONDS = 24 * 3600
STRANGER_LINES_PER_MINUTE = 20
STRANGERS_REMEMBERED = 50_000


class StrangerDoor:
    """Which strangers were answered lately, in memory only and only by keyed lookup (never
    a Telegram id): each gets the neutral line at most once a day, and at most
    ``STRANGER_LINES_PER_MINUTE`` are answered a minute overall -- past that, silence, which
    tells a stranger nothing either."""

    def __init__(self) -> None:
        self._answered: OrderedDict[str, float] = OrderedDict()
        self._minute: list[float] = []

    def may_answer(self, key: str, now: float) -> bool:
        last = self._answered.get(key)
        if last is not None and now - last < STRANGER_QUIET_SECONDS:
            return False
        self._minute = [m for m in self._minute if now - m < 60.0]
        if len(self._minute) >= STRANGER_LINES_PER_MINUTE:
            return False
        self._minute.append(now)
        self._answered[key] = now
        self._answered.move_to_end(key)
        while len(self._answered) > STRANGERS_REMEMBERED:
            self._answered.popitem(last=False)
        return True


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
    activity.count("updates handled")
    remember_values(user.first_name, user.last_name, user.username)
    message = update.message
    edited = update.edited_message
    for seen in (message, edited):
        if seen is not None and seen.text:
            remember_values(seen.text)
    unit = current_unit()
    assert unit is not None
    unit.sender = person = await find_person(unit.session(), core.secrets, user.id)
    context.actor = actor = actor_of(person, core.secrets) if person is not None else None
    now = time.monotonic()
    if actor is None:
        key = core.secrets.pepper.user_lookup(user.id).hex()
        if is_start_command(update) and context.limiter.check(key, now) is Verdict.OK:
            return  # the start handler tries the invite
        answer_stranger(update, context)
        raise ApplicationHandlerStop
    if message is not None:
        # Both sides of every chat clear themselves; revealing media goes at once. Noted in
        # the update's transaction, committed with whatever the handler does.
        at_once = actor.is_member and any(getattr(message, kind, None) for kind in REVEALING)
        await unit.note_incoming(actor.person_id, message.message_id, at_once=at_once)
        if at_once:
            await unit.commit()
            context.wake_cleaner()
    await _check_words(update, context, actor, now)
    verdict = context.limiter.check(actor.person_id, now)
    if verdict is not Verdict.OK:
        if verdict is Verdict.FIRST_REFUSAL and update.message is not None:
            await say(update, context, "slow_down")
        elif update.callback_query is not None:
            await update.callback_query.answer()
        raise ApplicationHandlerStop


async def _check_words(update: Update, context: SafeContext, actor: Actor, now: float) -> None:
    """Before the flood limit: the clear word clears, the safety word alerts. Past the flood
    limit a member still gets word checks, but only so many a minute (each costs one
    Argon2id derivation): a phone stuck sending cannot hold everyone else up."""
    message = update.message
    if not actor.is_member or message is None or not message.text:
        return
    if context.user_data and context.user_data.get(AWAITING_WORD):
        return  # this text is the new word itself
    if not could_be_word(message.text):
        return  # long messages are never derived
    if context.word_limiter.check(actor.person_id, now) is not Verdict.OK:
        return
    context.word = await matches(context.core.secrets, actor, message.text)
    if context.word is not None:
        await act_on_word(update, context, context.word)


def answer_stranger(update: Update, context: SafeContext) -> None:
    """The one neutral line, for every kind of update a stranger can send: at most once a
    day each, and in the background, never holding up anyone else's update."""
    user = update.effective_user
    query = update.callback_query
    if query is not None:
        context.application.create_task(query.answer(), update=update)
    if user is None or (update.message is None and query is None):
        return
    door = context.application.bot_data[STRANGERS_KEY]
    key = context.core.secrets.pepper.user_lookup(user.id).hex()
    if not door.may_answer(key, time.monotonic()):
        return
    chat = update.effective_chat
    if chat is None:
        return
    text = t(language_of(update, context), "stranger")
    context.application.create_task(
        context.bot.send_message(chat.id, text, protect_content=True), update=update
    )
