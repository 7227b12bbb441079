"""Broadcasts in chat: staff compose a notice step by step, members answer with one tap.

Staff (``/broadcast``): who it is for -> the text (one, or one per language) -> ask "Are you
coming?" or not (and until which day) -> now or later -> a preview exactly as members will
see it, with a warning for telling words -> Send. Every step has Cancel; nothing is stored
before Send (the draft lives in memory only). The confirmation message becomes the live
progress (bot/broadcasts.py). ``/broadcasts`` lists recent ones; ``/tag`` and ``/untag``
attach group labels to members.

Members: yes / no / maybe on the notice, then how many people; "📅 Notices" (``/notices``)
shows current notices and their own answer again after the chat has cleared.

Who may do what is decided in the service from the database on every step.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

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

from bot.broadcasts import (
    ANSWERS,
    MAX_HEAD_COUNT,
    TEXT_LIMIT,
    Audience,
    CancelOutcome,
    Notice,
    RsvpOutcome,
    answer_rsvp,
    audience_label,
    audience_size,
    cancel_broadcast,
    clean_label,
    create_broadcast,
    current_notices,
    labels_of,
    languages_in,
    may_send,
    my_answer,
    notice_buttons,
    notice_message,
    progress_text,
    read_notice,
    recent_broadcasts,
    tag,
    untag,
    who_said_yes,
)
from bot.i18n import LANGUAGE_NAMES, LANGUAGES, day_text, t
from bot.people import active_staff, find_by_name, shown_name_of
from bot.welfare import may_manage
from bot.wording import telling_words
from handlers.context import SafeContext
from handlers.render import edit_pressed, keyboard, say, send
from storage.models import Broadcast, Person, utcnow

AUDIENCE, LABEL, TEXT, RSVP, EVENT, WHEN, LATER, CONFIRM = range(20, 28)
DRAFT = "broadcast"
ID = r"[A-Za-z0-9_-]{1,40}"
WAKE_KEY = "broadcasts_wake"


def _draft(context: SafeContext) -> dict[str, Any]:
    assert context.user_data is not None
    draft = context.user_data.setdefault(DRAFT, {})
    assert isinstance(draft, dict)
    return draft


def _audience(context: SafeContext) -> Audience:
    draft, actor = _draft(context), context.require_actor()
    caseworker = None if actor.is_admin else actor.person_id
    return Audience(
        caseworker_id=draft.get("caseworker", caseworker),
        labels=tuple(draft.get("labels", ())),
        language=draft.get("language"),
    )


def _cancel_row(lang: str) -> list[tuple[str, str]]:
    return [(t(lang, "bc_cancel_draft"), "bcx")]


async def _caseworker_name(context: SafeContext, audience: Audience) -> str | None:
    """Whose members these are, by the name staff see; None for "all" and for one's own."""
    if audience.caseworker_id in (None, context.require_actor().person_id):
        return None
    session, core = context.session(), context.core
    person = await session.get(Person, audience.caseworker_id)
    return shown_name_of(person, core.secrets) if person is not None else None


async def _audience_screen(update: Update, context: SafeContext) -> int:
    actor, core = context.require_actor(), context.core
    lang, audience = actor.language, _audience(context)
    session = context.session()
    size = await audience_size(session, core.secrets, audience)
    label = audience_label(lang, audience, await _caseworker_name(context, audience))
    await context.commit()
    rows: list[list[tuple[str, str]]] = []
    if actor.is_admin:
        rows.append(
            [
                (t(lang, "bc_aud_all"), "bca:all"),
                (t(lang, "bc_aud_pick_caseworker"), "bca:cw"),
            ]
        )
    rows.append([(t(lang, "bc_aud_label"), "bca:label")])
    rows.append(
        [(LANGUAGE_NAMES[code], f"bca:lang:{code}") for code in LANGUAGES]
        + [(t(lang, "bc_lang_any"), "bca:lang:any")]
    )
    rows.append([(t(lang, "bc_next"), "bca:next")])
    rows.append(_cancel_row(lang))
    text = t(lang, "bc_audience", audience=label, count=size)
    query = update.callback_query
    if query is not None and query.message is not None:
        await edit_pressed(query, text, keyboard(rows))
    else:
        await send(update, context, text, keyboard(rows))
    return AUDIENCE


