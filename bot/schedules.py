"""Each member's wellbeing prompts: their schedule, the prompt itself, pauses, and the sweep.

The database is the source of truth (``schedules``, one row per member): the next prompt
time is a row value, drawn at random inside the member's own window in their own time zone
(bot/cadence.py does the arithmetic), so a restart loses nothing and no job objects live in
memory. The sweep sends what is due, in batches, and stores the next time in the same step,
so a prompt missed while the bot was down is sent once, not once per missed period.

What the member chose (cadence, window, zone) and the grace period of their welfare watch are
the row's ``plan``, under the server box: "China time" in the clear would mark a member in
hiding. Only the deadlines the sweeps look for are in the clear.

A prompt is everyday wording with the five health buttons and "not now" on it (one tap
starts the check-in, handlers/member.py), sent through the outbox at bulk priority with
``protect_content``. It replaces the previous prompt if that is still in the chat, so the
phone never shows a pile of them; otherwise it clears like the rest of the chat, but stays at
least ``PROMPT_STAYS`` (chat.clear_delay) so a member who looks at the phone later can still
answer with one tap: a prompt holds nothing the member wrote.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from bot.cadence import (
    Cadence,
    Every,
    Window,
    cadence_for,
    catch_up,
    format_duration,
    next_prompt,
    parse_duration,
    parse_window,
    prompt_after_pause,
)
from bot.chat import PROMPT, About
from bot.core import Core
from bot.delivery import PRIORITY_BULK, Outgoing, enqueue
from bot.i18n import t
from bot.settings import Settings
from crypto.boxes import RecordPlace
from crypto.keystore import ServerSecrets
from storage.models import Case, CaseStatus, Person, Role, Schedule, WatchStep, day, utcnow

PLAN_VERSION = 1
KOREA_TIME, CHINA_TIME = "Asia/Seoul", "Asia/Shanghai"
ZONES = {"kr": KOREA_TIME, "cn": CHINA_TIME}  # what /settings offers, by button
# The windows /settings offers (local time); any other can be set in .env as the default.
WINDOWS = ("07:00-09:00", "12:00-14:00", "19:00-21:00", "21:00-23:00", "00:00-24:00")
CADENCES = (Cadence.DAILY, Cadence.WEEKLY, Cadence.FORTNIGHTLY, Cadence.MONTHLY, Cadence.OFF)
PAUSES = {"week": timedelta(days=7), "month": timedelta(days=30)}
# "Not now": asked again this long later (at random in between), if the window is still
# open then; with a short test cadence, a third of it.
NOT_NOW = (timedelta(minutes=20), timedelta(minutes=40))
# A prompt missed by more than this (the bot was down) waits for the member's next window.
ON_TIME = timedelta(minutes=10)
SWEEP_BATCH = 50  # rows per transaction: updates get the database in between
YIELD_EVERY = 10  # members handled between two turns of the event loop (~1 ms each)
# The jitter must not be predictable from earlier prompts: never a seeded Mersenne Twister.
RNG: random.Random = random.SystemRandom()


@dataclass(frozen=True)
class Plan:
    """What a member's prompts follow. ``every`` is a cadence, or a plain duration (a short
    test setting such as ``2m``)."""

    every: Every
    window: Window
    zone: str
    grace: timedelta

    def __repr__(self) -> str:
        return "Plan(<sealed>)"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    @property
    def off(self) -> bool:
        return self.every is Cadence.OFF

    def to_bytes(self) -> bytes:
        every = self.every if isinstance(self.every, Cadence) else format_duration(self.every)
        payload = {
            "v": PLAN_VERSION,
            "every": str(every),
            "window": str(self.window),
            "zone": self.zone,
            "grace": format_duration(self.grace),
        }
        return json.dumps(payload, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> Plan:
        payload = json.loads(data)
        if payload.get("v") != PLAN_VERSION:
            raise ValueError("unknown schedule plan version")
        every_text = payload["every"]
        every: Every = (
            Cadence(every_text)
            if every_text in {c.value for c in Cadence}
            else cadence_for(parse_duration(every_text))
        )
        return cls(
            every=every,
            window=parse_window(payload["window"]),
            zone=payload["zone"],
            grace=parse_duration(payload["grace"]),
        )


def default_plan(settings: Settings) -> Plan:
    """A new member's plan: SAFERELAY_CHECKIN_EVERY, _WINDOW, _GRACE, _DEFAULT_TIMEZONE."""
    return Plan(
        every=cadence_for(settings.checkin_every),
        window=settings.checkin_window,
        zone=settings.default_timezone,
        grace=settings.checkin_grace,
    )


