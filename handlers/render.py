"""Sending replies: one place for language, protect_content and keyboards."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import CallbackQuery, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest

from bot.chat import remember
from bot.delivery import WEBAPP_BUTTON, inline_button
from bot.i18n import LANGUAGE_NAMES, LANGUAGES, language_from_telegram, t
from handlers.context import SafeContext
from handlers.unit import current_unit

log = logging.getLogger(__name__)


def keyboard(rows: Sequence[Sequence[tuple[str, str]]]) -> InlineKeyboardMarkup:
    """Inline keyboard from rows of (label, callback data)."""
    return InlineKeyboardMarkup(
        [[inline_button(label, data) for label, data in row] for row in rows]
    )


def member_page(webapp_url: str, language: str) -> str:
    """The member's Mini App page in their language (webapp/routes.py serves one per language)."""
    return f"{webapp_url}member.{language}.html"


def staff_page(webapp_url: str, language: str) -> str:
    return f"{webapp_url}staff.{language}.html"


def language_keyboard() -> InlineKeyboardMarkup:
    return keyboard([[(LANGUAGE_NAMES[code], f"lang:{code}") for code in LANGUAGES]])


def member_menu(language: str, webapp_url: str | None = None) -> InlineKeyboardMarkup:
    private = (
        [
            [
                (
                    t(language, "menu_write_privately"),
                    f"{WEBAPP_BUTTON}{member_page(webapp_url, language)}",
                )
            ]
        ]
        if webapp_url
        else []
    )
    return keyboard(
        [
            *private,
            [(t(language, "menu_checkin"), "menu:checkin")],
            [(t(language, "menu_ask"), "menu:ask")],
            [(t(language, "menu_notices"), "menu:notices")],
            [(t(language, "menu_clear"), "menu:clear")],
            [
                (t(language, "menu_settings"), "menu:settings"),
                (t(language, "menu_language"), "menu:language"),
            ],
        ]
    )


async def send(
    update: Update,
    context: SafeContext,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    protect: bool = True,
) -> Message | None:
    """Send ``text`` to the chat of this update, to be deleted after the person's delay
    (every chat clears itself). Content is protected from forwarding and saving: a phone may
    be inspected, and a forwarded copy outlives the chat -- except where staff must pass a
    message on (``protect=False``: an invite link)."""
    chat = update.effective_chat
    if chat is None:
        return None
    sent = await context.bot.send_message(
        chat_id=chat.id, text=text, reply_markup=markup, protect_content=protect
    )
    actor = context.actor
    if actor is not None:
        core, unit = context.core, current_unit()
        if unit is not None:  # committed with the rest of the update
            await remember(
                unit.session(), core.settings, actor.person_id, [sent.message_id], fresh=True
            )
        else:
            async with core.sessions() as session, session.begin():
                await remember(
                    session, core.settings, actor.person_id, [sent.message_id], fresh=True
                )
    return sent


async def say(
    update: Update,
    context: SafeContext,
    key: str,
    markup: InlineKeyboardMarkup | None = None,
    **values: object,
) -> Message | None:
    """Send the catalogue entry ``key`` in the sender's language."""
    return await send(update, context, t(language_of(update, context), key, **values), markup)


def language_of(update: Update, context: SafeContext) -> str:
    if context.actor is not None:
        return context.actor.language
    user = update.effective_user
    return language_from_telegram(user.language_code if user else None)


async def edit_pressed(
    query: CallbackQuery, text: str | None = None, markup: InlineKeyboardMarkup | None = None
) -> None:
    """Edit the message whose button was pressed (its text, or only its buttons).

    A double tap edits to what is already there, and a prompt may have been deleted by a
    quick exit in the meantime: Telegram answers 400 to both, and neither is a failure.
    """
    try:
        if text is None:
            await query.edit_message_reply_markup(markup)
        else:
            await query.edit_message_text(text, reply_markup=markup)
    except BadRequest:
        pass  # nothing to log, and a line per press would date what people do