async def start_broadcast(update: Update, context: SafeContext) -> int:
    """/broadcast: staff only; a member is answered as if it did not exist."""
    actor = context.actor
    if actor is None or not actor.is_staff:
        await say(update, context, "not_understood")
        return ConversationHandler.END
    if context.user_data is not None:
        context.user_data.pop(DRAFT, None)
    return await _audience_screen(update, context)


async def audience_choice(update: Update, context: SafeContext) -> int:
    query, actor = update.callback_query, context.require_actor()
    if query is None or query.data is None:
        return AUDIENCE
    await query.answer()
    draft, lang = _draft(context), actor.language
    choice = query.data.removeprefix("bca:")
    if choice == "all" and actor.is_admin:
        draft["caseworker"] = None
    elif choice == "cw" and actor.is_admin:
        session = context.session()
        staff = await active_staff(session)
        names = [(shown_name_of(p, context.core.secrets), p.id) for p in staff]
        await context.commit()
        rows = [[(name, f"bca:cw:{pid}")] for name, pid in sorted(names)]
        await edit_pressed(query, t(lang, "bc_aud_which_caseworker"), keyboard(rows))
        return AUDIENCE
    elif choice.startswith("cw:") and actor.is_admin:
        draft["caseworker"] = choice.removeprefix("cw:")
    elif choice == "label":
        await edit_pressed(query, t(lang, "bc_label_prompt"), keyboard([_cancel_row(lang)]))
        return LABEL
    elif choice.startswith("lang:"):
        code = choice.removeprefix("lang:")
        draft["language"] = code if code in LANGUAGES else None
    elif choice == "next":
        await edit_pressed(query)  # this screen is done: its buttons go
        return await _ask_text(update, context)
    return await _audience_screen(update, context)


async def label_typed(update: Update, context: SafeContext) -> int:
    message = update.effective_message
    label = clean_label(message.text or "") if message else None
    if label is None:
        await say(update, context, "bc_label_invalid")
        return LABEL
    labels = _draft(context).setdefault("labels", [])
    if label not in labels:
        labels.append(label)
    return await _audience_screen(update, context)


async def _ask_text(update: Update, context: SafeContext) -> int:
    actor, core = context.require_actor(), context.core
    lang, audience = actor.language, _audience(context)
    session = context.session()
    size = await audience_size(session, core.secrets, audience)
    languages = await languages_in(session, core.secrets, audience)
    await context.commit()
    if size == 0 or not may_send(actor, audience):
        await say(update, context, "bc_nobody" if size == 0 else "not_allowed")
        return await _audience_screen(update, context)
    draft = _draft(context)
    draft["languages"], draft["texts"], draft["pending"] = languages, {}, []
    rows = [_cancel_row(lang)]
    if len(languages) > 1:
        rows.insert(0, [(t(lang, "bc_per_language"), "bct:per")])
    await send(update, context, t(lang, "bc_text_prompt", limit=TEXT_LIMIT), keyboard(rows))
    return TEXT


async def per_language(update: Update, context: SafeContext) -> int:
    query = update.callback_query
    if query is not None:
        await query.answer()
        await edit_pressed(query)
    draft = _draft(context)
    draft["pending"] = list(draft.get("languages", []))
    return await _next_language(update, context)


async def _next_language(update: Update, context: SafeContext) -> int:
    draft, lang = _draft(context), context.require_actor().language
    pending = draft["pending"]
    if not pending:
        return await _ask_rsvp(update, context)
    await send(
        update,
        context,
        t(lang, "bc_text_for", language=LANGUAGE_NAMES[pending[0]]),
        keyboard([_cancel_row(lang)]),
    )
    return TEXT


async def text_typed(update: Update, context: SafeContext) -> int:
    message, draft = update.effective_message, _draft(context)
    text = (message.text or "").strip() if message else ""
    if not text:
        await say(update, context, "bc_text_only")
        return TEXT
    if len(text) > TEXT_LIMIT:
        await say(update, context, "bc_text_too_long", limit=TEXT_LIMIT)
        return TEXT
    pending = draft.get("pending") or []
    if pending:
        draft["texts"][pending.pop(0)] = text
        return await _next_language(update, context)
    draft["texts"] = {"*": text}
    return await _ask_rsvp(update, context)