def plan_place(person_id: str) -> RecordPlace:
    return RecordPlace("schedules", "plan", person_id)


def read_plan(keys: ServerSecrets, row: Schedule) -> Plan:
    return Plan.from_bytes(keys.server_box.open(row.plan, plan_place(row.person_id)))


def _store_plan(keys: ServerSecrets, row: Schedule, plan: Plan) -> None:
    row.plan = keys.server_box.seal(plan.to_bytes(), plan_place(row.person_id))


def _first_prompt(plan: Plan, now: datetime, rng: random.Random) -> datetime | None:
    """A new member is first asked in a window from the next day on: minutes after the
    welcome would be odd, and they can check in themselves any time. A short interval (a
    test setting) starts at once, so the ladder can be watched in minutes."""
    if isinstance(plan.every, timedelta) and plan.every % timedelta(days=1):
        return next_prompt(now, plan.every, plan.window, plan.tz, rng)
    return next_prompt(now + timedelta(days=1), plan.every, plan.window, plan.tz, rng)


def start_schedule(
    session: AsyncSession,
    core: Core,
    person_id: str,
    *,
    now: datetime | None = None,
    rng: random.Random = RNG,
) -> Schedule:
    """Give a newly enrolled member their schedule, on the defaults from settings."""
    now = now or utcnow()
    plan = default_plan(core.settings)
    row = Schedule(
        person_id=person_id,
        plan=b"",
        next_at=_first_prompt(plan, now, rng),
        watch_step=WatchStep.QUIET.value,
    )
    _store_plan(core.secrets, row, plan)
    session.add(row)
    return row


async def ensure_schedules(core: Core, *, now: datetime | None = None) -> int:
    """Schedules for active members who have none (enrolled before schedules existed).
    Run at start-up; returns how many were made."""
    made = 0
    while True:
        async with core.sessions() as session, session.begin():
            missing = list(
                await session.scalars(
                    select(Person.id)
                    .outerjoin(Schedule, Schedule.person_id == Person.id)
                    .where(
                        Person.role == Role.MEMBER.value,
                        Person.revoked_at.is_(None),
                        Person.erased.is_(False),
                        Schedule.person_id.is_(None),
                    )
                    .limit(SWEEP_BATCH)
                )
            )
            for person_id in missing:
                start_schedule(session, core, person_id, now=now)
        made += len(missing)
        if len(missing) < SWEEP_BATCH:
            return made
        await asyncio.sleep(0)


async def schedule_of(session: AsyncSession, person_id: str) -> Schedule | None:
    return await session.get(Schedule, person_id)


def paused(row: Schedule, now: datetime) -> bool:
    return row.paused_until is not None and row.paused_until > now


def watch_paused(row: Schedule, now: datetime) -> bool:
    return row.watch_paused_until is not None and row.watch_paused_until > now


def _quiet(row: Schedule) -> None:
    """The member answered in some way (not now, a pause, a new plan): no reminder or alert
    is pending. An alert already raised stays until they check in."""
    if row.watch_step != WatchStep.ALERTED.value:
        row.watch_step, row.watch_at, row.silent_since = WatchStep.QUIET.value, None, None


