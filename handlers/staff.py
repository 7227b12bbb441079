"""Caseworker and admin commands: invites, cases, claims, replies, revoking.

Every handler re-checks the sender's role here and ownership in the service, from the
database; a member who types a staff command is answered as if it did not exist.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from telegram import Message, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot import cases as case_service
from bot.cases import Outcome
from bot.i18n import t
from bot.people import DEFAULT_INVITE_HOURS, create_invite, find_by_name, set_display_name
from bot.relay import (
    TEXT_LIMIT,
    ReplyOutcome,
    delivered_to,
    remember_listing,
    reply_target,
    reply_to_member,
)
from bot.staff import RevokeOutcome, may_invite, revoke
from handlers.context import SafeContext
from handlers.render import edit_pressed, keyboard, say, send
from storage.models import Role, utcnow

log = logging.getLogger(__name__)

PENDING_REPLY = "reply_to"
NAME_LIMIT = 32


def _is_staff(context: SafeContext) -> bool:
    return context.actor is not None and context.actor.is_staff


async def staff_help(update: Update, context: SafeContext) -> None:
    actor = context.require_actor()
    await say(update, context, "staff_help_admin" if actor.is_admin else "staff_help_caseworker")


async def invite(update: Update, context: SafeContext) -> None:
    """Create an invite link: members by any staff, staff by admins only."""
    if not _is_staff(context):
        await say(update, context, "not_understood")
        return
    actor = context.require_actor()
    wanted = (context.args or ["member"])[0].lower()
    role = Role(wanted) if wanted in {r.value for r in Role} else None
    if role is None or not may_invite(actor, role):
        await say(update, context, "not_allowed")
        return
    core = context.core
    async with core.sessions() as session, session.begin():
        token = await create_invite(session, core.secrets, role, created_by=actor.person_id)
    until = (utcnow() + timedelta(hours=DEFAULT_INVITE_HOURS)).strftime("%Y-%m-%d %H:%M UTC")
    link = f"https://t.me/{context.bot.username}?start={token}"
    role_name = t(actor.language, f"role_{role.value}")
    await say(update, context, "invite_made", role=role_name, until=until, link=link)


async def set_name(update: Update, context: SafeContext) -> None:
    """Ask for the name members see on replies."""
    if not _is_staff(context):
        await say(update, context, "not_understood")
        return
    if context.user_data is not None:
        context.user_data["naming"] = True
    await say(update, context, "staff_name_prompt")


async def save_name(update: Update, context: SafeContext, text: str) -> None:
    actor, core = context.require_actor(), context.core
    name = " ".join(text.split())
    if not 1 <= len(name) <= NAME_LIMIT or "\n" in text.strip():
        await say(update, context, "staff_name_invalid")
        return
    async with core.sessions() as session, session.begin():
        await set_display_name(session, core.secrets, actor.person_id, name)
    if context.user_data is not None:
        context.user_data.pop("naming", None)
    await say(update, context, "staff_name_saved", name=name)
    if actor.display_name is None:
        await staff_help(update, context)


async def list_cases(update: Update, context: SafeContext) -> None:
    """Show the sender's open and claimed requests, one message each, with buttons."""
    if not _is_staff(context):
        await say(update, context, "not_understood")
        return
    actor, core = context.require_actor(), context.core
    lang = actor.language
    async with core.sessions() as session:
        lines = await case_service.cases_for(session, core.secrets, actor)
    if not lines:
        await say(update, context, "cases_none")
        return
    await say(update, context, "cases_title")
    for line in lines:
        status = "status_mine" if line.claimed_by_me else f"status_{line.status}"
        minutes = int((utcnow() - line.created_at).total_seconds() // 60)
        age = f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min"
        text = t(
            lang,
            "cases_line",
            pseudonym=line.pseudonym,
            category=t(lang, f"cat_{line.category}") if line.category else t(lang, "unknown_value"),
            urgency=t(lang, f"urg_{line.urgency}") if line.urgency else t(lang, "unknown_value"),
            status=t(lang, status),
            age=age,
        )
        buttons = [
            (t(lang, "btn_reply"), "rp"),
            (t(lang, "btn_resolve"), f"case:resolve:{line.case_id}"),
        ]
        if line.status == "open":
            buttons.insert(0, (t(lang, "btn_claim"), f"case:claim:{line.case_id}"))
        message = await send(update, context, text, keyboard([buttons]))
        if message is not None:
            await _remember(context, message, line.case_id)


async def _remember(context: SafeContext, message: Message, case_id: str) -> None:
    core, actor = context.core, context.require_actor()
    async with core.sessions() as session, session.begin():
        await remember_listing(session, actor.person_id, message.message_id, case_id)


async def case_action(update: Update, context: SafeContext) -> None:
    """Claim or resolve, after checking in the database that the case is the sender's."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    if not _is_staff(context):
        await query.answer(t(context.require_actor().language, "stale_button"))
        return
    actor, core = context.require_actor(), context.core
    _, verb, case_id = query.data.split(":", 2)
    async with core.sessions() as session, session.begin():
        if verb == "claim":
            result = await case_service.claim_case(session, core.secrets, actor, case_id)
        else:
            result = await case_service.resolve_case(session, core.secrets, actor, case_id)
    context.wake_outbox()
    lang = actor.language
    if result.outcome is Outcome.REFUSED:
        await query.answer(t(lang, "not_allowed"), show_alert=True)
        log.info("refused a case action")
        return
    if result.outcome is Outcome.TAKEN:
        await query.answer(t(lang, "claim_taken", name=result.other_name), show_alert=True)
        return
    if result.outcome is Outcome.CLOSED:
        await query.answer(t(lang, "case_closed"))
        await edit_pressed(query)
        return
    if verb == "claim":
        await query.answer(t(lang, "claim_done"))
        await edit_pressed(
            query,
            markup=keyboard(
                [
                    [
                        (t(lang, "btn_reply"), "rp"),
                        (t(lang, "btn_resolve"), f"case:resolve:{case_id}"),
                    ]
                ]
            ),
        )
    else:
        await query.answer(t(lang, "resolve_done"))
        await edit_pressed(query)


async def start_reply(update: Update, context: SafeContext) -> None:
    """Reply button: the next text goes to the member behind this message."""
    query = update.callback_query
    if query is None or query.message is None:
        return
    if not _is_staff(context):
        await query.answer(t(context.require_actor().language, "stale_button"))
        return
    actor, core = context.require_actor(), context.core
    async with core.sessions() as session:
        target = await reply_target(session, actor.person_id, query.message.message_id)
    if target is None:
        await query.answer(t(actor.language, "not_allowed"), show_alert=True)
        return
    if context.user_data is not None:
        context.user_data[PENDING_REPLY] = target.delivered_id
    await query.answer()
    await say(update, context, "reply_prompt", pseudonym=target.pseudonym)


async def staff_text(update: Update, context: SafeContext) -> None:
    """Free text from staff: a reply to a member, their display name, or a hint."""
    message, actor = update.effective_message, context.require_actor()
    if message is None:
        return
    text = (message.text or "").strip()
    user_data = context.user_data if context.user_data is not None else {}
    if text and (user_data.get("naming") or actor.display_name is None):
        await save_name(update, context, text)
        return
    core = context.core
    target: str | None = None
    if message.reply_to_message is not None:
        async with core.sessions() as session:
            delivered = await delivered_to(
                session, actor.person_id, message.reply_to_message.message_id
            )
        target = delivered.id if delivered else None
    elif PENDING_REPLY in user_data:
        target = user_data[PENDING_REPLY]
    if target is None or not text:
        await say(update, context, "reply_how")
        return
    if len(text) > TEXT_LIMIT:
        await say(update, context, "reply_too_long", limit=TEXT_LIMIT)
        return
    async with core.sessions() as session, session.begin():
        result = await reply_to_member(session, core.secrets, actor, target, text)
    user_data.pop(PENDING_REPLY, None)
    context.wake_outbox()
    key = {
        ReplyOutcome.SENT: "reply_sent",
        ReplyOutcome.GONE: "reply_gone",
        ReplyOutcome.TAKEN: "reply_taken",
        ReplyOutcome.UNKNOWN: "reply_how",
    }[result.outcome]
    await say(update, context, key, pseudonym=result.pseudonym or "?")


async def revoke_person(update: Update, context: SafeContext) -> None:
    """/revoke <name or pseudonym> (admins): the person is removed at once."""
    actor = context.actor
    if actor is None or not actor.is_staff:
        await say(update, context, "not_understood")
        return
    if not actor.is_admin:
        await say(update, context, "not_allowed")
        return
    name = " ".join(context.args or [])
    if not name:
        await say(update, context, "revoke_usage")
        return
    core = context.core
    async with core.sessions() as session, session.begin():
        target = await find_by_name(session, core.secrets, name)
        outcome = await revoke(session, actor, target) if target is not None else None
    if outcome is None:
        await say(update, context, "revoke_unknown")
    elif outcome is RevokeOutcome.SELF:
        await say(update, context, "revoke_self")
    else:
        log.info("revoked a person")
        context.wake_outbox()
        await say(update, context, "revoke_done", name=name)


async def cancel_pending(context: SafeContext) -> bool:
    """Drop a pending reply or name prompt; True if there was one."""
    user_data = context.user_data
    if user_data is None:
        return False
    had = bool(user_data.pop(PENDING_REPLY, None)) | bool(user_data.pop("naming", None))
    return had


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("invite", invite))
    app.add_handler(CommandHandler("cases", list_cases))
    app.add_handler(CommandHandler("revoke", revoke_person))
    app.add_handler(CommandHandler("name", set_name))
    app.add_handler(
        CallbackQueryHandler(case_action, pattern=r"^case:(claim|resolve):[A-Za-z0-9_-]{1,40}$")
    )
    app.add_handler(CallbackQueryHandler(start_reply, pattern=r"^rp$"))