async def _ask_rsvp(update: Update, context: SafeContext) -> int:
    lang = context.require_actor().language
    rows = [
        [(t(lang, "bc_rsvp_yes"), "bcr:yes"), (t(lang, "bc_rsvp_no"), "bcr:no")],
        _cancel_row(lang),
    ]
    await send(update, context, t(lang, "bc_rsvp_prompt"), keyboard(rows))
    return RSVP


async def rsvp_choice(update: Update, context: SafeContext) -> int:
    query, lang = update.callback_query, context.require_actor().language
    if query is None or query.data is None:
        return RSVP
    await query.answer()
    draft = _draft(context)
    draft["rsvp"] = query.data == "bcr:yes"
    await edit_pressed(query)
    if not draft["rsvp"]:
        draft["event"] = None
        return await _ask_when(update, context)
    rows = [
        [(t(lang, f"bc_event_in_{d}"), f"bce:{d}") for d in (7, 14, 30)],
        _cancel_row(lang),
    ]
    await send(update, context, t(lang, "bc_event_prompt"), keyboard(rows))
    return EVENT


def _zone(context: SafeContext) -> ZoneInfo:
    return ZoneInfo(context.core.settings.default_timezone)


async def event_chosen(update: Update, context: SafeContext) -> int:
    """Until which day answers can change: a button (in 1, 2 or 4 weeks) or a typed date."""
    zone, today = _zone(context), datetime.now(_zone(context)).date()
    query = update.callback_query
    if query is not None and query.data is not None:
        await query.answer()
        await edit_pressed(query)
        day = today + timedelta(days=int(query.data.removeprefix("bce:")))
    else:
        message = update.effective_message
        try:
            day = date.fromisoformat(((message.text if message else "") or "").strip())
        except ValueError:
            await say(update, context, "bc_event_invalid")
            return EVENT
        if day < today:
            await say(update, context, "bc_event_invalid")
            return EVENT
    # Answers can change until the end of that day, in the organisation's time zone.
    _draft(context)["event"] = datetime.combine(day, time(23, 59), zone).isoformat()
    return await _ask_when(update, context)


async def _ask_when(update: Update, context: SafeContext) -> int:
    lang = context.require_actor().language
    rows = [
        [(t(lang, "bc_when_now"), "bcw:now"), (t(lang, "bc_when_later"), "bcw:later")],
        _cancel_row(lang),
    ]
    await send(update, context, t(lang, "bc_when_prompt"), keyboard(rows))
    return WHEN


async def when_choice(update: Update, context: SafeContext) -> int:
    query, lang = update.callback_query, context.require_actor().language
    if query is None or query.data is None:
        return WHEN
    await query.answer()
    await edit_pressed(query)
    if query.data == "bcw:now":
        _draft(context)["send_at"] = None
        return await _preview(update, context)
    zone = context.core.settings.default_timezone
    prompt = t(lang, "bc_later_prompt", zone=zone)
    await send(update, context, prompt, keyboard([_cancel_row(lang)]))
    return LATER


async def later_typed(update: Update, context: SafeContext) -> int:
    message = update.effective_message
    try:
        typed = ((message.text if message else "") or "").strip()
        local = datetime.strptime(typed, "%Y-%m-%d %H:%M")
    except ValueError:
        await say(update, context, "bc_later_invalid")
        return LATER
    moment = local.replace(tzinfo=_zone(context))
    if moment <= utcnow():
        await say(update, context, "bc_later_invalid")
        return LATER
    _draft(context)["send_at"] = moment.isoformat()
    return await _preview(update, context)


def _notice(context: SafeContext) -> Notice:
    draft = _draft(context)
    return Notice(dict(draft["texts"]), _audience(context))


