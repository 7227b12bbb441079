"""Broadcasts end to end through the fake Bot API: composing with buttons, audiences,
authorisation, delivery and progress, RSVP and its totals, cancel, restarts."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from bot.broadcasts import Audience, Notice, create_broadcast, sweep_broadcasts
from bot.i18n import t
from bot.people import actor_of
from sandbox import FakeUser
from storage.models import Broadcast, BroadcastStatus, OutboxItem, Person, Role, utcnow
from tests.conftest import RunningBot, eventually, start_bot, stop_bot
from tests.handlers.conftest import Team, ask, pseudonym_of

RETREAT = "Retreat on 24 December, at the usual place. Bring warm clothes."


async def _is(value: bool) -> bool:
    return value


async def compose(
    staff: FakeUser,
    text: str,
    *,
    everyone: bool = True,
    labels: tuple[str, ...] = (),
    rsvp: bool = True,
) -> None:
    """Drive /broadcast to the preview (not sent yet)."""
    await staff.send_command("broadcast")
    await staff.wait_for_message("Who is it for?")
    if everyone:
        await staff.press(t("en", "bc_aud_all"))
    for label in labels:
        await staff.press(t("en", "bc_aud_label"))
        await staff.wait_for_message(t("en", "bc_label_prompt"))
        await staff.send_text(label)
        await staff.wait_for_message(f"#{label}")
    await staff.press(t("en", "bc_next"))
    await staff.wait_for_message("Write the notice")
    await staff.send_text(text)
    await staff.press(t("en", "bc_rsvp_yes" if rsvp else "bc_rsvp_no"))
    if rsvp:
        await staff.press(t("en", "bc_event_in_14"))
    await staff.press(t("en", "bc_when_now"))
    await staff.wait_for_message("To: ")


async def stored_broadcast(bot: RunningBot, text: str, send_at: datetime) -> str:
    """A notice to all members by the admin, stored through the service (as Send does)."""
    async with bot.core.sessions() as session, session.begin():
        admin = await session.scalar(select(Person).where(Person.role == Role.ADMIN.value))
        assert admin is not None
        made = await create_broadcast(
            session,
            bot.core.secrets,
            actor_of(admin, bot.core.secrets),
            Notice({"*": text}, Audience()),
            rsvp=False,
            event_at=None,
            send_at=send_at,
            progress_message_id=None,
        )
        assert made is not None
        return made.id


async def notice_of(member: FakeUser, text: str = RETREAT) -> object:
    return await member.wait_for_message(text, timeout=10)


async def test_an_admin_broadcasts_with_rsvp_and_sees_progress_and_totals(
    bot: RunningBot, team: Team
) -> None:
    admin, member, other = team.admin, team.member, team.other_member
    await compose(admin, RETREAT)
    # The preview is what members will see, buttons included.
    preview = await admin.wait_for_message(RETREAT)
    assert [label for label, _ in preview.buttons()] == ["Yes", "No", "Maybe"]
    summary = await admin.wait_for_message("To: All members (2 members)")
    await admin.press(t("en", "bc_send"), message=summary)
    notice = await member.wait_for_message(RETREAT, timeout=10)
    await other.wait_for_message(RETREAT, timeout=10)
    assert notice.protect_content and "Are you coming?" in (notice.text or "")
    await eventually(lambda: _is("Sent 2 of 2" in (summary.text or "")), what="progress", within=15)
    # One tap, then the head count; the totals follow on the admin's message.
    await member.press("Yes", message=notice)
    await eventually(lambda: _is("3" in str(notice.buttons())), what="count row")
    await member.press("3", message=notice)
    await eventually(
        lambda: _is("1 yes · 0 no · 0 maybe · 3 people expected" in (summary.text or "")),
        what="totals",
        within=15,
    )
    # A changed answer moves the totals, never counts twice.
    await member.press("No", message=notice)
    await other.press("Maybe")
    await eventually(
        lambda: _is("0 yes · 1 no · 1 maybe · 0 people expected" in (summary.text or "")),
        what="changed totals",
        within=15,
    )
    assert "✅ Done." in (summary.text or "")
    # Members never see anyone else's answer or the totals.
    assert not any("expected" in (m.text or "") for m in member.inbox())
    # What they answered is sealed; nothing they wrote or chose is in the clear.
    for path in bot.settings.data_dir.glob("saferelay.db*"):
        assert b"Retreat" not in path.read_bytes()


async def test_progress_edits_are_bounded(bot: RunningBot, team: Team) -> None:
    admin = team.admin
    people = await bot.seed(60, 8_100_000)
    assert len(people) == 60
    await compose(admin, RETREAT, rsvp=False)
    summary = await admin.wait_for_message("To: All members (62 members)")
    started = time.monotonic()
    await admin.press(t("en", "bc_send"), message=summary)
    await eventually(lambda: _is("✅ Done." in (summary.text or "")), what="all sent", within=30)
    elapsed = time.monotonic() - started
    # At most one edit every 3 seconds (plus the confirmation and the final one).
    assert summary.edit_count <= elapsed / 3 + 3, (summary.edit_count, elapsed)
    assert "Sent 62 of 62 · 0 could not be reached" in (summary.text or "")


async def test_a_caseworker_reaches_their_own_members_only(bot: RunningBot, team: Team) -> None:
    mina = team.mina
    await mina.send_command("broadcast")
    screen = await mina.wait_for_message("Who is it for?")
    assert "My members (1 members)" in (screen.text or "")
    assert t("en", "bc_aud_all") not in str(screen.buttons())
    # A forged "all members" press changes nothing.
    await mina.forge_press("bca:all", message=screen)
    await mina.press(t("en", "bc_next"))
    await mina.wait_for_message("Write the notice")
    await mina.send_text("Clinic day on Friday.")
    await mina.press(t("en", "bc_rsvp_no"))
    await mina.press(t("en", "bc_when_now"))
    summary = await mina.wait_for_message("To: My members (1 members)")
    await mina.press(t("en", "bc_send"), message=summary)
    await team.member.wait_for_message("Clinic day on Friday.", timeout=10)
    await eventually(lambda: _is("✅ Done." in (summary.text or "")), what="done", within=15)
    assert not any("Clinic day" in (m.text or "") for m in team.other_member.inbox())


async def test_the_service_refuses_an_audience_beyond_a_caseworker(
    bot: RunningBot, team: Team
) -> None:
    async with bot.core.sessions() as session, session.begin():
        mina = await session.scalar(
            select(Person).where(
                Person.tg_lookup == bot.core.secrets.pepper.user_lookup(team.mina.user_id)
            )
        )
        assert mina is not None
        actor = actor_of(mina, bot.core.secrets)
        made = await create_broadcast(
            session,
            bot.core.secrets,
            actor,
            Notice({"*": "x"}, Audience()),
            rsvp=False,
            event_at=None,
            send_at=utcnow(),
            progress_message_id=None,
        )
    assert made is None


async def test_labels_and_language_narrow_the_audience_and_the_preview_warns(
    bot: RunningBot, team: Team
) -> None:
    admin, member = team.admin, team.member
    pseudonym = pseudonym_of(member)
    await admin.send_command("tag", f"{pseudonym} north")
    await admin.wait_for_message(f"{pseudonym}: #north")
    await compose(admin, "Stay in tonight, refugee checks nearby.", labels=("North",), rsvp=False)
    summary = await admin.wait_for_message("To: All members · #North (1 members)")
    assert "⚠️" in (summary.text or "") and "refugee" in (summary.text or "")
    await admin.press(t("en", "bc_send"), message=summary)
    await member.wait_for_message("Stay in tonight", timeout=10)
    await eventually(lambda: _is("✅ Done." in (summary.text or "")), what="done", within=15)
    assert not any("Stay in" in (m.text or "") for m in team.other_member.inbox())
    # Labels can name places: never in the clear.
    for path in bot.settings.data_dir.glob("saferelay.db*"):
        assert b"north" not in path.read_bytes().lower()
    # A member cannot tag.
    await member.send_command("tag", f"{pseudonym} south")
    await member.wait_for_message(t("en", "not_understood"))


async def test_cancel_at_every_step_stores_nothing(bot: RunningBot, team: Team) -> None:
    admin = team.admin
    await admin.send_command("broadcast")
    await admin.press(t("en", "bc_next"))
    await admin.wait_for_message("Write the notice")
    await admin.send_text("Never sent")
    await admin.press(t("en", "bc_cancel_draft"))
    await admin.wait_for_message(t("en", "cancelled"))
    async with bot.core.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 0


async def test_members_see_current_notices_again_with_their_answer(
    bot: RunningBot, team: Team
) -> None:
    admin, member = team.admin, team.member
    await compose(admin, RETREAT)
    summary = await admin.wait_for_message("To: All members")
    await admin.press(t("en", "bc_send"), message=summary)
    notice = await member.wait_for_message(RETREAT, timeout=10)
    await bot.drained()
    await member.press("Maybe", message=notice)
    await eventually(lambda: _is("✓ Maybe" in str(notice.buttons())), what="ticked")
    await member.send_command("notices")
    again = await member.wait_for_message(RETREAT, since=notice)
    assert "✓ Maybe" in str(again.buttons())


async def test_a_scheduled_broadcast_survives_a_restart_and_goes_out_once(
    bot: RunningBot, team: Team
) -> None:
    await stored_broadcast(bot, "Clinic moved to Thursday.", utcnow() + timedelta(hours=1))
    await stop_bot(bot.app)
    async with bot.core.sessions() as session, session.begin():
        await session.execute(update(Broadcast).values(send_at=utcnow() - timedelta(minutes=5)))
    app = await start_bot(bot.api, bot.settings)
    try:
        await team.member.wait_for_message("Clinic moved", timeout=10)
        await team.other_member.wait_for_message("Clinic moved", timeout=10)
        assert app.job_queue is not None
        (job,) = app.job_queue.get_jobs_by_name("broadcasts")
        await job.run(app)
        await bot.drained()
        for user in (team.member, team.other_member):
            copies = [
                m
                for m in bot.api.bot_messages(user.chat_id, include_deleted=True)
                if "Clinic moved" in (m.text or "")
            ]
            assert len(copies) == 1
    finally:
        await stop_bot(app)


async def test_a_crash_mid_queueing_resumes_without_second_copies(
    bot: RunningBot, team: Team
) -> None:
    await bot.seed(45, 8_200_000)
    # Due tomorrow: the bot's own sweep leaves it alone; the test sweeps "later" itself.
    broadcast_id = await stored_broadcast(bot, "Stay in tonight.", utcnow() + timedelta(days=1))
    later = utcnow() + timedelta(days=2)
    # The process dies after the first batch of 10 was committed.
    calls = 0

    def crash() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("killed")

    try:
        await sweep_broadcasts(bot.core, now=later, batch=10, progress=crash)
    except RuntimeError:
        pass
    await sweep_broadcasts(bot.core, now=later, batch=10)
    async with bot.core.sessions() as session:
        per_member = (
            await session.execute(
                select(OutboxItem.recipient_id, func.count())
                .where(OutboxItem.broadcast_id == broadcast_id)
                .group_by(OutboxItem.recipient_id)
            )
        ).all()
        broadcast = await session.get(Broadcast, broadcast_id)
    assert broadcast is not None and broadcast.expanded and broadcast.queued == 47
    assert len(per_member) == 47 and {n for _, n in per_member} == {1}


async def test_stop_sending_drops_what_is_not_sent(bot: RunningBot, team: Team) -> None:
    admin = team.admin
    await bot.seed(150, 8_300_000)
    await compose(admin, RETREAT, rsvp=False)
    summary = await admin.wait_for_message("To: All members (152 members)")
    await admin.press(t("en", "bc_send"), message=summary)
    await eventually(lambda: _is("Sent " in (summary.text or "")), what="sending", within=10)
    await admin.press(t("en", "bc_cancel"), message=summary)
    await eventually(lambda: _is("✖ Stopped." in (summary.text or "")), what="stopped", within=10)
    await bot.drained()
    sent = len([c for c in bot.api.calls_to("sendMessage") if RETREAT in str(c.params.get("text"))])
    assert sent < 152
    async with bot.core.sessions() as session:
        broadcast = await session.scalar(select(Broadcast))
    assert broadcast is not None and broadcast.status == BroadcastStatus.CANCELLED


async def test_a_members_urgent_request_overtakes_a_broadcast(bot: RunningBot, team: Team) -> None:
    admin = team.admin
    await bot.seed(200, 8_400_000)
    await compose(admin, RETREAT, rsvp=False)
    summary = await admin.wait_for_message("To: All members (202 members)")
    await admin.press(t("en", "bc_send"), message=summary)
    await eventually(lambda: _is("Sent " in (summary.text or "")), what="sending", within=10)
    await ask(team.member, "danger", "now", "please come")
    await team.mina.wait_for_message("please come", timeout=5)
    async with bot.core.sessions() as session:
        broadcast = await session.scalar(select(Broadcast))
    assert broadcast is not None and broadcast.sent < 150  # the broadcast was still going


async def test_one_text_per_language_reaches_each_member_in_theirs(
    bot: RunningBot, team: Team
) -> None:
    admin = team.admin
    other_id = bot.core.secrets.pepper.user_lookup(team.other_member.user_id)
    async with bot.core.sessions() as session, session.begin():
        await session.execute(
            update(Person).where(Person.tg_lookup == other_id).values(language="ko")
        )
    await admin.send_command("broadcast")
    await admin.press(t("en", "bc_aud_all"))
    await admin.press(t("en", "bc_next"))
    await admin.press(t("en", "bc_per_language"))
    await admin.wait_for_message("Text for members who read 한국어")
    await admin.send_text("수요일에 병원 가는 날이에요.")
    await admin.wait_for_message("Text for members who read English")
    await admin.send_text("Clinic day on Wednesday.")
    await admin.press(t("en", "bc_rsvp_no"))
    await admin.press(t("en", "bc_when_now"))
    # One preview per language, then the summary.
    await admin.wait_for_message("수요일에 병원")
    summary = await admin.wait_for_message("To: All members (2 members)")
    await admin.press(t("en", "bc_send"), message=summary)
    await team.other_member.wait_for_message("수요일에 병원 가는 날이에요.", timeout=10)
    await team.member.wait_for_message("Clinic day on Wednesday.", timeout=10)
    assert not any("Clinic" in (m.text or "") for m in team.other_member.inbox())


async def test_only_its_sender_or_an_admin_may_stop_a_broadcast(
    bot: RunningBot, team: Team
) -> None:
    admin = team.admin
    await compose(admin, RETREAT, rsvp=False)
    summary = await admin.wait_for_message("To: All members")
    await admin.press(t("en", "bc_send"), message=summary)
    await eventually(
        lambda: _is("Sent" in (summary.text or "") or "Done" in (summary.text or "")),
        what="progress",
        within=10,
    )
    async with bot.core.sessions() as session:
        broadcast = await session.scalar(select(Broadcast))
    assert broadcast is not None
    await team.mina.send_command("broadcasts")
    listing = await team.mina.wait_for_message(t("en", "bc_none"))
    query = await team.mina.forge_press(f"bc:cancel:{broadcast.id}", message=listing)
    await eventually(lambda: _is(team.mina.callback_answer(query) is not None), what="answer")
    assert (team.mina.callback_answer(query) or {}).get("text") == t("en", "not_allowed")
    query = await team.mina.forge_press(f"bc:yes:{broadcast.id}", message=listing)
    await eventually(lambda: _is(team.mina.callback_answer(query) is not None), what="answer")
    assert (team.mina.callback_answer(query) or {}).get("text") == t("en", "not_allowed")


async def test_a_member_who_blocked_the_bot_is_counted_and_raised(
    bot: RunningBot, team: Team
) -> None:
    admin, other = team.admin, team.other_member
    pseudonym = pseudonym_of(other)
    await compose(admin, RETREAT, rsvp=False)
    summary = await admin.wait_for_message("To: All members (2 members)")
    # Blocked quietly (no update reaches the bot): the send is what finds out.
    bot.api.fail_next(
        "sendMessage",
        status=403,
        description="Forbidden: bot was blocked by the user",
        chat_id=other.chat_id,
    )
    await admin.press(t("en", "bc_send"), message=summary)
    await eventually(
        lambda: _is("Sent 1 of 2 · 1 could not be reached" in (summary.text or "")),
        what="counted",
        within=15,
    )
    # A member with no caseworker: every caseworker and admin hears of it.
    await team.mina.wait_for_message(t("en", "alert_unreachable", pseudonym=pseudonym), timeout=10)