def _reschedule(row: Schedule, plan: Plan, now: datetime, rng: random.Random) -> None:
    """The next prompt after a change of plan or pause, counted from the last one sent."""
    if paused(row, now):
        assert row.paused_until is not None
        start = row.paused_until
    else:
        start = now
    row.next_at = prompt_after_pause(
        start, now, plan.every, plan.window, plan.tz, rng, row.last_prompt_at
    )


async def change_plan(
    session: AsyncSession,
    keys: ServerSecrets,
    person_id: str,
    *,
    every: Every | None = None,
    window: Window | None = None,
    zone: str | None = None,
    now: datetime | None = None,
    rng: random.Random = RNG,
) -> Plan | None:
    """Change a member's cadence, window or zone (by the member, or by staff who may);
    the next prompt is drawn again. None if they have no schedule."""
    row = await session.get(Schedule, person_id)
    if row is None:
        return None
    now = now or utcnow()
    plan = read_plan(keys, row)
    if zone is not None:
        ZoneInfo(zone)  # raises for an unknown zone before anything is stored
    plan = replace(
        plan,
        every=plan.every if every is None else every,
        window=window or plan.window,
        zone=zone or plan.zone,
    )
    _store_plan(keys, row, plan)
    if plan.off:
        _quiet(row)
    _reschedule(row, plan, now, rng)
    return plan


async def pause_prompts(
    session: AsyncSession,
    keys: ServerSecrets,
    person_id: str,
    length: timedelta | None,
    *,
    now: datetime | None = None,
    rng: random.Random = RNG,
) -> Schedule | None:
    """Pause a member's prompts for ``length`` (None: resume now). A pause postpones
    prompts and never adds one; a member who paused is not silent, so nothing is pending on
    the welfare watch."""
    row = await session.get(Schedule, person_id)
    if row is None:
        return None
    now = now or utcnow()
    row.paused_until = now + length if length is not None else None
    _quiet(row)
    _reschedule(row, read_plan(keys, row), now, rng)
    return row


async def not_now(
    session: AsyncSession,
    keys: ServerSecrets,
    person_id: str,
    *,
    now: datetime | None = None,
    rng: random.Random = RNG,
) -> bool:
    """ "Not now" on a prompt: ask again later in the same window if it is still open then,
    else in the next window. False if there is nothing to put off."""
    row = await session.get(Schedule, person_id)
    if row is None:
        return False
    now = now or utcnow()
    plan = read_plan(keys, row)
    if plan.off or paused(row, now):
        return False
    low, high = NOT_NOW
    if isinstance(plan.every, timedelta):
        low, high = min(low, plan.every / 3), min(high, plan.every / 2)
    later = now + low + (high - low) * rng.random()
    later = later.replace(microsecond=0)
    if not plan.window.contains(later.astimezone(plan.tz).time()):
        # Too late for this window: the next one, whatever the cadence (it was put off,
        # not answered). A day cadence's next window is tomorrow's.
        every: Every = plan.every if isinstance(plan.every, timedelta) else Cadence.DAILY
        nxt = next_prompt(later, every, plan.window, plan.tz, rng)
        later = nxt if nxt is not None else later
    row.next_at = later
    _quiet(row)
    return True


def prompt_message(language: str, *, reminder: bool = False) -> Outgoing:
    """The prompt: an everyday line, the five health buttons, "not now"."""
    rows = [[(t(language, f"checkin_health_{n}"), f"ci:p:{n}")] for n in range(5, 0, -1)]
    rows.append([(t(language, "btn_not_now"), "ci:later")])
    return Outgoing(
        t(language, "prompt_reminder" if reminder else "prompt_text"),
        rows,
        priority=PRIORITY_BULK,
        replaces=PROMPT,
    )


def queue_prompt(
    session: AsyncSession, keys: ServerSecrets, member: Person, *, reminder: bool = False
) -> None:
    message = replace(
        prompt_message(member.language, reminder=reminder),
        link=About(member.id, None, PROMPT),
    )
    enqueue(session, keys, member.id, message)


# What a sweep does with one due member: returns 1 if it acted.
Step = Callable[[AsyncSession, Schedule, Person], Awaitable[int]]