async def _preview(update: Update, context: SafeContext) -> int:
    """Each language's notice exactly as members will see it, then the summary with Send."""
    actor, core, draft = context.require_actor(), context.core, _draft(context)
    lang, notice = actor.language, _notice(context)
    event = datetime.fromisoformat(draft["event"]) if draft.get("event") else None
    shape = Broadcast(id="preview", rsvp=bool(draft.get("rsvp")), event_at=event)
    languages = draft.get("languages") or [lang]
    shown = languages if "*" not in notice.texts else languages[:1]
    for code in shown:
        await say(update, context, "bc_preview_of", language=LANGUAGE_NAMES[code])
        member_view = notice_message(code, shape, notice)
        # The same buttons members get, but pressing them here does nothing.
        rows = [[(label, "bcp") for label, _ in row] for row in member_view.buttons]
        await send(update, context, member_view.text, keyboard(rows) if rows else None)
    session = context.session()
    size = await audience_size(session, core.secrets, notice.audience)
    label = audience_label(lang, notice.audience, await _caseworker_name(context, notice.audience))
    await context.commit()
    send_at = draft.get("send_at")
    lines = [
        t(lang, "bc_summary", audience=label, count=size),
        t(
            lang,
            "bc_summary_when",
            when=send_at[:16].replace("T", " ") if send_at else t(lang, "bc_when_now"),
        ),
    ]
    if event is not None:
        lines.append(t(lang, "bc_summary_until", day=day_text(lang, event.date())))
    telling = sorted({w for text in notice.texts.values() for w in telling_words(text)})
    if telling:
        lines.append(t(lang, "bc_warning", words=", ".join(telling)))
    rows = [[(t(lang, "bc_send"), "bcgo")], _cancel_row(lang)]
    await send(update, context, "\n".join(lines), keyboard(rows))
    return CONFIRM


async def confirm(update: Update, context: SafeContext) -> int:
    """Send: stored, and the summary message becomes the live progress."""
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.message is None:
        return CONFIRM
    draft, lang = _draft(context), actor.language
    notice = _notice(context)
    send_at = datetime.fromisoformat(draft["send_at"]) if draft.get("send_at") else utcnow()
    event = datetime.fromisoformat(draft["event"]) if draft.get("event") else None
    session = context.session()
    broadcast = await create_broadcast(
        session,
        core.secrets,
        actor,
        notice,
        rsvp=bool(draft.get("rsvp")),
        event_at=event,
        send_at=send_at,
        progress_message_id=query.message.message_id,
    )
    label = audience_label(lang, notice.audience, await _caseworker_name(context, notice.audience))
    await context.commit()
    if context.user_data is not None:
        context.user_data.pop(DRAFT, None)
    if broadcast is None:
        await query.answer(t(lang, "not_allowed"), show_alert=True)
        return ConversationHandler.END
    await query.answer(t(lang, "bc_sent_toast"))
    rows = [[(t(lang, "bc_cancel"), f"bc:cancel:{broadcast.id}")]]
    await edit_pressed(query, progress_text(lang, broadcast, label), keyboard(rows))
    wake = context.application.bot_data.get(WAKE_KEY)
    if wake is not None:
        wake()
    return ConversationHandler.END


async def cancel_draft(update: Update, context: SafeContext) -> int:
    if context.user_data is not None:
        context.user_data.pop(DRAFT, None)
    query = update.callback_query
    if query is not None:
        await query.answer()
        await edit_pressed(query)
    await say(update, context, "cancelled")
    return ConversationHandler.END


async def preview_press(update: Update, context: SafeContext) -> None:
    if update.callback_query is not None:
        await update.callback_query.answer(t(context.require_actor().language, "bc_preview_only"))


# --------------------------------------------------------------------------- staff, after


