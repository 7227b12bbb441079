"""Member flows: the wellbeing check-in (from /checkin, the menu, or one tap on a prompt)
and the help request.

Answers in progress live only in memory (PTB's user_data, never persisted) until the last
step seals them to the team key, so a half-finished check-in leaves nothing on disk.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.cases import CATEGORIES, URGENCIES, HelpRequest, open_case
from bot.cases import TEXT_LIMIT as HELP_TEXT_LIMIT
from bot.chat import remember
from bot.checkins import NOTE_LIMIT, CheckInAnswers, submit_checkin
from bot.i18n import t
from bot.relay import TEXT_LIMIT as RELAY_LIMIT
from bot.relay import correct_from_member, relay_from_member
from bot.schedules import not_now
from handlers.context import SafeContext
from handlers.render import edit_pressed, keyboard, say

log = logging.getLogger(__name__)

HEALTH, THREAT, NOTE = range(3)
CATEGORY_PATTERN = r"^ask:c:(" + "|".join(CATEGORIES) + r")$"
URGENCY_PATTERN = r"^ask:u:(" + "|".join(URGENCIES) + r")$"
DRAFT = "checkin"


def _draft(context: SafeContext, name: str = DRAFT) -> dict[str, Any]:
    """The answers of a flow in progress: in memory only, never on disk."""
    user_data = context.user_data
    assert user_data is not None
    draft = user_data.setdefault(name, {})
    assert isinstance(draft, dict)
    return draft


def _forget_draft(context: SafeContext, name: str = DRAFT) -> None:
    if context.user_data is not None:
        context.user_data.pop(name, None)


async def optional_text(
    update: Update, context: SafeContext, *, limit: int, empty_key: str, too_long_key: str
) -> tuple[bool, str | None]:
    """The last, optional step of a flow: (True, None) for Skip, (True, text) for a usable
    text, (False, None) when the member was told what to send instead."""
    if update.callback_query is not None:
        await update.callback_query.answer()
        return True, None
    message = update.effective_message
    text = (message.text or "").strip() if message else ""
    if not text:
        await say(update, context, empty_key)
        return False, None
    if len(text) > limit:
        await say(update, context, too_long_key, limit=limit)
        return False, None
    return True, text


async def start_checkin(update: Update, context: SafeContext) -> int:
    """Ask the health question with five buttons."""
    actor = context.require_actor()
    if update.callback_query is not None:
        await update.callback_query.answer()
    if not actor.is_member:
        await say(update, context, "not_understood")
        return ConversationHandler.END
    lang = actor.language
    buttons = [[(t(lang, f"checkin_health_{n}"), f"ci:h:{n}")] for n in range(1, 6)]
    message = await say(update, context, "checkin_health", keyboard(buttons))
    _forget_draft(context)
    if message is not None:
        _draft(context)["prompt"] = (message.chat_id, message.message_id)
    return HEALTH


def _threat_buttons(lang: str) -> list[list[tuple[str, str]]]:
    return [[(t(lang, "yes"), "ci:t:yes"), (t(lang, "no"), "ci:t:no")]]


async def start_from_prompt(update: Update, context: SafeContext) -> int:
    """One tap on a prompt's health button is the first answer: the prompt itself becomes
    the next question. From now on it holds an answer, so it clears after the member's own
    delay, not the longer stay a bare prompt gets (bot/chat.py, PROMPT_STAYS)."""
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.data is None or query.message is None:
        return ConversationHandler.END
    if not actor.is_member:
        await query.answer(t(actor.language, "stale_button"))
        return ConversationHandler.END
    await query.answer()
    _forget_draft(context)
    draft = _draft(context)
    draft["health"] = int(query.data.rsplit(":", 1)[1])
    draft["prompt"] = (query.message.chat.id, query.message.message_id)
    session = context.session()
    await remember(session, core.settings, actor.person_id, [query.message.message_id])
    await context.commit()
    lang = actor.language
    await edit_pressed(query, t(lang, "checkin_threat"), keyboard(_threat_buttons(lang)))
    return THREAT


async def prompt_later(update: Update, context: SafeContext) -> None:
    """ "Not now" on a prompt: it leaves the chat, and is asked again later (bot/schedules)."""
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.message is None:
        return
    if not actor.is_member:
        await query.answer(t(actor.language, "stale_button"))
        return
    session = context.session()
    await not_now(session, core.secrets, actor.person_id)
    await remember(
        session, core.settings, actor.person_id, [query.message.message_id], at_once=True
    )
    await context.commit()
    await query.answer(t(actor.language, "prompt_later"))
    context.wake_cleaner()


def button_step(
    *,
    draft: str,
    field: str,
    value: Callable[[str], object],
    stay: int,
    then: int,
    prompt: str,
    buttons: Callable[[str], list[list[tuple[str, str]]]],
) -> Callable[[Update, SafeContext], Coroutine[Any, Any, int]]:
    """One step of a flow answered with a button: keep the pressed value (the part of the
    callback data after the last colon), turn the same message into the next question."""

    async def step(update: Update, context: SafeContext) -> int:
        query, lang = update.callback_query, context.require_actor().language
        if query is None or query.data is None:
            return stay
        await query.answer()
        _draft(context, draft)[field] = value(query.data.rsplit(":", 1)[1])
        await edit_pressed(query, t(lang, prompt), keyboard(buttons(lang)))
        return then

    return step


def _skip(data: str) -> Callable[[str], list[list[tuple[str, str]]]]:
    return lambda lang: [[(t(lang, "checkin_skip"), data)]]


answer_health = button_step(
    draft=DRAFT,
    field="health",
    value=int,
    stay=HEALTH,
    then=THREAT,
    prompt="checkin_threat",
    buttons=_threat_buttons,
)
answer_threat = button_step(
    draft=DRAFT,
    field="threat",
    value=lambda v: v == "yes",
    stay=THREAT,
    then=NOTE,
    prompt="checkin_note",
    buttons=_skip("ci:skip"),
)


async def answer_note(update: Update, context: SafeContext) -> int:
    """Take the note (or Skip), seal and store the check-in, thank the member."""
    done, note = await optional_text(
        update,
        context,
        limit=NOTE_LIMIT,
        empty_key="checkin_note_text_only",
        too_long_key="checkin_note_too_long",
    )
    return await _finish(update, context, note) if done else NOTE


async def _finish(update: Update, context: SafeContext, note: str | None) -> int:
    actor, draft, core = context.require_actor(), _draft(context), context.core
    if "health" not in draft or "threat" not in draft:
        await say(update, context, "stale_button")
        _forget_draft(context)
        return ConversationHandler.END
    answers = CheckInAnswers(health=draft["health"], threat=draft["threat"], note=note)
    session = context.session()
    await submit_checkin(session, core.secrets, actor.person_id, answers)
    await context.commit()
    context.wake_outbox()
    prompt = _draft(context).get("prompt")
    _forget_draft(context)
    await _confirm(update, context, prompt, "checkin_thanks")
    return ConversationHandler.END


async def _close_prompt(context: SafeContext, language: str, key: str | None = None) -> None:
    """Take the buttons off the prompt, so an old question cannot be answered twice."""
    prompt = _draft(context).get("prompt")
    if prompt is None:
        return
    chat_id, message_id = prompt
    try:
        if key is None:
            await context.bot.edit_message_reply_markup(chat_id, message_id, reply_markup=None)
        else:
            await context.bot.edit_message_text(t(language, key), chat_id, message_id)
    except TelegramError:  # the prompt may be gone already (deleted by the member)
        # Not logged: a dated line would say when a check-in happened (bot/activity.py).
        pass


async def _confirm(
    update: Update, context: SafeContext, prompt: tuple[int, int] | None, key: str
) -> None:
    """Say a flow is done. Where the member is looking at the prompt -- they pressed its
    button, or typed the message right below it -- the prompt itself becomes the
    confirmation (one edit: no new message to send, note and clear later). Otherwise the
    prompt loses its buttons and the confirmation is a new message."""
    text = t(context.require_actor().language, key)
    message = update.effective_message
    if prompt is not None:
        chat_id, message_id = prompt
        in_view = update.callback_query is not None or (
            message is not None and message.message_id == message_id + 1
        )
        try:
            if in_view:
                await context.bot.edit_message_text(text, chat_id, message_id)
                return
            await context.bot.edit_message_reply_markup(chat_id, message_id, reply_markup=None)
        except TelegramError:  # gone already (deleted by the member); not logged, as above
            pass
    await say(update, context, key)


async def remind_buttons(update: Update, context: SafeContext) -> int | None:
    """Typed text where a button is expected: say so, stay in place."""
    await say(update, context, "use_buttons")
    return None


async def cancel_checkin(update: Update, context: SafeContext) -> int:
    """Leave the check-in; nothing is stored."""
    await _close_prompt(context, context.require_actor().language)
    _forget_draft(context)
    await say(update, context, "cancelled")
    return ConversationHandler.END


async def expire_checkin(update: Update, context: SafeContext) -> None:
    """A check-in left half-way: drop the answers and say so on the prompt."""
    actor = context.actor
    await _close_prompt(context, actor.language if actor else "ko", "checkin_expired")
    _forget_draft(context)


ASK_CATEGORY, ASK_URGENCY, ASK_TEXT = range(10, 13)
ASK_DRAFT = "ask"


async def start_ask(update: Update, context: SafeContext) -> int:
    """Ask what the help is about, with buttons."""
    actor = context.require_actor()
    if update.callback_query is not None:
        await update.callback_query.answer()
    if not actor.is_member:
        await say(update, context, "not_understood")
        return ConversationHandler.END
    lang = actor.language
    rows = [[(t(lang, f"cat_{c}"), f"ask:c:{c}")] for c in CATEGORIES]
    message = await say(update, context, "ask_category", keyboard(rows))
    _forget_draft(context, ASK_DRAFT)
    if message is not None:
        _draft(context, ASK_DRAFT)["prompt"] = (message.chat_id, message.message_id)
    return ASK_CATEGORY


answer_category = button_step(
    draft=ASK_DRAFT,
    field="category",
    value=str,
    stay=ASK_CATEGORY,
    then=ASK_URGENCY,
    prompt="ask_urgency",
    buttons=lambda lang: [[(t(lang, f"urg_{u}"), f"ask:u:{u}") for u in URGENCIES]],
)
answer_urgency = button_step(
    draft=ASK_DRAFT,
    field="urgency",
    value=str,
    stay=ASK_URGENCY,
    then=ASK_TEXT,
    prompt="ask_text",
    buttons=_skip("ask:skip"),
)


async def answer_ask_text(update: Update, context: SafeContext) -> int:
    """Take the words (or Skip), open the case, alert staff."""
    done, text = await optional_text(
        update,
        context,
        limit=HELP_TEXT_LIMIT,
        empty_key="relay_text_only",
        too_long_key="ask_text_too_long",
    )
    if not done:
        return ASK_TEXT
    actor, core, draft = context.require_actor(), context.core, _draft(context, ASK_DRAFT)
    _forget_draft(context, ASK_DRAFT)
    if "category" not in draft or "urgency" not in draft:
        await say(update, context, "stale_button")
        return ConversationHandler.END
    request = HelpRequest(draft["category"], draft["urgency"], text)
    session = context.session()
    await open_case(session, core, actor.person_id, request)
    await context.commit()
    context.wake_outbox()
    await _confirm(update, context, draft.get("prompt"), "ask_sent")
    return ConversationHandler.END


async def cancel_ask(update: Update, context: SafeContext) -> int:
    """Leave the help request; nothing is stored or sent."""
    _forget_draft(context, ASK_DRAFT)
    await say(update, context, "cancelled")
    return ConversationHandler.END


async def relay_message(update: Update, context: SafeContext) -> None:
    """Free text from a member goes to their caseworker; anything else is explained."""
    message, actor, core = update.effective_message, context.require_actor(), context.core
    if message is None:
        return
    text = (message.text or "").strip()
    if not text:
        # Photos, documents, locations, voice: never stored or passed on (they can
        # identify a place or a person), and the member is told what works.
        await say(update, context, "relay_text_only")
        return
    if len(text) > RELAY_LIMIT:
        await say(update, context, "relay_too_long", limit=RELAY_LIMIT)
        return
    session = context.session()
    await relay_from_member(
        session, core.secrets, actor.person_id, text, message_id=message.message_id
    )
    await context.commit()
    context.wake_outbox()
    await say(update, context, "relay_sent")


async def relay_correction(update: Update, context: SafeContext) -> None:
    """A member edited a message that was passed on: the correction follows it."""
    message, actor, core = update.edited_message, context.require_actor(), context.core
    text = ((message.text if message else None) or "").strip()
    if message is None or not text or len(text) > RELAY_LIMIT:
        return
    session = context.session()
    sent = await correct_from_member(
        session, core.secrets, actor.person_id, message.message_id, text
    )
    await context.commit()
    if sent:
        context.wake_outbox()


def register(app: Application) -> None:  # type: ignore[type-arg]
    timeout = app.bot_data["core"].settings.checkin_timeout_minutes * 60
    typed: Any = MessageHandler(filters.UpdateType.MESSAGE & ~filters.COMMAND, remind_buttons)
    # per_message=False on purpose: one check-in per member, whose buttons are edited in
    # place. PTB warns that buttons are then not tracked per message, which is what we want.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        checkin: Any = ConversationHandler(
            entry_points=[
                CommandHandler("checkin", start_checkin),
                CallbackQueryHandler(start_checkin, pattern=r"^menu:checkin$"),
                CallbackQueryHandler(start_from_prompt, pattern=r"^ci:p:[1-5]$"),
            ],
            states={
                HEALTH: [CallbackQueryHandler(answer_health, pattern=r"^ci:h:[1-5]$"), typed],
                THREAT: [CallbackQueryHandler(answer_threat, pattern=r"^ci:t:(yes|no)$"), typed],
                NOTE: [
                    CallbackQueryHandler(answer_note, pattern=r"^ci:skip$"),
                    MessageHandler(filters.UpdateType.MESSAGE & ~filters.COMMAND, answer_note),
                ],
                ConversationHandler.TIMEOUT: [
                    MessageHandler(filters.ALL, expire_checkin),
                    CallbackQueryHandler(expire_checkin),
                ],
            },
            fallbacks=[CommandHandler("cancel", cancel_checkin)],
            allow_reentry=True,
            conversation_timeout=timeout,
            name="checkin",
        )
        ask: Any = ConversationHandler(
            entry_points=[
                CommandHandler("ask", start_ask),
                CallbackQueryHandler(start_ask, pattern=r"^menu:ask$"),
            ],
            states={
                ASK_CATEGORY: [
                    CallbackQueryHandler(answer_category, pattern=CATEGORY_PATTERN),
                    typed,
                ],
                ASK_URGENCY: [CallbackQueryHandler(answer_urgency, pattern=URGENCY_PATTERN), typed],
                ASK_TEXT: [
                    CallbackQueryHandler(answer_ask_text, pattern=r"^ask:skip$"),
                    MessageHandler(filters.UpdateType.MESSAGE & ~filters.COMMAND, answer_ask_text),
                ],
            },
            fallbacks=[CommandHandler("cancel", cancel_ask)],
            allow_reentry=True,
            conversation_timeout=timeout,
            name="ask",
        )
    app.add_handler(checkin)
    app.add_handler(ask)
    app.add_handler(CallbackQueryHandler(prompt_later, pattern=r"^ci:later$"))
