"""Caseworker and admin commands: invites, cases, claims, replies, revoking.

Every handler re-checks the sender's role here and ownership in the service, from the
database; a member who types a staff command is answered as if it did not exist.
"""

from __future__ import annotations

import logging
from datetime import datetime

from telegram import CallbackQuery, Message, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot import cases as case_service
from bot.cases import Outcome
from bot.chat import remember
from bot.delivery import WEBAPP_BUTTON
from bot.devices import Decision, reject_device
from bot.i18n import t
from bot.people import (
    NameProblem,
    active_person,
    cancel_invite,
    create_invite,
    find_by_name,
    invites_of,
    set_display_name,
    show_invite,
    shown_name_of,
)
from bot.relay import (
    TEXT_LIMIT,
    ReplyOutcome,
    correct_reply,
    remember_listing,
    reply_target,
    reply_to_member,
)
from bot.staff import RevokeOutcome, may_invite, revoke
from handlers.context import SafeContext
from handlers.render import edit_pressed, keyboard, language_keyboard, say, send
from storage.models import Role, utcnow

log = logging.getLogger(__name__)

PENDING_REPLY = "reply_to"
NAMING = "naming"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _is_staff(context: SafeContext) -> bool:
    return context.actor is not None and context.actor.is_staff


async def staff_help(update: Update, context: SafeContext) -> None:
    actor = context.require_actor()
    await say(update, context, "staff_help_admin" if actor.is_admin else "staff_help_caseworker")


async def invite(update: Update, context: SafeContext) -> None:
    """Create an invite link: members by any staff, staff by admins only. The link's message
    may be forwarded (it is meant for someone else) and leaves the chat when the invite is
    used, cancelled or expires."""
    if not _is_staff(context):
        await say(update, context, "not_understood")
        return
    actor, core = context.require_actor(), context.core
    args = context.args or []
    wanted = args[0].lower() if args else Role.MEMBER.value
    role = Role(wanted) if wanted in {r.value for r in Role} and len(args) <= 1 else None
    if role is None:
        await say(update, context, "invite_usage_admin" if actor.is_admin else "invite_usage")
        return
    if not may_invite(actor, role):
        await say(update, context, "not_allowed")
        return
    session = context.session()
    made = await create_invite(session, core.secrets, role, created_by=actor.person_id)
    await context.commit()
    link = f"https://t.me/{context.bot.username}?start={made.token}"
    text = t(
        actor.language,
        "invite_made",
        role=t(actor.language, f"role_{role.value}"),
        until=_when(made.expires_at),
        link=link,
    )
    message = await send(update, context, text, protect=False)
    if message is None:
        return
    session = context.session()
    await show_invite(session, made.invite_id, message.message_id)
    await remember(
        session, core.settings, actor.person_id, [message.message_id], until=made.expires_at
    )
    await context.commit()


async def list_invites(update: Update, context: SafeContext) -> None:
    """/invites: one's own open invites, each with a Cancel button, and lately expired ones."""
    if not _is_staff(context):
        await say(update, context, "not_understood")
        return
    actor = context.require_actor()
    lang = actor.language
    session = context.session()
    invites = await invites_of(session, actor.person_id)
    await context.commit()
    if not invites:
        await say(update, context, "invites_none")
        return
    await say(update, context, "invites_title")
    for open_invite in invites:
        role = t(lang, f"role_{open_invite.role.value}")
        when = _when(open_invite.expires_at)
        if open_invite.expired:
            await say(update, context, "invites_line_expired", role=role, until=when)
            continue
        rows = [[(t(lang, "btn_cancel_invite"), f"inv:cancel:{open_invite.invite_id}")]]
        await say(update, context, "invites_line", keyboard(rows), role=role, until=when)


