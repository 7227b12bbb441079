"""The welfare watch: a member who falls silent is noticed.

Silence is a signal: a member who stops answering may have been arrested, moved, or lost
their phone. Each schedule row carries a small ladder (``WatchStep``), started by the first
unanswered prompt of a silence (bot/schedules.py):

1. one grace period after that prompt: one gentle reminder to the member (a prompt in other
   words, which replaces the unanswered one);
2. another grace period later: an alert to their caseworker (every caseworker and admin when
   they have none) -- a case like a help request, claimable and resolvable, and escalating
   like an urgent one: nobody claims it, everyone (the admins too) is told again;
3. it closes by itself when the member checks in, and the alert copies say so.

A member who blocked the bot or deleted their account (Telegram answers 403) raises the
same alert at once (:func:`unreachable`): never a silent opt-out. Staff can pause the watch
for a member (travel, hospital) until a date; prompts go on, and the first one after the
pause starts the watch again.

The alert names the member by pseudonym and the day of their last check-in, no more: the
day is what the check-ins table keeps anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.alerts import alert_case, recipients_for
from bot.cases import UNRESOLVED, HelpRequest, brief_place, rewrite_copies, sealed_place
from bot.core import Core
from bot.people import Actor, active_person
from bot.schedules import (
    SWEEP_BATCH,
    alert_open,
    queue_prompt,
    read_plan,
    sweep_due,
    watch_paused,
)
from crypto.keystore import ServerSecrets
from storage.models import (
    Case,
    CaseStatus,
    CheckIn,
    Person,
    Role,
    Schedule,
    WatchStep,
    day,
    minute,
    new_id,
    utcnow,
)

SILENT, UNREACHABLE = "silent", "unreachable"  # the two welfare case categories
WATCH_PAUSES = {"week": timedelta(days=7), "month": timedelta(days=30)}


async def last_checkin_day(session: AsyncSession, person_id: str) -> date | None:
    latest = await session.scalar(
        select(func.max(CheckIn.created_at)).where(CheckIn.person_id == person_id)
    )
    if isinstance(latest, str):  # SQLite's max() hands back the stored text
        latest = datetime.fromisoformat(latest)
    return latest.date() if latest is not None else None


async def sweep_watch(core: Core, *, now: datetime | None = None, batch: int = SWEEP_BATCH) -> int:
    """Take every member whose ladder step is due one step up; returns how many steps."""
    at = now or utcnow()

    async def step(session: AsyncSession, row: Schedule, member: Person) -> int:
        return await _step_up(session, core, row, member, at)

    return await sweep_due(core, Schedule.watch_at, step, now=at, batch=batch)


async def _step_up(
    session: AsyncSession, core: Core, row: Schedule, member: Person, now: datetime
) -> int:
    if member.revoked_at is not None or member.erased or watch_paused(row, now):
        row.watch_step, row.watch_at = WatchStep.QUIET.value, None
        return 0
    if row.watch_step == WatchStep.PROMPTED.value:
        queue_prompt(session, core.secrets, member, reminder=True)
        row.watch_step = WatchStep.REMINDED.value
        row.watch_at = now + read_plan(core.secrets, row).grace
        return 1
    if row.watch_step == WatchStep.REMINDED.value:
        since = await last_checkin_day(session, member.id)
        if since is None and row.silent_since is not None:
            since = row.silent_since.date()
        await _raise_alert(session, core, row, member, SILENT, since, now)
        return 1
    row.watch_at = None  # nothing further is timed: an alert escalates as a case
    return 0


async def unreachable(session: AsyncSession, core: Core, person_id: str) -> bool:
    """Telegram refused a message to this member (403: they blocked the bot or deleted the
    account). Raise it to their caseworker, once per silence. True if an alert was raised."""
    row = await session.get(Schedule, person_id)
    member = await active_person(session, person_id)
    if row is None or member is None or member.role != Role.MEMBER.value:
        return False
    if await alert_open(session, row):
        return False
    await _raise_alert(session, core, row, member, UNREACHABLE, None, utcnow())
    return True


async def _raise_alert(
    session: AsyncSession,
    core: Core,
    row: Schedule,
    member: Person,
    reason: str,
    since: date | None,
    now: datetime,
) -> None:
    """Open the welfare case and alert whoever hears about this member. It escalates like
    an urgent request (bot.cases.escalate_due) until someone claims it."""
    keys = core.secrets
    request = HelpRequest(reason, "today", since.isoformat() if since else None)
    case_id = new_id()
    session.add(
        Case(
            id=case_id,
            member_id=member.id,
            status=CaseStatus.OPEN.value,
            created_at=minute(now),
            escalate_at=now + timedelta(minutes=core.settings.escalate_minutes),
            sealed=keys.team_sealer.seal(request.to_bytes(), sealed_place(case_id)),
            brief=keys.server_box.seal(request.to_bytes(), brief_place(case_id)),
        )
    )
    row.watch_step, row.watch_at, row.watch_case_id = WatchStep.ALERTED.value, None, case_id
    found = await recipients_for(session, member.id)
    if found is not None:
        alert_case(session, keys, found[1], member, case_id, request, urgent=False)


async def checked_in(session: AsyncSession, keys: ServerSecrets, person_id: str) -> None:
    """The member checked in: nothing is pending on their watch, and an open welfare alert
    closes by itself (the copies staff hold say so)."""
    row = await session.get(Schedule, person_id)
    if row is None:
        return
    row.watch_step, row.watch_at, row.silent_since = WatchStep.QUIET.value, None, None
    case_id, row.watch_case_id = row.watch_case_id, None
    case = await session.get(Case, case_id) if case_id else None
    if case is None or case.status not in UNRESOLVED:
        return
    case.status, case.created_at = CaseStatus.RESOLVED.value, day(case.created_at)
    case.escalate_at, case.brief = None, None
    await rewrite_copies(session, keys, case, "alert_welfare_closed")


async def pause_watch(
    session: AsyncSession, person_id: str, until: datetime | None
) -> Schedule | None:
    """Staff pause a member's watch until ``until`` (None: resume now). Nothing is pending
    while it is paused; an alert already raised stays until it is resolved or they check
    in."""
    row = await session.get(Schedule, person_id)
    if row is None:
        return None
    row.watch_paused_until = until
    if until is not None and row.watch_step != WatchStep.ALERTED.value:
        row.watch_step, row.watch_at, row.silent_since = WatchStep.QUIET.value, None, None
    return row


def may_manage(actor: Actor, member: Person) -> bool:
    """Staff who may see and change a member's schedule: an admin, their caseworker, or any
    caseworker for a member who has none (as for their requests)."""
    if not actor.is_staff or member.role != Role.MEMBER.value:
        return False
    return actor.is_admin or member.caseworker_id in (None, actor.person_id)


@dataclass(frozen=True)
class DueLine:
    person_id: str
    pseudonym: str
    step: int
    last_checkin: date | None
    paused_until: datetime | None  # prompts, by the member
    watch_paused_until: datetime | None  # the watch, by staff
    prompts_off: bool


async def due_for(
    session: AsyncSession, actor: Actor, *, now: datetime | None = None, limit: int = 50
) -> list[DueLine]:
    """Members the actor looks after who are overdue (past a grace period: reminded or
    alerted), paused (prompts or watch) or have prompts off, most overdue first."""
    if not actor.is_staff:
        return []
    now = now or utcnow()
    last = (
        select(func.max(CheckIn.created_at))
        .where(CheckIn.person_id == Person.id)
        .correlate(Person)
        .scalar_subquery()
    )
    query = (
        select(Schedule, Person, last)
        .join(Person, Person.id == Schedule.person_id)
        .where(
            Person.revoked_at.is_(None),
            Person.erased.is_(False),
            or_(
                Schedule.watch_step >= WatchStep.REMINDED.value,
                Schedule.paused_until > now,
                Schedule.watch_paused_until > now,
                Schedule.next_at.is_(None),
            ),
        )
    )
    if not actor.is_admin:
        query = query.where(
            or_(Person.caseworker_id == actor.person_id, Person.caseworker_id.is_(None))
        )
    rows = (
        await session.execute(
            query.order_by(Schedule.watch_step.desc(), Person.pseudonym).limit(limit)
        )
    ).all()
    lines = []
    for row, member, latest in rows:
        if isinstance(latest, str):
            latest = datetime.fromisoformat(latest)
        lines.append(
            DueLine(
                person_id=member.id,
                pseudonym=member.pseudonym,
                step=row.watch_step,
                last_checkin=latest.date() if latest is not None else None,
                paused_until=row.paused_until
                if row.paused_until and row.paused_until > now
                else None,
                watch_paused_until=(
                    row.watch_paused_until
                    if row.watch_paused_until and row.watch_paused_until > now
                    else None
                ),
                prompts_off=row.next_at is None,
            )
        )
    return lines