async def list_broadcasts(update: Update, context: SafeContext) -> None:
    actor = context.actor
    if actor is None or not actor.is_staff:
        await say(update, context, "not_understood")
        return
    core, lang = context.core, actor.language
    session = context.session()
    recent = await recent_broadcasts(session, actor)
    shown = []
    for broadcast in recent:
        notice = read_notice(core.secrets, broadcast)
        owner = await _caseworker_name(context, notice.audience)
        label = audience_label(lang, notice.audience, owner)
        rows: list[list[tuple[str, str]]] = []
        if broadcast.rsvp and actor.is_admin:
            rows.append([(t(lang, "bc_who_yes"), f"bc:yes:{broadcast.id}")])
        if broadcast.status in ("scheduled", "sending"):
            rows.append([(t(lang, "bc_cancel"), f"bc:cancel:{broadcast.id}")])
        first = notice.text_for(lang).splitlines()[0][:60]
        shown.append((f"{first}\n{progress_text(lang, broadcast, label)}", rows))
    await context.commit()
    if not shown:
        await say(update, context, "bc_none")
    for text, rows in shown:
        await send(update, context, text, keyboard(rows) if rows else None)


async def broadcast_action(update: Update, context: SafeContext) -> None:
    """Cancel a broadcast, or list who said yes: checked again in the service."""
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.data is None:
        return
    _, what, broadcast_id = query.data.split(":", 2)
    lang = actor.language
    session = context.session()
    if what == "cancel":
        outcome = await cancel_broadcast(session, actor, broadcast_id)
        await context.commit()
        key = {
            CancelOutcome.STOPPED: "bc_cancelled_toast",
            CancelOutcome.OVER: "bc_already_over",
        }.get(outcome, "not_allowed")
        await query.answer(t(lang, key))
        return
    yes = await who_said_yes(session, core.secrets, actor, broadcast_id)
    await context.commit()
    if yes is None:
        await query.answer(t(lang, "not_allowed"), show_alert=True)
        return
    await query.answer()
    lines = [t(lang, "bc_yes_title", count=len(yes), people=sum(n for _, n in yes))]
    lines += [t(lang, "bc_yes_line", pseudonym=p, people=n) for p, n in yes]
    await send(update, context, "\n".join(lines))


async def _member_and_rest(context: SafeContext, words: list[str]) -> tuple[Person | None, str]:
    """A pseudonym has spaces in it ("Calm Otter 27"): the longest leading run of words that
    names a member this sender looks after, and what follows it."""
    actor, core = context.require_actor(), context.core
    session = context.session()
    for cut in range(len(words), 0, -1):
        found = await find_by_name(session, core.secrets, " ".join(words[:cut]))
        for person in found:
            if may_manage(actor, person):
                return person, " ".join(words[cut:])
    return None, ""


async def tag_command(update: Update, context: SafeContext) -> None:
    """/tag <pseudonym> <label> (or /untag): staff label the members they look after;
    /tag <pseudonym> alone lists that member's labels."""
    actor, message = context.actor, update.effective_message
    if actor is None or not actor.is_staff or message is None:
        await say(update, context, "not_understood")
        return
    removing = (message.text or "").startswith("/untag")
    words = list(context.args or [])
    member, rest = await _member_and_rest(context, words)
    core, lang = context.core, actor.language
    if member is None:
        await context.commit()
        await say(update, context, "tag_usage" if not words else "schedule_unknown")
        return
    session = context.session()
    label = clean_label(rest) if rest else None
    if rest and label is None:
        await context.commit()
        await say(update, context, "bc_label_invalid")
        return
    if label is not None:
        if removing:
            await untag(session, core.secrets, actor.person_id, member.id, label)
        else:
            await tag(session, core.secrets, actor.person_id, member.id, label)
    labels = await labels_of(session, core.secrets, member.id)
    await context.commit()
    shown = ", ".join(f"#{x}" for x in labels) or t(lang, "tag_none")
    await say(update, context, "tag_list", pseudonym=member.pseudonym, labels=shown)


# --------------------------------------------------------------------------- members


async def rsvp_pressed(update: Update, context: SafeContext) -> None:
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.data is None:
        return
    lang = actor.language
    if not actor.is_member:
        await query.answer(t(lang, "stale_button"))
        return
    _, broadcast_id, choice = query.data.split(":", 2)
    session = context.session()
    outcome, answer = await answer_rsvp(
        session, core.secrets, actor.person_id, broadcast_id, choice
    )
    await context.commit()
    if outcome == RsvpOutcome.SAVED and answer is not None:
        await query.answer(t(lang, "rsvp_thanks"))
        await edit_pressed(
            query,
            None,
            keyboard(notice_buttons(lang, broadcast_id, answer=answer.answer, count=answer.count)),
        )
    elif outcome == RsvpOutcome.CLOSED:
        await query.answer(t(lang, "rsvp_closed"))
        await edit_pressed(query, None, None)
    else:
        await query.answer(t(lang, "stale_button"))


