"""Enrolment, language, menu and the catch-alls every role shares."""

from __future__ import annotations

import logging
from dataclasses import replace

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.i18n import language_from_telegram, t
from bot.people import redeem_invite, set_language
from bot.schedules import start_schedule
from handlers import member, staff
from handlers.access import answer_stranger, identify_sender
from handlers.context import SafeContext
from handlers.render import edit_pressed, language_keyboard, member_menu, say, send
from handlers.unit import current_unit

log = logging.getLogger(__name__)


async def start(update: Update, context: SafeContext) -> None:
    """Enrol the sender with the invite in ``/start <token>``, or show the menu."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or update.effective_chat is None:
        return
    if context.actor is not None:
        await say(update, context, "already_enrolled")
        return
    token = context.args[0] if context.args else ""
    core, unit = context.core, current_unit()
    assert unit is not None
    actor = await redeem_invite(
        unit.session(),
        core.secrets,
        token,
        telegram_user_id=user.id,
        chat_id=update.effective_chat.id,
        language=language_from_telegram(user.language_code),
    )
    if actor is None:
        answer_stranger(update, context)
        return
    context.actor = actor
    if actor.is_member:
        start_schedule(unit.session(), core, actor.person_id)
    await unit.note_incoming(actor.person_id, message.message_id, at_once=False)
    await unit.commit()
    # The link's message leaves its maker's chat, and the newcomer's menu is set.
    context.wake_cleaner()
    await say(update, context, "language_prompt", language_keyboard())


async def choose_language(update: Update, context: SafeContext) -> None:
    """Save the language picked on the buttons; greet a newcomer."""
    query, actor = update.callback_query, context.require_actor()
    if query is None or query.data is None:
        return
    language = query.data.removeprefix("lang:")
    core = context.core
    session = context.session()
    fresh = await set_language(session, core.secrets, actor.person_id, language)
    await context.commit()
    await query.answer()
    first_time = not actor.language_chosen
    context.actor = actor = replace(
        actor, language=language, language_chosen=True, pseudonym=fresh or actor.pseudonym
    )
    context.wake_cleaner()  # the command menu follows the language
    await edit_pressed(query, t(language, "language_saved"))
    if not first_time:
        return
    if actor.is_member:
        lines = [
            t(language, k, pseudonym=actor.pseudonym)
            for k in ("welcome_name", "welcome_kept", "welcome_clears", "welcome_help")
        ]
        webapp_url = context.core.settings.webapp_url
        await send(update, context, "\n".join(lines), member_menu(language, webapp_url))
    else:
        role = t(language, f"role_{actor.role.value}")
        await say(update, context, "staff_enrolled", role=role, pseudonym=actor.pseudonym)
        if actor.display_name is None:
            await staff.ask_name(update, context)
        else:
            await staff.staff_help(update, context)


async def ask_language(update: Update, context: SafeContext) -> None:
    """Show the language buttons."""
    if update.callback_query is not None:
        await update.callback_query.answer()
    await say(update, context, "language_prompt", language_keyboard())


async def show_menu(update: Update, context: SafeContext) -> None:
    """Show the sender's buttons (members) or commands (staff)."""
    actor = context.require_actor()
    if actor.is_member:
        webapp_url = context.core.settings.webapp_url
        # With the Mini App on, the menu says plainly which path is end to end.
        title = "menu_title_private" if webapp_url else "menu_title"
        await say(update, context, title, member_menu(actor.language, webapp_url))
    else:
        await staff.staff_help(update, context)


async def cancel_outside_flows(update: Update, context: SafeContext) -> None:
    """Answer /cancel outside any conversation: drop a pending staff reply, if any."""
    if await staff.cancel_pending(context):
        await say(update, context, "cancelled")
    else:
        await say(update, context, "nothing_to_cancel")


async def stale_button(update: Update, context: SafeContext) -> None:
    """Answer a button that belongs to no running flow (old message or forged data)."""
    query = update.callback_query
    if query is not None:
        await query.answer(t(context.require_actor().language, "stale_button"))


async def free_message(update: Update, context: SafeContext) -> None:
    """A message outside any flow: a member's goes to their caseworker, staff's is routed
    as a reply; an unknown command is pointed at the menu. An enrolment step left
    unfinished (the language) is asked again, never fed by unrelated text."""
    message, actor = update.effective_message, context.require_actor()
    if message is not None and (message.text or "").startswith("/"):
        await say(update, context, "not_understood")
    elif actor.is_member:
        await member.relay_message(update, context)
    else:
        await staff.staff_text(update, context)
    if not actor.language_chosen and not actor.is_staff:
        await say(update, context, "language_prompt", language_keyboard())


async def edited_message(update: Update, context: SafeContext) -> None:
    """An edited text: a member's correction follows the words it corrects to staff, a
    staff member's follows their reply to the member. Nothing else reacts to edits."""
    actor = context.require_actor()
    if actor.is_member:
        await member.relay_correction(update, context)
    else:
        await staff.reply_correction(update, context)


async def on_error(update: object, context: SafeContext) -> None:
    """Log the failure without content and tell the person, kindly, in their language."""
    unit = current_unit()
    if unit is not None:
        # The failed handler's writes go; the note deleting the person's message stays.
        try:
            await unit.rollback()
        except Exception as exc:
            log.error("rollback after a failure failed: %s", type(exc).__name__)
    error = context.error
    # Only the type and where it happened: an exception's text can carry message content.
    log.error(
        "handler failed: %s",
        type(error).__name__,
        exc_info=(type(error), error, error.__traceback__) if error else None,
    )
    if isinstance(update, Update) and update.effective_chat is not None:
        try:
            await say(update, context, "error")
        except Exception as exc:  # the error reply itself failed; nothing more to do
            log.warning("could not send the error reply: %s", type(exc).__name__)


def register(app: Application) -> None:  # type: ignore[type-arg]
    """Access control first (group -2), then shared commands. Area modules add theirs in
    group 0; the safety words run in group -1, between the two."""
    app.add_handler(TypeHandler(Update, identify_sender), group=-2)
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("menu", show_menu))
    app.add_handler(CommandHandler("language", ask_language))
    app.add_handler(CallbackQueryHandler(choose_language, pattern=r"^lang:(ko|en|zh)$"))
    app.add_handler(CallbackQueryHandler(ask_language, pattern=r"^menu:language$"))
    app.add_error_handler(on_error)


def register_fallbacks(app: Application) -> None:  # type: ignore[type-arg]
    """Catch-alls, added after every area so they only see what nobody else took."""
    app.add_handler(CommandHandler("cancel", cancel_outside_flows))
    app.add_handler(CallbackQueryHandler(stale_button))
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, free_message))
    app.add_handler(
        MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.TEXT, edited_message)
    )
