"""Prompts and the welfare watch as services, with the clock and the dice in the test's hand:
every function takes ``now``, and the random draws come from a seeded generator."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from bot.cadence import Cadence, parse_window
from bot.cases import CaseStatus, HelpRequest, read_brief
from bot.chat import PROMPT
from bot.checkins import CheckInAnswers, submit_checkin
from bot.core import Core
from bot.delivery import PRIORITY_BULK, Outgoing, payload_place
from bot.i18n import day_text
from bot.people import actor_of
from bot.schedules import (
    CHINA_TIME,
    Plan,
    change_plan,
    ensure_schedules,
    not_now,
    pause_prompts,
    read_plan,
    start_schedule,
    sweep_prompts,
)
from bot.welfare import due_for, pause_watch, sweep_watch, unreachable
from storage.models import Case, OutboxItem, Person, Role, Schedule, WatchStep
from tests.conftest import bare_people

SEOUL = ZoneInfo("Asia/Seoul")
# A Monday, 12:00 in Seoul: outside the default 19:00-21:00 window.
MONDAY_NOON = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def local(moment: datetime, zone: ZoneInfo = SEOUL) -> datetime:
    return moment.astimezone(zone)


async def people(core: Core, *, with_caseworker: bool = True) -> tuple[Person, Person, Person]:
    """A member (of ``worker`` unless told otherwise), their caseworker and an admin."""
    (member,) = bare_people(1)
    (worker,) = bare_people(1, Role.CASEWORKER)
    (admin,) = bare_people(1, Role.ADMIN, start=1)
    if with_caseworker:
        member.caseworker_id = worker.id
    async with core.sessions() as session, session.begin():
        session.add_all([worker, admin, member])
    return member, worker, admin


async def enrolled(core: Core, member: Person, now: datetime, seed: int = 1) -> Schedule:
    async with core.sessions() as session, session.begin():
        row = start_schedule(session, core, member.id, now=now, rng=random.Random(seed))
    return row


async def row_of(core: Core, person_id: str) -> Schedule:
    async with core.sessions() as session:
        row = await session.get(Schedule, person_id)
    assert row is not None
    return row


async def set_next(core: Core, person_id: str, when: datetime | None) -> None:
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(Schedule).where(Schedule.person_id == person_id).values(next_at=when)
        )


async def queued(core: Core, recipient_id: str) -> list[Outgoing]:
    async with core.sessions() as session:
        items = list(
            await session.scalars(
                select(OutboxItem)
                .where(OutboxItem.recipient_id == recipient_id)
                .order_by(OutboxItem.created_at)
            )
        )
    return [
        Outgoing.from_bytes(
            core.secrets.server_box.open(i.payload or b"", payload_place(i.id)), i.priority
        )
        for i in items
    ]


async def cases_of(core: Core, member_id: str) -> list[Case]:
    async with core.sessions() as session:
        return list(await session.scalars(select(Case).where(Case.member_id == member_id)))


async def test_a_new_member_gets_the_default_plan_sealed_and_a_prompt_in_tomorrows_window(
    core: Core,
) -> None:
    member, _, _ = await people(core)
    row = await enrolled(core, member, MONDAY_NOON)
    plan = read_plan(core.secrets, row)
    assert plan == Plan(Cadence.WEEKLY, parse_window("19:00-21:00"), "Asia/Seoul", timedelta(2))
    # The zone is never in the clear: "China time" would mark someone in hiding.
    assert b"Asia" not in row.plan and b"weekly" not in row.plan
    assert row.next_at is not None
    assert local(row.next_at).date() == local(MONDAY_NOON).date() + timedelta(days=1)
    assert 19 <= local(row.next_at).hour < 21
    assert row.watch_step == WatchStep.QUIET


async def test_a_due_prompt_is_sent_once_with_its_buttons_and_the_watch_starts(
    core: Core,
) -> None:
    member, _, _ = await people(core)
    row = await enrolled(core, member, MONDAY_NOON)
    assert row.next_at is not None
    due = row.next_at
    # Before its time: nothing.
    assert await sweep_prompts(core, now=due - timedelta(seconds=1)) == 0
    # At its time: one prompt, at bulk priority, replacing any older prompt in the chat.
    assert await sweep_prompts(core, now=due, rng=random.Random(2)) == 1
    (prompt,) = await queued(core, member.id)
    assert prompt.priority == PRIORITY_BULK and prompt.replaces == PROMPT
    assert [data for row_ in prompt.buttons for _, data in row_] == [
        "ci:p:5",
        "ci:p:4",
        "ci:p:3",
        "ci:p:2",
        "ci:p:1",
        "ci:later",
    ]
    after = await row_of(core, member.id)
    assert after.last_prompt_at == due
    assert after.next_at is not None and local(after.next_at).date() == local(due).date() + (
        timedelta(days=7)
    )
    assert after.watch_step == WatchStep.PROMPTED
    assert after.watch_at == due + timedelta(days=2)
    # The same sweep again sends nothing more.
    assert await sweep_prompts(core, now=due) == 0


async def test_prompts_missed_while_down_are_sent_once_not_once_per_period(core: Core) -> None:
    member, _, _ = await people(core)
    row = await enrolled(core, member, MONDAY_NOON)
    assert row.next_at is not None
    # Down for three weeks; back up inside a window (local 20:00, three weeks on).
    back = local(row.next_at).replace(hour=20, minute=0) + timedelta(days=21)
    assert await sweep_prompts(core, now=back.astimezone(UTC)) == 1
    assert await sweep_prompts(core, now=back.astimezone(UTC) + timedelta(minutes=1)) == 0
    assert len(await queued(core, member.id)) == 1
    after = await row_of(core, member.id)
    assert after.next_at is not None and after.next_at > back


async def test_a_prompt_missed_outside_the_window_waits_for_the_next_window(core: Core) -> None:
    member, _, _ = await people(core)
    row = await enrolled(core, member, MONDAY_NOON)
    assert row.next_at is not None
    # Back up at 03:00 local, hours after the window closed: no buzz in the night.
    night = local(row.next_at).replace(hour=3) + timedelta(days=1)
    assert await sweep_prompts(core, now=night.astimezone(UTC)) == 0
    moved = (await row_of(core, member.id)).next_at
    assert moved is not None and local(moved).date() == night.date()
    assert 19 <= local(moved).hour < 21
    assert await sweep_prompts(core, now=moved) == 1


async def test_jitter_keeps_prompts_inside_the_window_and_never_at_the_same_minute(
    core: Core,
) -> None:
    member, _, _ = await people(core)
    row = await enrolled(core, member, MONDAY_NOON, seed=7)
    async with core.sessions() as session, session.begin():
        await change_plan(session, core.secrets, member.id, every=Cadence.DAILY, now=MONDAY_NOON)
    rng = random.Random(3)
    minutes = []
    now = (await row_of(core, member.id)).next_at
    for _ in range(30):
        assert now is not None
        assert await sweep_prompts(core, now=now, rng=rng) == 1
        wall = local(now)
        assert 19 <= wall.hour < 21
        minutes.append((wall.hour, wall.minute))
        now = (await row_of(core, member.id)).next_at
    assert all(a != b for a, b in itertools.pairwise(minutes))
    assert len(set(minutes)) > 15  # spread over the window, not a fixed time
    assert row.person_id == member.id


async def test_zone_window_and_cadence_changes_draw_the_next_prompt_again(core: Core) -> None:
    member, _, _ = await people(core)
    await enrolled(core, member, MONDAY_NOON)
    async with core.sessions() as session, session.begin():
        plan = await change_plan(
            session,
            core.secrets,
            member.id,
            zone=CHINA_TIME,
            window=parse_window("07:00-09:00"),
            now=MONDAY_NOON,
        )
    assert plan is not None and plan.zone == CHINA_TIME
    row = await row_of(core, member.id)
    assert row.next_at is not None and 7 <= local(row.next_at, ZoneInfo(CHINA_TIME)).hour < 9
    async with core.sessions() as session, session.begin():
        await change_plan(session, core.secrets, member.id, every=Cadence.OFF, now=MONDAY_NOON)
    assert (await row_of(core, member.id)).next_at is None
    assert await sweep_prompts(core, now=MONDAY_NOON + timedelta(days=60)) == 0


async def test_pause_postpones_prompts_and_resume_brings_them_back(core: Core) -> None:
    member, _, _ = await people(core)
    await enrolled(core, member, MONDAY_NOON)
    async with core.sessions() as session, session.begin():
        await pause_prompts(session, core.secrets, member.id, timedelta(days=30), now=MONDAY_NOON)
    row = await row_of(core, member.id)
    assert row.paused_until == MONDAY_NOON + timedelta(days=30)
    assert row.next_at is not None and row.next_at >= row.paused_until
    assert await sweep_prompts(core, now=MONDAY_NOON + timedelta(days=20)) == 0
    later = MONDAY_NOON + timedelta(days=3)
    async with core.sessions() as session, session.begin():
        await pause_prompts(session, core.secrets, member.id, None, now=later)
    row = await row_of(core, member.id)
    assert row.paused_until is None
    assert row.next_at is not None and later < row.next_at < later + timedelta(days=2)


async def test_not_now_asks_again_later_in_the_same_window(core: Core) -> None:
    member, _, _ = await people(core)
    row = await enrolled(core, member, MONDAY_NOON)
    assert row.next_at is not None
    at = local(row.next_at).replace(hour=19, minute=5).astimezone(UTC)
    async with core.sessions() as session, session.begin():
        assert await not_now(session, core.secrets, member.id, now=at, rng=random.Random(1))
    again = (await row_of(core, member.id)).next_at
    assert again is not None and timedelta(minutes=20) <= again - at <= timedelta(minutes=40)
    # Near the end of the window: tomorrow's window instead.
    late = local(row.next_at).replace(hour=20, minute=50).astimezone(UTC)
    async with core.sessions() as session, session.begin():
        await not_now(session, core.secrets, member.id, now=late, rng=random.Random(1))
    tomorrow = (await row_of(core, member.id)).next_at
    assert tomorrow is not None and local(tomorrow).date() == local(late).date() + timedelta(1)
    assert 19 <= local(tomorrow).hour < 21


async def prompted(core: Core, member: Person) -> datetime:
    """The member's first prompt sent; returns when."""
    row = await enrolled(core, member, MONDAY_NOON)
    assert row.next_at is not None
    assert await sweep_prompts(core, now=row.next_at) == 1
    return row.next_at