async def cancel_invite_pressed(update: Update, context: SafeContext) -> None:
    """Cancel button under one of one's own invites (checked in the database)."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    actor = context.require_actor()
    if not actor.is_staff:
        await query.answer(t(actor.language, "stale_button"))
        return
    session = context.session()
    cancelled = await cancel_invite(session, actor, query.data.rsplit(":", 1)[1])
    await context.commit()
    context.wake_cleaner()
    await query.answer(t(actor.language, "invite_cancelled" if cancelled else "stale_button"))
    await edit_pressed(query, t(actor.language, "invite_cancelled"))


async def set_name(update: Update, context: SafeContext) -> None:
    """/name: ask for the name members see on replies."""
    if not _is_staff(context):
        await say(update, context, "not_understood")
        return
    await ask_name(update, context)


async def ask_name(update: Update, context: SafeContext) -> None:
    """The next plain text is the name (a reply to a member still goes to the member)."""
    if context.user_data is not None:
        context.user_data.pop(PENDING_REPLY, None)
        context.user_data[NAMING] = True
    await say(update, context, "staff_name_prompt")


async def save_name(update: Update, context: SafeContext, text: str) -> None:
    actor, core = context.require_actor(), context.core
    session = context.session()
    problem = await set_display_name(session, core.secrets, actor.person_id, text)
    await context.commit()
    if problem is NameProblem.INVALID:
        await say(update, context, "staff_name_invalid")
        return
    if problem is NameProblem.TAKEN:
        await say(update, context, "staff_name_taken")
        return
    if context.user_data is not None:
        context.user_data.pop(NAMING, None)
    await say(update, context, "staff_name_saved", name=" ".join(text.split()))
    if actor.display_name is None:
        await staff_help(update, context)


async def list_cases(update: Update, context: SafeContext) -> None:
    """Show the sender's open and claimed requests, one message each, with buttons."""
    if not _is_staff(context):
        await say(update, context, "not_understood")
        return
    actor, core = context.require_actor(), context.core
    lang = actor.language
    session = context.session()
    lines = await case_service.cases_for(session, core.secrets, actor)
    await context.commit()
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
    session = context.session()
    await remember_listing(session, core.settings, actor.person_id, message.message_id, case_id)
    await context.commit()


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
    session = context.session()
    if verb == "claim":
        result = await case_service.claim_case(session, core.secrets, actor, case_id)
    else:
        result = await case_service.resolve_case(session, core.secrets, actor, case_id)
    await context.commit()
    context.wake_outbox()
    context.scrub()  # a claim drops the member's words from the brief, a resolve the rest
    lang = actor.language
    if result.outcome is Outcome.REFUSED:
        await query.answer(t(lang, "not_allowed"), show_alert=True)
        return
    if result.outcome is Outcome.TAKEN:
        taken = (
            t(lang, "claim_taken", name=result.other_name)
            if result.other_name
            else t(lang, "claim_taken_unknown")
        )
        await query.answer(taken, show_alert=True)
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
                    *_open_rows(query),
                    [
                        (t(lang, "btn_reply"), "rp"),
                        (t(lang, "btn_resolve"), f"case:resolve:{case_id}"),
                    ],
                ]
            ),
        )
    else:
        await query.answer(t(lang, "resolve_done"))
        await edit_pressed(query)


def _open_rows(query: CallbackQuery) -> list[list[tuple[str, str]]]:
    """The alert's Open row (a request sealed on the member's phone, read in the staff
    page), kept when the claim rewrites the buttons: a page's address grants nothing."""
    message = query.message
    markup = message.reply_markup if isinstance(message, Message) else None
    if markup is None:
        return []
    return [
        [(b.text, f"{WEBAPP_BUTTON}{b.web_app.url}") for b in row if b.web_app is not None]
        for row in markup.inline_keyboard
        if any(b.web_app is not None for b in row)
    ]