async def show_notices(update: Update, context: SafeContext) -> None:
    """📅 Notices: the current ones again, with the member's own answer ticked."""
    actor, core = context.actor, context.core
    if actor is None or not actor.is_member:
        await say(update, context, "not_understood")
        return
    if update.callback_query is not None:
        await update.callback_query.answer()
    lang = actor.language
    session = context.session()
    notices = await current_notices(session, core.secrets, actor.person_id)
    shown = []
    for broadcast in notices:
        message = notice_message(lang, broadcast, read_notice(core.secrets, broadcast))
        rows: list[list[tuple[str, str]]] = [list(row) for row in message.buttons]
        if broadcast.rsvp:
            answer = await my_answer(session, core.secrets, actor.person_id, broadcast.id)
            if answer is not None:
                rows = notice_buttons(lang, broadcast.id, answer=answer.answer, count=answer.count)
        open_ = broadcast.event_at is None or broadcast.event_at >= utcnow()
        shown.append((message.text, rows if broadcast.rsvp and open_ else []))
    await context.commit()
    if not shown:
        await say(update, context, "notices_none")
    for text, rows in shown:
        await send(update, context, text, keyboard(rows) if rows else None)


def _composer(timeout: float, typed: Any, cancel: Any) -> Any:
    audience = rf"^bca:(all|cw|cw:{ID}|label|next|lang:(ko|en|zh|any))$"
    return ConversationHandler(
        entry_points=[CommandHandler("broadcast", start_broadcast)],
        states={
            AUDIENCE: [
                CallbackQueryHandler(audience_choice, pattern=audience),
                cancel,
            ],
            LABEL: [MessageHandler(typed, label_typed), cancel],
            TEXT: [
                CallbackQueryHandler(per_language, pattern=r"^bct:per$"),
                MessageHandler(typed, text_typed),
                cancel,
            ],
            RSVP: [CallbackQueryHandler(rsvp_choice, pattern=r"^bcr:(yes|no)$"), cancel],
            EVENT: [
                CallbackQueryHandler(event_chosen, pattern=r"^bce:(7|14|30)$"),
                MessageHandler(typed, event_chosen),
                cancel,
            ],
            WHEN: [CallbackQueryHandler(when_choice, pattern=r"^bcw:(now|later)$"), cancel],
            LATER: [MessageHandler(typed, later_typed), cancel],
            CONFIRM: [CallbackQueryHandler(confirm, pattern=r"^bcgo$"), cancel],
        },
        fallbacks=[CommandHandler("cancel", cancel_draft)],
        allow_reentry=True,
        conversation_timeout=timeout,
        name="broadcast",
    )


def register(app: Application) -> None:  # type: ignore[type-arg]
    timeout = app.bot_data["core"].settings.checkin_timeout_minutes * 60
    typed = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
    cancel = CallbackQueryHandler(cancel_draft, pattern=r"^bcx$")
    # per_message=False on purpose, as for the check-in (handlers/member.py): one draft per
    # staff member, its buttons edited in place.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        composer: Any = _composer(timeout, typed, cancel)
    app.add_handler(composer)
    app.add_handler(CallbackQueryHandler(preview_press, pattern=r"^bcp$"))
    app.add_handler(CommandHandler("broadcasts", list_broadcasts))
    app.add_handler(CallbackQueryHandler(broadcast_action, pattern=rf"^bc:(cancel|yes):{ID}$"))
    app.add_handler(CommandHandler(["tag", "untag"], tag_command))
    answers = "|".join(ANSWERS)
    app.add_handler(
        CallbackQueryHandler(
            rsvp_pressed, pattern=rf"^rsvp:{ID}:({answers}|c[1-{MAX_HEAD_COUNT}])$"
        )
    )
    app.add_handler(CommandHandler("notices", show_notices))
    app.add_handler(CallbackQueryHandler(show_notices, pattern=r"^menu:notices$"))