async def test_silence_climbs_the_ladder_and_a_check_in_closes_it(core: Core) -> None:
    member, worker, admin = await people(core)
    sent = await prompted(core, member)
    grace = timedelta(days=2)
    # Within the grace period: nothing.
    assert await sweep_watch(core, now=sent + grace - timedelta(seconds=1)) == 0
    # One grace period: a gentle reminder to the member, in other words.
    assert await sweep_watch(core, now=sent + grace) == 1
    reminder = (await queued(core, member.id))[-1]
    assert reminder.replaces == PROMPT and "ci:p:3" in str(reminder.buttons)
    assert (await row_of(core, member.id)).watch_step == WatchStep.REMINDED
    assert await queued(core, worker.id) == []
    # Two: their caseworker is alerted, with a request they can claim.
    assert await sweep_watch(core, now=sent + 2 * grace) == 1
    (case,) = await cases_of(core, member.id)
    assert case.status == CaseStatus.OPEN and case.escalate_at is not None
    brief = read_brief(core.secrets, case)
    assert brief is not None and brief.category == "silent"
    (alert,) = await queued(core, worker.id)
    # Never checked in: the day of the first prompt they left unanswered.
    since = day_text("en", sent.date())
    assert f"{member.pseudonym} has not checked in since {since}." in alert.text
    assert "case:claim:" in str(alert.buttons)
    assert await queued(core, admin.id) == []  # the admins hear when nobody claims it
    row = await row_of(core, member.id)
    assert row.watch_step == WatchStep.ALERTED and row.watch_case_id == case.id
    assert await sweep_watch(core, now=sent + 10 * grace) == 0  # one alert, not a stream
    # The member checks in: the alert closes by itself.
    async with core.sessions() as session, session.begin():
        await submit_checkin(session, core.secrets, member.id, CheckInAnswers(4, False))
    (case,) = await cases_of(core, member.id)
    assert case.status == CaseStatus.RESOLVED and case.brief is None
    row = await row_of(core, member.id)
    assert row.watch_step == WatchStep.QUIET and row.watch_case_id is None


