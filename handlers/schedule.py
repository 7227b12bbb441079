"""Wellbeing prompts in chat: a member's reminder settings, and the staff views.

- Members: /settings -> "Check-in reminders": how often, when (their window), Korea or China
  time, pause for a week or a month, resume. All buttons; each press is saved at once and
  the same message shows the result.
- Staff: ``/due`` lists members who are overdue, paused or have reminders off (by pseudonym,
  last check-in by day only); ``/schedule <pseudonym>`` shows one member's schedule and
  watch with buttons to change them. Who may is decided from the database on every press
  (bot.welfare.may_manage), never from the callback data.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import ChatMember, InlineKeyboardMarkup, Update
from telegram.ext import Application, CallbackQueryHandler, ChatMemberHandler, CommandHandler

from bot.cadence import Cadence, Every, format_duration, parse_window
from bot.i18n import day_text, t
from bot.people import active_person, find_by_name
from bot.schedules import (
    CADENCES,
    PAUSES,
    WINDOWS,
    ZONES,
    Plan,
    change_plan,
    pause_prompts,
    paused,
    read_plan,
    schedule_of,
    start_schedule,
    watch_paused,
)
from bot.welfare import (
    WATCH_PAUSES,
    DueLine,
    due_for,
    last_checkin_day,
    may_manage,
    pause_watch,
    unreachable,
)
from crypto.keystore import ServerSecrets
from handlers.context import SafeContext
from handlers.render import edit_pressed, keyboard, say, send
from storage.models import Person, Schedule, WatchStep, utcnow

ZONE_KEYS = {zone: f"zone_{code}" for code, zone in ZONES.items()}
CADENCE_CODES = {c.value: c for c in CADENCES}
ID = r"[A-Za-z0-9_-]{1,40}"
# What the buttons send: a plan choice (cadence, window, zone) for member and staff alike,
# a pause or resume of prompts, and for staff a pause or resume of the watch.
PLAN = r"e:(" + "|".join(CADENCE_CODES) + r")|w:[0-" + str(len(WINDOWS) - 1) + r"]"
PLAN += r"|z:(" + "|".join(ZONES) + r")"
MEMBER_PATTERN = rf"^sch:(menu|{PLAN}|p:(week|month)|r)$"
STAFF_PATTERN = rf"^ssch:{ID}:({PLAN}|wp:(week|month)|wr|r)$"


def every_label(language: str, every: Every) -> str:
    if isinstance(every, Cadence):
        return t(language, f"sch_every_{every.value}")
    return t(language, "sch_every_custom", duration=format_duration(every))


def window_label(language: str, plan: Plan) -> str:
    return t(language, "sch_any_time") if plan.window.any_time else str(plan.window)


def zone_label(language: str, zone: str) -> str:
    key = ZONE_KEYS.get(zone)
    return t(language, key) if key else zone


def _when_local(language: str, moment: datetime, plan: Plan) -> str:
    local = moment.astimezone(plan.tz)
    return f"{day_text(language, local.date())} {local:%H:%M} ({zone_label(language, plan.zone)})"


def _ticked(label: str, chosen: bool) -> str:
    return f"✓ {label}" if chosen else label


def _plan_rows(language: str, plan: Plan, prefix: str) -> list[list[tuple[str, str]]]:
    """Cadence, window and zone buttons, the current choice ticked."""
    cadences = [
        (_ticked(every_label(language, c), plan.every == c), f"{prefix}e:{c.value}")
        for c in CADENCES
    ]
    windows = [
        (
            _ticked(
                t(language, "sch_any_time") if w == "00:00-24:00" else w,
                plan.window == parse_window(w),
            ),
            f"{prefix}w:{i}",
        )
        for i, w in enumerate(WINDOWS)
    ]
    zones = [
        (_ticked(t(language, f"zone_{code}"), plan.zone == zone), f"{prefix}z:{code}")
        for code, zone in ZONES.items()
    ]
    return [cadences[:3], cadences[3:], windows[:3], windows[3:], zones]


# --------------------------------------------------------------------------- members


def _member_view(
    language: str, row: Schedule, plan: Plan, now: datetime
) -> tuple[str, InlineKeyboardMarkup]:
    lines = [
        t(
            language,
            "sch_title",
            every=every_label(language, plan.every),
            window=window_label(language, plan),
            zone=zone_label(language, plan.zone),
        )
    ]
    rows = _plan_rows(language, plan, "sch:")
    if paused(row, now):
        assert row.paused_until is not None
        day = row.paused_until.astimezone(plan.tz).date()
        lines.append(t(language, "sch_paused", day=day_text(language, day)))
        rows.append([(t(language, "sch_resume"), "sch:r")])
    elif not plan.off:
        rows.append(
            [
                (t(language, "sch_pause_week"), "sch:p:week"),
                (t(language, "sch_pause_month"), "sch:p:month"),
            ]
        )
    return "\n".join(lines), keyboard(rows)


async def member_schedule(update: Update, context: SafeContext) -> None:
    """The member's reminder settings (from /settings), and each press on them."""
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.data is None:
        return
    if not actor.is_member:
        await query.answer(t(actor.language, "stale_button"))
        return
    choice, lang, now = query.data.removeprefix("sch:"), actor.language, utcnow()
    session = context.session()
    row = await schedule_of(session, actor.person_id)
    if row is None:  # enrolled a moment before schedules existed: start one now
        row = start_schedule(session, core, actor.person_id, now=now)
        await session.flush()
    saved = await _apply(session, core.secrets, actor.person_id, choice, now)
    await context.commit()
    await query.answer(t(lang, "sch_saved") if saved else None)
    text, markup = _member_view(lang, row, read_plan(core.secrets, row), now)
    await edit_pressed(query, text, markup)


