"""Wellbeing prompts and the welfare watch end to end, through the fake Bot API, with short
settings so the whole ladder runs in seconds. A prompt is made due by moving its stored time
into the past: the database is the clock the sweep reads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bot.i18n import t
from bot.schedules import CHINA_TIME, read_plan
from sandbox import FakeUser
from storage.models import Case, CaseStatus, CheckIn, Person, Schedule, WatchStep, utcnow
from tests.conftest import RunningBot, eventually, start_bot, stop_bot
from tests.handlers.conftest import Team, pseudonym_of

FAST = {
    "SAFERELAY_CHECKIN_EVERY": "1h",
    "SAFERELAY_CHECKIN_WINDOW": "00:00-24:00",
    "SAFERELAY_CHECKIN_GRACE": "1h",
    "SAFERELAY_SWEEP_SECONDS": "0.2",
}
LADDER = FAST | {"SAFERELAY_CHECKIN_GRACE": "2s", "SAFERELAY_ESCALATE_MINUTES": "0.05"}


async def person_id(bot: RunningBot, user: FakeUser) -> str:
    async with bot.core.sessions() as session:
        lookup = bot.core.secrets.pepper.user_lookup(user.user_id)
        found = await session.scalar(select(Person.id).where(Person.tg_lookup == lookup))
    assert found is not None
    return str(found)


async def make_due(bot: RunningBot, user: FakeUser, *, ago: timedelta = timedelta(0)) -> None:
    """The member's next prompt time has come (or passed ``ago``)."""
    member_id = await person_id(bot, user)
    async with bot.core.sessions() as session, session.begin():
        await session.execute(
            update(Schedule)
            .where(Schedule.person_id == member_id)
            .values(next_at=utcnow() - ago - timedelta(seconds=1))
        )


async def schedule_row(bot: RunningBot, user: FakeUser) -> Schedule:
    member_id = await person_id(bot, user)
    async with bot.core.sessions() as session:
        row = await session.get(Schedule, member_id)
    assert row is not None
    return row


def prompts_in(user: FakeUser) -> list[str]:
    """Prompts visible in the member's chat now."""
    texts = (t("en", "prompt_text"), t("en", "prompt_reminder"))
    return [m.text or "" for m in user.inbox() if m.text in texts]


@pytest.mark.bot_env(**FAST)
async def test_a_prompt_arrives_protected_and_one_tap_starts_the_check_in(
    bot: RunningBot, team: Team
) -> None:
    member = team.member
    await make_due(bot, member)
    prompt = await member.wait_for_message(t("en", "prompt_text"))
    assert prompt.protect_content
    assert [label for label, _ in prompt.buttons()] == [
        *(t("en", f"checkin_health_{n}") for n in range(5, 0, -1)),
        t("en", "btn_not_now"),
    ]
    await member.press(t("en", "checkin_health_2"), message=prompt)
    # The prompt itself becomes the next question, then the thanks.
    await eventually(
        lambda: _async(prompt.text == t("en", "checkin_threat")), what="threat question"
    )
    await member.press(t("en", "no"), message=prompt)
    await member.press(t("en", "checkin_skip"), message=prompt)
    await eventually(lambda: _async(prompt.text == t("en", "checkin_thanks")), what="thanks")
    async with bot.core.sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(CheckIn))
    assert stored == 1
    row = await schedule_row(bot, member)
    assert row.watch_step == WatchStep.QUIET and row.next_at is not None
    # Health 2 is worrying: the caseworker hears about it, as for any check-in.
    await team.mina.wait_for_message("Health: 2/5")


async def _async(value: bool) -> bool:
    return value


@pytest.mark.bot_env(**FAST)
async def test_not_now_clears_the_prompt_and_asks_again_later(bot: RunningBot, team: Team) -> None:
    member = team.member
    await make_due(bot, member)
    prompt = await member.wait_for_message(t("en", "prompt_text"))
    before = utcnow()
    query = await member.press(t("en", "btn_not_now"), message=prompt)
    await eventually(lambda: _async(prompt.deleted), what="the prompt gone from the chat")
    answer = member.callback_answer(query)
    assert answer is not None and answer.get("text") == t("en", "prompt_later")
    row = await schedule_row(bot, member)
    assert row.next_at is not None and row.next_at > before + timedelta(minutes=10)