async def sweep_due(
    core: Core,
    deadline: InstrumentedAttribute[datetime | None],
    step: Step,
    *,
    now: datetime,
    batch: int = SWEEP_BATCH,
    progress: Callable[[], None] = lambda: None,
) -> int:
    """Call ``step`` for every schedule row whose ``deadline`` (``next_at`` or
    ``watch_at``) has come, earliest first, ``batch`` rows per transaction; returns how
    many acted. ``step`` moves the deadline on in the same transaction, so a crash mid-sweep
    repeats nothing that was committed, and a row is never done twice."""
    acted = 0
    while True:
        async with core.sessions() as session, session.begin():
            due = list(
                (
                    await session.execute(
                        select(Schedule, Person)
                        .join(Person, Person.id == Schedule.person_id)
                        .where(deadline <= now)
                        .order_by(deadline)
                        .limit(batch)
                    )
                ).all()
            )
            # Nothing is flushed until the commit, so no write lock is held while the
            # messages are made; every few members the loop lets waiting updates run.
            with session.no_autoflush:
                for n, (row, member) in enumerate(due, 1):
                    acted += await step(session, row, member)
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
        progress()  # the sender may start on this batch while the next is prepared
        if len(due) < batch:
            return acted
        await asyncio.sleep(0)  # let waiting updates in between batches


async def sweep_prompts(
    core: Core,
    *,
    now: datetime | None = None,
    rng: random.Random = RNG,
    batch: int = SWEEP_BATCH,
    progress: Callable[[], None] = lambda: None,
) -> int:
    """Send every prompt that is due; returns how many were sent. The next time is stored
    in the same step as the send, so a missed period yields one prompt."""
    at = now or utcnow()

    async def step(session: AsyncSession, row: Schedule, member: Person) -> int:
        return await _prompt_one(session, core, row, member, at, rng)

    return await sweep_due(core, Schedule.next_at, step, now=at, batch=batch, progress=progress)


async def _prompt_one(
    session: AsyncSession,
    core: Core,
    row: Schedule,
    member: Person,
    now: datetime,
    rng: random.Random,
) -> int:
    if member.revoked_at is not None or member.erased:
        row.next_at, row.watch_at = None, None  # never due again
        return 0
    plan = read_plan(core.secrets, row)
    decision = catch_up(
        row.next_at or now,
        now,
        plan.every,
        plan.window,
        plan.tz,
        rng,
        row.last_prompt_at,
        on_time=ON_TIME,
    )
    row.next_at = decision.next_at
    if not decision.send_now:
        return 0
    queue_prompt(session, core.secrets, member)
    row.last_prompt_at = now
    if row.watch_step == WatchStep.ALERTED.value and not await alert_open(session, row):
        # Staff resolved the alert while the member stayed silent: watch again from here.
        row.watch_step, row.watch_case_id, row.silent_since = WatchStep.QUIET.value, None, None
    if row.watch_step == WatchStep.QUIET.value and not watch_paused(row, now):
        # The welfare watch starts from the first unanswered prompt of a silence.
        row.watch_step = WatchStep.PROMPTED.value
        row.watch_at = now + plan.grace
        row.silent_since = day(now)
    return 1


async def alert_open(session: AsyncSession, row: Schedule) -> bool:
    """Whether the welfare alert raised for this member is still unresolved."""
    if row.watch_case_id is None:
        return False
    status = await session.scalar(select(Case.status).where(Case.id == row.watch_case_id))
    return status in (CaseStatus.OPEN.value, CaseStatus.CLAIMED.value)


def sweep_interval(settings: Settings) -> float:
    """How often the prompt and welfare sweep runs: often enough for the shortest setting
    (a few times per cadence and per grace period), at most every 30 s."""
    shortest = min(settings.checkin_every, settings.checkin_grace).total_seconds()
    return max(1.0, min(30.0, settings.sweep_seconds, shortest / 6))