async def _apply(
    session: AsyncSession, keys: ServerSecrets, person_id: str, choice: str, now: datetime
) -> bool:
    """A plan or pause choice (``e:weekly``, ``w:2``, ``z:cn``, ``p:week``, ``r``), by the
    member or by staff; False for "menu" (only show). The callback data was matched by the
    handler's pattern, so every value here is one the buttons offer."""
    what, _, value = choice.partition(":")
    if what == "e":
        await change_plan(session, keys, person_id, every=CADENCE_CODES[value], now=now)
    elif what == "w":
        await change_plan(
            session, keys, person_id, window=parse_window(WINDOWS[int(value)]), now=now
        )
    elif what == "z":
        await change_plan(session, keys, person_id, zone=ZONES[value], now=now)
    elif what == "p":
        await pause_prompts(session, keys, person_id, PAUSES[value], now=now)
    elif what == "r":
        await pause_prompts(session, keys, person_id, None, now=now)
    else:
        return False
    return True


# --------------------------------------------------------------------------- staff


def _state(
    language: str,
    step: int,
    paused_until: datetime | None,
    watch_paused_until: datetime | None,
    off: bool,
) -> str:
    """The watch in a few words: the step, and any pause (given only while it lasts) or
    reminders off."""
    parts = [t(language, f"watch_{WatchStep(step).name.lower()}")]
    if paused_until is not None:
        parts.append(t(language, "due_paused", day=day_text(language, paused_until.date())))
    if watch_paused_until is not None:
        day = day_text(language, watch_paused_until.date())
        parts.append(t(language, "due_watch_paused", day=day))
    if off:
        parts.append(t(language, "due_off"))
    return ", ".join(parts)


def _last(language: str, last: date | None) -> str:
    return day_text(language, last) if last is not None else t(language, "due_never")


def _staff_view(
    language: str,
    member: Person,
    row: Schedule,
    plan: Plan,
    last: date | None,
    now: datetime,
) -> tuple[str, InlineKeyboardMarkup]:
    text = t(
        language,
        "schedule_view",
        pseudonym=member.pseudonym,
        every=every_label(language, plan.every),
        window=window_label(language, plan),
        zone=zone_label(language, plan.zone),
        next=(
            _when_local(language, row.next_at, plan)
            if row.next_at is not None
            else t(language, "schedule_next_none")
        ),
        state=_state(
            language,
            row.watch_step,
            row.paused_until if paused(row, now) else None,
            row.watch_paused_until if watch_paused(row, now) else None,
            row.next_at is None,
        ),
        last=_last(language, last),
    )
    prefix = f"ssch:{member.id}:"
    rows = _plan_rows(language, plan, prefix)
    if watch_paused(row, now):
        rows.append([(t(language, "btn_watch_resume"), f"{prefix}wr")])
    else:
        rows.append(
            [
                (t(language, "btn_watch_week"), f"{prefix}wp:week"),
                (t(language, "btn_watch_month"), f"{prefix}wp:month"),
            ]
        )
    if paused(row, now):
        rows.append([(t(language, "sch_resume"), f"{prefix}r")])
    return text, keyboard(rows)