async def start_reply(update: Update, context: SafeContext) -> None:
    """Reply button: the next text goes to the member behind this message."""
    query = update.callback_query
    if query is None or query.message is None:
        return
    if not _is_staff(context):
        await query.answer(t(context.require_actor().language, "stale_button"))
        return
    actor = context.require_actor()
    session = context.session()
    target = await reply_target(session, actor.person_id, query.message.message_id)
    await context.commit()
    if target is None:
        await query.answer(t(actor.language, "not_allowed"), show_alert=True)
        return
    if not target.reachable:
        gone = (
            t(actor.language, "reply_gone", pseudonym=target.pseudonym)
            if target.pseudonym
            else t(actor.language, "reply_gone_member")
        )
        await query.answer(gone, show_alert=True)
        return
    if context.user_data is not None:
        context.user_data.pop(NAMING, None)
        context.user_data[PENDING_REPLY] = target.copy_id
    await query.answer()
    await say(update, context, "reply_prompt", pseudonym=target.pseudonym)


async def staff_text(update: Update, context: SafeContext) -> None:
    """Free text from staff, in this order: a reply to a member (a Telegram reply to one of
    their messages, or after the Reply button) always goes to the member; otherwise an
    unfinished enrolment step (language, then name) takes it or is asked again; otherwise a
    hint on how to reply."""
    message, actor = update.effective_message, context.require_actor()
    if message is None:
        return
    text = (message.text or "").strip()
    user_data = context.user_data if context.user_data is not None else {}
    target: str | None = None
    if message.reply_to_message is not None:
        session = context.session()
        found = await reply_target(session, actor.person_id, message.reply_to_message.message_id)
        await context.commit()
        target = found.copy_id if found else None
    elif not user_data.get(NAMING):
        target = user_data.get(PENDING_REPLY)
    if target is not None and text:
        await _reply(update, context, target, text, message.message_id)
    elif not actor.language_chosen:
        await say(update, context, "language_prompt", language_keyboard())
    elif text and user_data.get(NAMING):
        await save_name(update, context, text)
    elif actor.display_name is None:
        await ask_name(update, context)
    else:
        await say(update, context, "reply_how")


async def reply_correction(update: Update, context: SafeContext) -> None:
    """A staff member edited a reply that went to a member: the member gets the new words."""
    message, actor, core = update.edited_message, context.require_actor(), context.core
    text = ((message.text if message else None) or "").strip()
    if message is None or not text or len(text) > TEXT_LIMIT:
        return
    session = context.session()
    pseudonym = await correct_reply(session, core.secrets, actor, message.message_id, text)
    await context.commit()
    if pseudonym is not None:
        context.wake_outbox()
        await say(update, context, "reply_corrected", pseudonym=pseudonym)


async def _reply(
    update: Update, context: SafeContext, target: str, text: str, message_id: int
) -> None:
    actor, core = context.require_actor(), context.core
    if len(text) > TEXT_LIMIT:
        await say(update, context, "reply_too_long", limit=TEXT_LIMIT)
        return
    session = context.session()
    result = await reply_to_member(
        session, core.secrets, core.settings, actor, target, text, message_id=message_id
    )
    await context.commit()
    if context.user_data is not None:
        context.user_data.pop(PENDING_REPLY, None)
    context.wake_outbox()
    if result.outcome is ReplyOutcome.GONE and result.pseudonym is None:
        await say(update, context, "reply_gone_member")
        return
    key = {
        ReplyOutcome.SENT: "reply_sent",
        ReplyOutcome.GONE: "reply_gone",
        ReplyOutcome.TAKEN: "reply_taken",
        ReplyOutcome.UNKNOWN: "reply_how",
    }[result.outcome]
    await say(update, context, key, pseudonym=result.pseudonym or "")


