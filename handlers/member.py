"""Member flows: the wellbeing check-in.

Answers in progress live only in memory (PTB's user_data, never persisted) until the last
step seals them to the team key, so a half-finished check-in leaves nothing on disk.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.checkins import NOTE_LIMIT, CheckInAnswers, record_checkin
from bot.i18n import t
from handlers.context import SafeContext
from handlers.render import keyboard, say

log = logging.getLogger(__name__)

HEALTH, THREAT, NOTE = range(3)
DRAFT = "checkin"


def _draft(context: SafeContext) -> dict[str, Any]:
    user_data = context.user_data
    assert user_data is not None
    draft = user_data.setdefault(DRAFT, {})
    assert isinstance(draft, dict)
    return draft


def _forget_draft(context: SafeContext) -> None:
    if context.user_data is not None:
        context.user_data.pop(DRAFT, None)


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


async def answer_health(update: Update, context: SafeContext) -> int:
    """Keep the health answer; ask about the threat of being sent back."""
    query, lang = update.callback_query, context.require_actor().language
    if query is None or query.data is None:
        return HEALTH
    await query.answer()
    _draft(context)["health"] = int(query.data.rsplit(":", 1)[1])
    await query.edit_message_text(
        t(lang, "checkin_threat"),
        reply_markup=keyboard([[(t(lang, "yes"), "ci:t:yes"), (t(lang, "no"), "ci:t:no")]]),
    )
    return THREAT


async def answer_threat(update: Update, context: SafeContext) -> int:
    """Keep the threat answer; offer an optional note."""
    query, lang = update.callback_query, context.require_actor().language
    if query is None or query.data is None:
        return THREAT
    await query.answer()
    _draft(context)["threat"] = query.data.endswith(":yes")
    await query.edit_message_text(
        t(lang, "checkin_note"),
        reply_markup=keyboard([[(t(lang, "checkin_skip"), "ci:skip")]]),
    )
    return NOTE


async def answer_note(update: Update, context: SafeContext) -> int:
    """Take the note (or Skip), seal and store the check-in, thank the member."""
    note: str | None = None
    if update.callback_query is not None:
        await update.callback_query.answer()
    else:
        message = update.effective_message
        note = (message.text or "").strip() if message else ""
        if not note:
            await say(update, context, "checkin_note_text_only")
            return NOTE
        if len(note) > NOTE_LIMIT:
            await say(update, context, "checkin_note_too_long", limit=NOTE_LIMIT)
            return NOTE
    return await _finish(update, context, note)


async def _finish(update: Update, context: SafeContext, note: str | None) -> int:
    actor, draft, core = context.require_actor(), _draft(context), context.core
    if "health" not in draft or "threat" not in draft:
        await say(update, context, "stale_button")
        _forget_draft(context)
        return ConversationHandler.END
    answers = CheckInAnswers(health=draft["health"], threat=draft["threat"], note=note)
    async with core.sessions() as session, session.begin():
        await record_checkin(session, core.secrets.team_sealer, actor.person_id, answers)
    log.info("stored a check-in")
    await _close_prompt(context, actor.language)
    _forget_draft(context)
    await say(update, context, "checkin_thanks")
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
    except Exception as exc:  # the prompt may be gone already (deleted by the member)
        log.debug("could not close a check-in prompt: %s", type(exc).__name__)


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
    app.add_handler(checkin)
