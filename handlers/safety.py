"""Safety on the phone: quick exit, code and duress words, settings, erasure.

The word checks run in access control (handlers.access), before the flood limit and every
flow, so a code word typed in the middle of a check-in clears the chat instead of becoming
the note, and a duress word is noticed wherever it is typed -- while the flow itself goes on
exactly as for any other message, so what the member sees is the same byte for byte.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.chat import CLEAR_CHOICES, clear_all_now, delete_due, remember
from bot.erasure import erase_member
from bot.i18n import t
from bot.people import find_by_name
from bot.safety import WordKind, WordProblem, raise_duress, set_clear_after, set_word
from handlers.context import SafeContext
from handlers.render import edit_pressed, keyboard, say

log = logging.getLogger(__name__)

AWAITING_WORD = "awaiting_word"
WORD_PROMPT = "word_prompt"


def end_flows(update: Update, context: SafeContext) -> None:
    """Leave any check-in or help request in progress, as if the member pressed /cancel.

    PTB has no public way to end a conversation from outside it; this uses the handler's
    own state update (pinned PTB major version; covered by the quick-exit tests).
    """
    for handler in context.application.handlers.get(0, []):
        if isinstance(handler, ConversationHandler):
            key = handler._get_key(update)
            handler._update_state(ConversationHandler.END, key)
            job = handler.timeout_jobs.pop(key, None)
            if job is not None:
                job.schedule_removal()
    if context.user_data is not None:
        context.user_data.clear()


async def quick_exit(update: Update, context: SafeContext) -> None:
    """Delete everything still in the member's chat now: no question, no reply, no trace."""
    actor, core = context.require_actor(), context.core
    if not actor.is_member:
        return
    if update.callback_query is not None:
        await update.callback_query.answer()
    end_flows(update, context)
    session = context.session()
    await clear_all_now(session, actor.person_id)
    await context.commit()
    await delete_due(core, context.bot, person_id=actor.person_id)
    raise ApplicationHandlerStop


async def act_on_word(update: Update, context: SafeContext, word: WordKind) -> None:
    """A member's code word clears the chat; a duress word quietly alerts staff (called by
    access control, which recognised the word)."""
    if word is WordKind.CODE:
        await quick_exit(update, context)  # stops the update
        return
    core = context.core
    session = context.session()
    await raise_duress(session, core, context.require_actor().person_id)
    await context.commit()
    context.wake_outbox()
    # No stop: the message goes on to whatever would have handled it.


async def capture_word(update: Update, context: SafeContext) -> None:
    """The text after "set a word" is the new word: keep it, never pass it on."""
    message = update.effective_message
    if (
        message is None
        or not message.text
        or not context.user_data
        or not context.user_data.get(AWAITING_WORD)
    ):
        return
    await _save_word(update, context, message.text)
    raise ApplicationHandlerStop


async def show_settings(update: Update, context: SafeContext) -> None:
    """The member's safety settings, all with buttons."""
    actor = context.actor
    if actor is None or not actor.is_member:
        await say(update, context, "not_understood")
        return
    if update.callback_query is not None:
        await update.callback_query.answer()
    lang = actor.language
    rows = [
        [(t(lang, f"clear_{m}"), f"set:clear:{m}") for m in CLEAR_CHOICES],
        [(t(lang, "set_prompts"), "sch:menu")],
        [(t(lang, "set_code_word"), "set:word:code")],
        [(t(lang, "set_duress_word"), "set:word:duress")],
        [(t(lang, "remove_words"), "set:word:none")],
        [(t(lang, "forget_button"), "forget:me")],
    ]
    await say(update, context, "settings_title", keyboard(rows))


async def settings_choice(update: Update, context: SafeContext) -> None:
    """A press on the settings buttons."""
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.data is None or not actor.is_member:
        if query is not None:
            await query.answer(t(actor.language, "stale_button"))
        return
    _, what, value = query.data.split(":", 2)
    session = context.session()
    if what == "clear":
        await set_clear_after(session, actor.person_id, int(value))
        answer = t(actor.language, "clear_saved", choice=t(actor.language, f"clear_{value}"))
    elif value == "none":
        await set_word(session, core.secrets, actor.person_id, WordKind.CODE, None)
        await set_word(session, core.secrets, actor.person_id, WordKind.DURESS, None)
        answer = t(actor.language, "words_removed")
    else:
        if context.user_data is not None:
            context.user_data[AWAITING_WORD] = value
        answer = ""
    await context.commit()
    await query.answer(answer or None)
    if what == "word" and value != "none":
        prompt = await say(update, context, f"ask_{value}_word")
        if prompt is not None and context.user_data is not None:
            context.user_data[WORD_PROMPT] = prompt.message_id