async def revoke_person(update: Update, context: SafeContext) -> None:
    """/revoke <name or pseudonym> (admins): show whom that names, with one button to remove
    them -- never a guess."""
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
    core, lang = context.core, actor.language
    session = context.session()
    found = await find_by_name(session, core.secrets, name)
    await context.commit()
    if not found:
        await say(update, context, "revoke_unknown")
        return
    for person in found:
        if person.id == actor.person_id:
            await say(update, context, "revoke_self")
            continue
        rows = [
            [
                (t(lang, "btn_revoke"), f"revoke:{person.id}"),
                (t(lang, "forget_keep"), "revoke:no"),
            ]
        ]
        await say(
            update,
            context,
            "revoke_question",
            keyboard(rows),
            name=shown_name_of(person, core.secrets),
            role=t(lang, f"role_{person.role}"),
            pseudonym=person.pseudonym,
        )


async def confirm_revoke(update: Update, context: SafeContext) -> None:
    """The Remove button: checked again in the database, then the person is cut off."""
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.data is None:
        return
    if query.data == "revoke:no":
        await query.answer()
        await edit_pressed(query)
        return
    if not actor.is_admin:
        await query.answer(t(actor.language, "not_allowed"), show_alert=True)
        return
    session = context.session()
    target = await active_person(session, query.data.split(":", 1)[1])
    outcome = await revoke(session, actor, target) if target is not None else None
    name = shown_name_of(target, core.secrets) if target is not None else ""
    await context.commit()
    if outcome is None:
        await query.answer(t(actor.language, "revoke_unknown"))
        await edit_pressed(query)
        return
    if outcome is RevokeOutcome.SELF:
        await query.answer(t(actor.language, "revoke_self"))
        return
    await query.answer()
    if target is not None:
        context.forget_recipient(target.id)
    context.wake_outbox()
    context.wake_cleaner()  # their chat and menu are cleared now
    context.scrub()
    await edit_pressed(query, t(actor.language, "revoke_done", name=name))


async def decide_device_pressed(update: Update, context: SafeContext) -> None:
    """Answer a device approval button of an older version: approving is now signed on an
    admin's phone in the page; a rejection is still carried out, checked in the database."""
    query, actor = update.callback_query, context.require_actor()
    if query is None or query.data is None:
        return
    if not actor.is_admin:
        await query.answer(t(actor.language, "not_allowed"), show_alert=True)
        return
    _, verdict, device_id = query.data.split(":", 2)
    if verdict == "ok":
        await query.answer(t(actor.language, "device_approve_in_page"), show_alert=True)
        return
    decision = await reject_device(context.session(), actor, device_id)
    await context.commit()
    await query.answer()
    if decision is Decision.REJECTED:
        await edit_pressed(query, t(actor.language, "device_rejected_plain"))
    else:
        await edit_pressed(query, t(actor.language, "device_gone"))


async def cancel_pending(context: SafeContext) -> bool:
    """Drop a pending reply or name prompt; True if there was one."""
    user_data = context.user_data
    if user_data is None:
        return False
    had = bool(user_data.pop(PENDING_REPLY, None)) | bool(user_data.pop(NAMING, None))
    return had


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("invite", invite))
    app.add_handler(CommandHandler("invites", list_invites))
    app.add_handler(
        CallbackQueryHandler(cancel_invite_pressed, pattern=r"^inv:cancel:[A-Za-z0-9_-]{1,40}$")
    )
    app.add_handler(CommandHandler("cases", list_cases))
    app.add_handler(CommandHandler("revoke", revoke_person))
    app.add_handler(
        CallbackQueryHandler(confirm_revoke, pattern=r"^revoke:(no|[A-Za-z0-9_-]{1,40})$")
    )
    app.add_handler(CommandHandler("name", set_name))
    app.add_handler(
        CallbackQueryHandler(case_action, pattern=r"^case:(claim|resolve):[A-Za-z0-9_-]{1,40}$")
    )
    app.add_handler(CallbackQueryHandler(start_reply, pattern=r"^rp$"))
    app.add_handler(
        CallbackQueryHandler(decide_device_pressed, pattern=r"^dev:(ok|no):[A-Za-z0-9_-]{1,40}$")
    )