@pytest.mark.bot_env(**FAST)
async def test_an_unanswered_prompt_is_deleted_before_the_next_one(
    bot: RunningBot, team: Team
) -> None:
    member = team.member
    for n in range(3):
        await make_due(bot, member)
        await member.wait_for_message(t("en", "prompt_text"), count=None)
        await eventually(
            lambda: _async(
                sum(
                    1
                    for m in bot.api.bot_messages(member.chat_id, include_deleted=True)
                    if m.text == t("en", "prompt_text")
                )
                == n + 1  # noqa: B023
            ),
            what=f"prompt {n + 1}",
        )
        assert len(prompts_in(member)) == 1  # never a pile


@pytest.mark.bot_env(**LADDER)
async def test_silence_reminds_then_alerts_the_caseworker_and_a_check_in_closes_it(
    bot: RunningBot, team: Team
) -> None:
    member, mina = team.member, team.mina
    pseudonym = pseudonym_of(member)
    await make_due(bot, member)
    await member.wait_for_message(t("en", "prompt_text"))
    # One grace period of silence: a gentle reminder, in place of the prompt.
    reminder = await member.wait_for_message(t("en", "prompt_reminder"), timeout=10)
    assert prompts_in(member) == [t("en", "prompt_reminder")]
    # Another: the caseworker is alerted, with a request to claim.
    alert = await mina.wait_for_message(f"{pseudonym} has not checked in since", timeout=10)
    await bot.drained()
    claim = await mina.press(t("en", "btn_claim"), message=alert)
    await eventually(
        lambda: _async((mina.callback_answer(claim) or {}).get("text") == t("en", "claim_done")),
        what="claimed",
    )
    # The member answers the reminder with one tap and two more: the alert closes itself.
    await member.press(t("en", "checkin_health_4"), message=reminder)
    await member.press(t("en", "no"), message=reminder)
    await member.press(t("en", "checkin_skip"), message=reminder)
    await eventually(lambda: _async(reminder.text == t("en", "checkin_thanks")), what="thanks")
    closed = t("en", "alert_welfare_closed", pseudonym=pseudonym)
    await eventually(lambda: _async(alert.text == closed), what="alert closed", within=10)
    async with bot.core.sessions() as session:
        (case,) = list(await session.scalars(select(Case)))
    assert case.status == CaseStatus.RESOLVED
    row = await schedule_row(bot, member)
    assert row.watch_step == WatchStep.QUIET and row.watch_case_id is None


@pytest.mark.bot_env(**LADDER)
async def test_an_unclaimed_welfare_alert_escalates_to_the_admins(
    bot: RunningBot, team: Team
) -> None:
    pseudonym = pseudonym_of(team.member)
    await make_due(bot, team.member)
    await team.mina.wait_for_message(f"{pseudonym} has not checked in since", timeout=15)
    assert not any(pseudonym in (m.text or "") for m in team.admin.inbox())
    escalated = await team.admin.wait_for_message("STILL UNCLAIMED", timeout=15)
    assert f"{pseudonym} has not checked in since" in (escalated.text or "")


@pytest.mark.bot_env(**FAST)
async def test_a_member_who_blocked_the_bot_is_raised_to_their_caseworker(
    bot: RunningBot, team: Team
) -> None:
    pseudonym = pseudonym_of(team.member)
    # Telegram tells the bot at once (my_chat_member: kicked).
    bot.api.block(team.member.user_id)
    alert = t("en", "alert_unreachable", pseudonym=pseudonym)
    await team.mina.wait_for_message(alert, timeout=10)
    row = await schedule_row(bot, team.member)
    assert row.watch_step == WatchStep.ALERTED
    # Prompts refused with 403 after that raise no second alert while this one is open.
    await make_due(bot, team.member)
    await eventually(
        lambda: _async(any(c.status == 403 for c in bot.api.calls_to("sendMessage"))),
        what="the refused prompt",
    )
    await bot.drained()
    assert sum(alert in (m.text or "") for m in team.mina.inbox()) == 1


@pytest.mark.bot_env(**FAST)
async def test_a_send_refused_with_403_raises_the_same_alert(bot: RunningBot, team: Team) -> None:
    # An account deleted: no update comes, only 403 to the next message.
    pseudonym = pseudonym_of(team.member)
    bot.api.fail_next(
        "sendMessage",
        status=403,
        description="Forbidden: user is deactivated",
        chat_id=team.member.chat_id,
    )
    await make_due(bot, team.member)
    alert = t("en", "alert_unreachable", pseudonym=pseudonym)
    await team.mina.wait_for_message(alert, timeout=10)