async def test_the_alert_says_the_day_of_the_last_check_in(core: Core) -> None:
    member, worker, _ = await people(core)
    async with core.sessions() as session, session.begin():
        await submit_checkin(session, core.secrets, member.id, CheckInAnswers(3, False))
    sent = await prompted(core, member)
    await sweep_watch(core, now=sent + timedelta(days=2))
    await sweep_watch(core, now=sent + timedelta(days=4))
    (alert,) = await queued(core, worker.id)
    today = datetime.now(UTC).date()
    assert f"has not checked in since {today.day} {today:%B}" in alert.text


async def test_a_member_without_caseworker_is_raised_to_all_staff(core: Core) -> None:
    member, worker, admin = await people(core, with_caseworker=False)
    sent = await prompted(core, member)
    await sweep_watch(core, now=sent + timedelta(days=2))
    await sweep_watch(core, now=sent + timedelta(days=4))
    assert len(await queued(core, worker.id)) == 1
    assert len(await queued(core, admin.id)) == 1


async def test_a_paused_watch_takes_no_steps_but_prompts_go_on(core: Core) -> None:
    member, worker, _ = await people(core)
    sent = await prompted(core, member)
    async with core.sessions() as session, session.begin():
        await pause_watch(session, member.id, sent + timedelta(days=14))
    assert await sweep_watch(core, now=sent + timedelta(days=5)) == 0
    row = await row_of(core, member.id)
    assert row.watch_step == WatchStep.QUIET
    assert row.next_at is not None
    assert await sweep_prompts(core, now=row.next_at) == 1  # a week on: asked as usual
    assert (await row_of(core, member.id)).watch_step == WatchStep.QUIET
    assert await queued(core, worker.id) == []