async def _save_word(update: Update, context: SafeContext, word: str) -> None:
    actor, core = context.require_actor(), context.core
    assert context.user_data is not None
    kind = WordKind(context.user_data.pop(AWAITING_WORD))
    message = update.effective_message
    # Neither the word nor the question that explains what it does may stay on screen.
    on_screen = [context.user_data.pop(WORD_PROMPT, None)]
    if message is not None:
        on_screen.append(message.message_id)
    session = context.session()
    problem = await set_word(session, core.secrets, actor.person_id, kind, word)
    await remember(
        session,
        core.settings,
        actor.person_id,
        [m for m in on_screen if m is not None],
        at_once=True,
    )
    await context.commit()
    context.wake_cleaner()
    if problem is WordProblem.SAME_AS_OTHER:
        await say(update, context, "word_same")
    elif problem is not None:
        await say(update, context, "word_invalid")
    else:
        await say(update, context, f"{kind.value}_word_saved")


async def ask_forget(update: Update, context: SafeContext) -> None:
    """/forget: members erase themselves; admins name a member. Always one confirmation."""
    actor, core = context.require_actor(), context.core
    lang = actor.language
    if actor.is_member:
        target, name = actor.person_id, None
    elif actor.is_admin and context.args:
        session = context.session()
        found = await find_by_name(
            session, core.secrets, " ".join(context.args), include_revoked=True
        )
        await context.commit()
        members = [p for p in found if p.role == "member"]
        if not members:
            await say(update, context, "revoke_unknown")
            return
        target, name = members[0].id, members[0].pseudonym
    elif actor.is_admin:
        await say(update, context, "forget_usage")
        return
    else:
        await say(update, context, "not_allowed")
        return
    data = "forget:me" if target == actor.person_id else f"forget:p:{target}"
    rows = [[(t(lang, "forget_confirm"), data + ":yes"), (t(lang, "forget_keep"), "forget:no")]]
    key = "forget_question" if name is None else "forget_question_admin"
    if update.callback_query is not None:
        await update.callback_query.answer()
    await say(update, context, key, keyboard(rows), pseudonym=name or "")


async def confirm_forget(update: Update, context: SafeContext) -> None:
    """The confirmation press: erase, clear the chat, keep one anonymous count."""
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.data is None:
        return
    if query.data == "forget:no":
        await query.answer()
        await edit_pressed(query)
        return
    parts = query.data.split(":")
    target = actor.person_id if parts[1] == "me" else parts[2]
    if target != actor.person_id and not actor.is_admin:
        await query.answer(t(actor.language, "not_allowed"), show_alert=True)
        return
    if target == actor.person_id and not actor.is_member:
        await query.answer(t(actor.language, "stale_button"))
        return
    await query.answer()
    end_flows(update, context)
    session = context.session()
    erased = await erase_member(session, core.secrets, target, actor_id=actor.person_id)
    await context.commit()
    if not erased:
        await say(update, context, "revoke_unknown")
        return
    context.forget_recipient(target)
    context.wake_outbox()
    context.scrub()
    if target != actor.person_id:
        await say(update, context, "forget_done_admin")
    # Their chat now, rather than at the next sweep; the row goes once it is clear.
    await delete_due(core, context.bot, person_id=target)
    context.wake_cleaner()


def register(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    app.add_handler(CommandHandler("clear", quick_exit), group=-1)
    app.add_handler(CallbackQueryHandler(quick_exit, pattern=r"^menu:clear$"), group=-1)
    app.add_handler(
        MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND, capture_word),
        group=-1,
    )
    app.add_handler(CommandHandler("settings", show_settings))
    app.add_handler(CallbackQueryHandler(show_settings, pattern=r"^menu:settings$"))
    app.add_handler(
        CallbackQueryHandler(
            settings_choice, pattern=r"^set:(clear:(2|10|60|1440)|word:(code|duress|none))$"
        )
    )
    app.add_handler(CommandHandler("forget", ask_forget))
    app.add_handler(CallbackQueryHandler(ask_forget, pattern=r"^forget:me$"))
    app.add_handler(
        CallbackQueryHandler(
            confirm_forget, pattern=r"^forget:(no|me:yes|p:[A-Za-z0-9_-]{1,40}:yes)$"
        )
    )