@pytest.mark.bot_env(**FAST)
async def test_a_restart_sends_a_missed_prompt_once(bot: RunningBot, team: Team) -> None:
    member = team.member
    await stop_bot(bot.app)
    # Down for five periods; back up.
    await make_due(bot, member, ago=timedelta(hours=5))
    app = await start_bot(bot.api, bot.settings)
    try:
        await member.wait_for_message(t("en", "prompt_text"), timeout=10)
        row = await schedule_row(bot, member)
        assert row.next_at is not None and row.next_at > utcnow()
        # More sweeps, run to the end: still one prompt.
        assert app.job_queue is not None
        (sweep,) = app.job_queue.get_jobs_by_name("prompts")
        for _ in range(3):
            await sweep.run(app)
        await bot.drained()
        sent = [
            m
            for m in bot.api.bot_messages(member.chat_id, include_deleted=True)
            if m.text == t("en", "prompt_text")
        ]
        assert len(sent) == 1
    finally:
        await stop_bot(app)


@pytest.mark.bot_env(**FAST)
async def test_members_choose_their_zone_and_pause_in_settings(bot: RunningBot, team: Team) -> None:
    member = team.member
    await member.send_command("settings")
    await member.press(t("en", "set_prompts"))
    screen = await member.wait_for_message(t("en", "zone_kr"))
    await member.press(t("en", "zone_cn"), message=screen)
    await eventually(
        lambda: _async("✓ " + t("en", "zone_cn") in str(screen.buttons())), what="China ticked"
    )
    await member.press(t("en", "sch_pause_week"), message=screen)
    await eventually(lambda: _async("Paused until" in (screen.text or "")), what="paused")
    row = await schedule_row(bot, member)
    assert read_plan(bot.core.secrets, row).zone == CHINA_TIME
    assert row.paused_until is not None and row.next_at is not None
    assert row.next_at >= row.paused_until
    await member.press(t("en", "sch_resume"), message=screen)
    await eventually(lambda: _async("Paused until" not in (screen.text or "")), what="resumed")
    # Where the member is, is nowhere in the clear.
    for path in bot.settings.data_dir.glob("saferelay.db*"):
        assert b"Shanghai" not in path.read_bytes()


@pytest.mark.bot_env(**LADDER)
async def test_staff_see_who_is_due_and_change_a_schedule_with_buttons(
    bot: RunningBot, team: Team
) -> None:
    member, mina, joon = team.member, team.mina, team.joon
    pseudonym = pseudonym_of(member)
    await mina.send_command("due")
    await mina.wait_for_message(t("en", "due_none"))
    await make_due(bot, member)
    await member.wait_for_message(t("en", "prompt_reminder"), timeout=10)
    await mina.send_command("due")
    listing = await mina.wait_for_message(t("en", "due_title"))
    assert f"{pseudonym} · last check-in never · overdue" in (listing.text or "")
    # The caseworker pauses the watch for a week (the member is in hospital).
    await mina.send_command("schedule", pseudonym)
    view = await mina.wait_for_message(f"{pseudonym}\nReminders:")
    await mina.press(t("en", "btn_watch_week"), message=view)
    await eventually(lambda: _async("watch paused until" in (view.text or "")), what="paused")
    row = await schedule_row(bot, member)
    assert row.watch_paused_until is not None and row.watch_step == WatchStep.QUIET
    # Another caseworker's member: not theirs to see or change, even with a forged press.
    await joon.send_command("schedule", pseudonym)
    refused = await joon.wait_for_message(t("en", "schedule_unknown"))
    member_id = await person_id(bot, member)
    query = await joon.forge_press(f"ssch:{member_id}:wr", message=refused)
    await eventually(lambda: _async(joon.callback_answer(query) is not None), what="answer")
    assert (joon.callback_answer(query) or {}).get("text") == t("en", "not_allowed")
    assert (await schedule_row(bot, member)).watch_paused_until is not None
    # A member has no such command.
    await member.send_command("due")
    await member.wait_for_message(t("en", "not_understood"))