async def show_member_schedule(update: Update, context: SafeContext) -> None:
    """/schedule <pseudonym>: one member's reminders and watch, with buttons."""
    actor = context.actor
    if actor is None or not actor.is_staff:
        await say(update, context, "not_understood")
        return
    name = " ".join(context.args or [])
    if not name:
        await say(update, context, "schedule_usage")
        return
    core, lang, now = context.core, actor.language, utcnow()
    session = context.session()
    found = [p for p in await find_by_name(session, core.secrets, name) if may_manage(actor, p)]
    views = []
    for member in found:
        row = await schedule_of(session, member.id)
        if row is None:
            row = start_schedule(session, core, member.id, now=now)
            await session.flush()
        last = await last_checkin_day(session, member.id)
        views.append(_staff_view(lang, member, row, read_plan(core.secrets, row), last, now))
    await context.commit()
    if not views:
        await say(update, context, "schedule_unknown")
    for text, markup in views:
        await send(update, context, text, markup)


async def staff_schedule_choice(update: Update, context: SafeContext) -> None:
    """A press on /schedule's buttons: checked again in the database, then saved."""
    query, actor, core = update.callback_query, context.require_actor(), context.core
    if query is None or query.data is None:
        return
    _, person_id, choice = query.data.split(":", 2)
    lang, now = actor.language, utcnow()
    session = context.session()
    member = await active_person(session, person_id)
    row = await schedule_of(session, person_id) if member is not None else None
    if member is None or row is None or not may_manage(actor, member):
        await context.commit()
        await query.answer(t(lang, "not_allowed"), show_alert=True)
        return
    what, _, value = choice.partition(":")
    if what == "wp":
        await pause_watch(session, person_id, now + WATCH_PAUSES[value])
    elif what == "wr":
        await pause_watch(session, person_id, None)
    else:
        await _apply(session, core.secrets, person_id, choice, now)
    last = await last_checkin_day(session, person_id)
    text, markup = _staff_view(lang, member, row, read_plan(core.secrets, row), last, now)
    await context.commit()
    await query.answer(t(lang, "sch_saved"))
    await edit_pressed(query, text, markup)


def _due_line(language: str, line: DueLine) -> str:
    state = _state(
        language, line.step, line.paused_until, line.watch_paused_until, line.prompts_off
    )
    return t(
        language,
        "due_line",
        pseudonym=line.pseudonym,
        last=_last(language, line.last_checkin),
        state=state,
    )


async def list_due(update: Update, context: SafeContext) -> None:
    """/due: members the sender looks after who are overdue or paused."""
    actor = context.actor
    if actor is None or not actor.is_staff:
        await say(update, context, "not_understood")
        return
    now = utcnow()
    session = context.session()
    lines = await due_for(session, actor, now=now)
    await context.commit()
    if not lines:
        await say(update, context, "due_none")
        return
    text = "\n".join(
        [t(actor.language, "due_title"), *(_due_line(actor.language, x) for x in lines)]
    )
    await send(update, context, text)


async def member_left_chat(update: Update, context: SafeContext) -> None:
    """Telegram says a member blocked the bot (or their account went): a safety signal for
    their caseworker at once, not an opt-out (bot.welfare.unreachable). A send that is
    refused with 403 raises the same alert, for when no such update comes."""
    change, actor = update.my_chat_member, context.actor
    if change is None or actor is None or not actor.is_member:
        return
    if change.new_chat_member.status != ChatMember.BANNED:  # "kicked": the bot was blocked
        return
    session = context.session()
    raised = await unreachable(session, context.core, actor.person_id)
    await context.commit()
    if raised:
        context.wake_outbox()


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(ChatMemberHandler(member_left_chat, ChatMemberHandler.MY_CHAT_MEMBER), group=1)
    app.add_handler(CallbackQueryHandler(member_schedule, pattern=MEMBER_PATTERN))
    app.add_handler(CommandHandler("due", list_due))
    app.add_handler(CommandHandler("schedule", show_member_schedule))
    app.add_handler(CallbackQueryHandler(staff_schedule_choice, pattern=STAFF_PATTERN))