async def test_unreachable_is_raised_once_per_silence(core: Core) -> None:
    member, worker, _ = await people(core)
    await enrolled(core, member, MONDAY_NOON)
    async with core.sessions() as session, session.begin():
        assert await unreachable(session, core, member.id)
    async with core.sessions() as session, session.begin():
        assert not await unreachable(session, core, member.id)
    (case,) = await cases_of(core, member.id)
    brief = read_brief(core.secrets, case)
    assert brief is not None and brief.category == "unreachable"
    (alert,) = await queued(core, worker.id)
    assert "can't be reached" in alert.text
    # Staff cannot be "unreachable" members.
    async with core.sessions() as session, session.begin():
        assert not await unreachable(session, core, worker.id)


async def test_after_staff_resolve_an_alert_the_next_prompt_watches_again(core: Core) -> None:
    member, _, _ = await people(core)
    sent = await prompted(core, member)
    await sweep_watch(core, now=sent + timedelta(days=2))
    await sweep_watch(core, now=sent + timedelta(days=4))
    async with core.sessions() as session, session.begin():
        await session.execute(update(Case).values(status=CaseStatus.RESOLVED.value))
    row = await row_of(core, member.id)
    assert row.next_at is not None
    await sweep_prompts(core, now=row.next_at)
    row = await row_of(core, member.id)
    assert row.watch_step == WatchStep.PROMPTED and row.watch_case_id is None


async def test_welfare_alerts_do_not_use_up_a_members_urgent_requests(core: Core) -> None:
    from bot.cases import open_case

    member, _, _ = await people(core)
    await enrolled(core, member, MONDAY_NOON)
    async with core.sessions() as session, session.begin():
        await unreachable(session, core, member.id)
    for n in range(2):
        async with core.sessions() as session, session.begin():
            await open_case(session, core, member.id, HelpRequest("danger", "now", f"n{n}"))
    async with core.sessions() as session:
        escalating = await session.scalar(
            select(func.count()).select_from(Case).where(Case.escalate_at.is_not(None))
        )
    assert escalating == 3  # the welfare alert and both of the member's urgent requests


async def test_due_lists_overdue_and_paused_members_of_the_caseworker(core: Core) -> None:
    member, worker, admin = await people(core)
    (stranger_worker,) = bare_people(1, Role.CASEWORKER, start=5)
    (quiet, paused_member) = bare_people(2, start=10)
    quiet.caseworker_id = paused_member.caseworker_id = worker.id
    async with core.sessions() as session, session.begin():
        session.add_all([stranger_worker, quiet, paused_member])
    sent = await prompted(core, member)
    await enrolled(core, quiet, MONDAY_NOON)
    await enrolled(core, paused_member, MONDAY_NOON)
    async with core.sessions() as session, session.begin():
        await pause_prompts(
            session, core.secrets, paused_member.id, timedelta(days=7), now=MONDAY_NOON
        )
    await sweep_watch(core, now=sent + timedelta(days=2))
    async with core.sessions() as session:
        people_by_id = {p.id: p for p in await session.scalars(select(Person))}
        mine = await due_for(session, actor_of(people_by_id[worker.id], core.secrets), now=sent)
        theirs = await due_for(
            session, actor_of(people_by_id[stranger_worker.id], core.secrets), now=sent
        )
        everyone = await due_for(session, actor_of(people_by_id[admin.id], core.secrets), now=sent)
    assert [line.pseudonym for line in mine] == [member.pseudonym, paused_member.pseudonym]
    assert mine[0].step == WatchStep.REMINDED and mine[0].last_checkin is None
    assert mine[1].paused_until is not None
    assert theirs == []
    assert len(everyone) == 2


async def test_members_enrolled_before_schedules_get_one_at_start(core: Core) -> None:
    members = bare_people(3)
    (worker,) = bare_people(1, Role.CASEWORKER)
    async with core.sessions() as session, session.begin():
        session.add_all([*members, worker])
    assert await ensure_schedules(core, now=MONDAY_NOON) == 3
    assert await ensure_schedules(core, now=MONDAY_NOON) == 0
    async with core.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Schedule))
    assert count == 3  # members only


@pytest.mark.parametrize("every", ["2m", "90s"])
async def test_a_short_test_cadence_prompts_within_minutes(core: Core, every: str) -> None:
    from bot.cadence import parse_duration

    member, _, _ = await people(core)
    async with core.sessions() as session, session.begin():
        row = start_schedule(session, core, member.id, now=MONDAY_NOON)
        await session.flush()
        await change_plan(
            session,
            core.secrets,
            member.id,
            every=parse_duration(every),
            window=parse_window("00:00-24:00"),
            now=MONDAY_NOON,
        )
    row = await row_of(core, member.id)
    assert row.next_at is not None and row.next_at - MONDAY_NOON <= timedelta(minutes=3)
