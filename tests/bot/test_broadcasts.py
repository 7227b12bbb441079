"""Broadcasts as services: audiences by intersection, RSVP arithmetic and its limits, who may
see what, and what is kept (and for how long)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from bot.broadcasts import (
    Audience,
    Notice,
    RsvpOutcome,
    _queue_batch,
    answer_rsvp,
    audience_size,
    create_broadcast,
    labels_of,
    my_answer,
    show_progress,
    sweep_broadcasts,
    tag,
    untag,
    who_said_yes,
)
from bot.core import Core
from bot.erasure import erase_member
from bot.people import actor_of
from storage.models import Broadcast, Label, OutboxItem, Person, Role, Rsvp, utcnow
from tests.conftest import bare_people


async def setup(core: Core) -> tuple[Person, Person, list[Person]]:
    (admin,) = bare_people(1, Role.ADMIN)
    (worker,) = bare_people(1, Role.CASEWORKER, start=1)
    members = bare_people(4, start=10)
    members[0].caseworker_id = members[1].caseworker_id = worker.id
    members[1].language = members[3].language = "ko"
    async with core.sessions() as session, session.begin():
        session.add_all([admin, worker, *members])
        await session.flush()
        for member in (members[0], members[2]):
            await tag(session, core.secrets, worker.id, member.id, "North")
        await tag(session, core.secrets, worker.id, members[0].id, "Seoul")
    return admin, worker, members


async def broadcast(
    core: Core, by: Person, audience: Audience, *, event_in: timedelta = timedelta(days=7)
) -> str:
    async with core.sessions() as session, session.begin():
        made = await create_broadcast(
            session,
            core.secrets,
            actor_of(by, core.secrets),
            Notice({"*": "Retreat"}, audience),
            rsvp=True,
            event_at=utcnow() + event_in,
            send_at=utcnow(),
            progress_message_id=None,
        )
    assert made is not None
    await sweep_broadcasts(core)
    return made.id


async def test_a_sweep_that_read_the_broadcast_before_another_queued_it_queues_nothing(
    core: Core,
) -> None:
    """Two sweeps on one broadcast (a process paused past its lease, then resumed): the one
    that read the cursor first and writes second queues no second copy, on either database."""
    admin, _, members = await setup(core)
    async with core.sessions() as session, session.begin():
        made = await create_broadcast(
            session,
            core.secrets,
            actor_of(admin, core.secrets),
            Notice({"*": "Retreat"}, Audience()),
            rsvp=False,
            event_at=None,
            send_at=utcnow(),
            progress_message_id=None,
        )
    assert made is not None
    async with core.sessions() as stale, stale.begin():
        seen = await stale.get(Broadcast, made.id)
        assert seen is not None and seen.cursor is None
        assert await sweep_broadcasts(core) == len(members)  # the other sweep, meanwhile
        assert await _queue_batch(stale, core.secrets, seen, 10) == 0
    async with core.sessions() as session:
        copies = (
            await session.execute(
                select(OutboxItem.recipient_id, func.count())
                .where(OutboxItem.broadcast_id == made.id)
                .group_by(OutboxItem.recipient_id)
            )
        ).all()
        done = await session.get(Broadcast, made.id)
    assert sorted(n for _, n in copies) == [1] * len(members)
    assert done is not None and done.queued == len(members) and done.expanded


async def test_audiences_intersect(core: Core) -> None:
    _, worker, members = await setup(core)
    keys = core.secrets
    async with core.sessions() as session:
        assert await audience_size(session, keys, Audience()) == 4
        assert await audience_size(session, keys, Audience(labels=("north",))) == 2
        assert await audience_size(session, keys, Audience(labels=("NORTH", "seoul"))) == 1
        assert await audience_size(session, keys, Audience(caseworker_id=worker.id)) == 2
        mine_ko = Audience(caseworker_id=worker.id, language="ko")
        assert await audience_size(session, keys, mine_ko) == 1
        assert await labels_of(session, keys, members[0].id) == ["North", "Seoul"]
    async with core.sessions() as session, session.begin():
        assert await untag(session, keys, worker.id, members[0].id, "seoul")
        assert not await tag(session, keys, worker.id, members[0].id, "north")  # had it already
    async with core.sessions() as session:
        assert await labels_of(session, keys, members[0].id) == ["North"]
        # The label text is sealed; only its keyed hash is matched.
        sealed = list(await session.scalars(select(Label.sealed)))
    assert all(b"North" not in blob for blob in sealed)


async def test_rsvp_totals_move_by_the_difference_and_stay_idempotent(core: Core) -> None:
    admin, _, members = await setup(core)
    keys = core.secrets
    notice = await broadcast(core, admin, Audience())

    async def tap(member: Person, choice: str) -> str:
        async with core.sessions() as session, session.begin():
            outcome, _ = await answer_rsvp(session, keys, member.id, notice, choice)
        return outcome

    assert await tap(members[0], "yes") == RsvpOutcome.SAVED
    assert await tap(members[0], "c4") == RsvpOutcome.SAVED
    assert await tap(members[0], "c4") == RsvpOutcome.SAVED  # the same tap twice
    assert await tap(members[1], "maybe") == RsvpOutcome.SAVED
    assert await tap(members[1], "c2") == RsvpOutcome.REFUSED  # a count needs a yes
    assert await tap(members[2], "yes") == RsvpOutcome.SAVED
    assert await tap(members[2], "no") == RsvpOutcome.SAVED
    async with core.sessions() as session:
        row = await session.get(Broadcast, notice)
        assert row is not None
        assert (row.yes, row.no, row.maybe, row.people) == (1, 1, 1, 4)
        answer = await my_answer(session, keys, members[0].id, notice)
        assert answer is not None and (answer.answer, answer.count) == ("yes", 4)
        assert await who_said_yes(session, keys, actor_of(admin, keys), notice) == [
            (members[0].pseudonym, 4)
        ]
        staff = await session.scalar(select(Person).where(Person.role == "caseworker"))
        assert staff is not None
        assert await who_said_yes(session, keys, actor_of(staff, keys), notice) is None


async def test_only_the_audience_may_answer_and_only_until_the_event(core: Core) -> None:
    admin, worker, members = await setup(core)
    keys = core.secrets
    north = await broadcast(core, admin, Audience(labels=("north",)))
    async with core.sessions() as session, session.begin():
        # A forged press for a notice this member was never sent.
        outcome, _ = await answer_rsvp(session, keys, members[1].id, north, "yes")
    assert outcome == RsvpOutcome.REFUSED
    past = await broadcast(core, admin, Audience(), event_in=timedelta(seconds=-1))
    async with core.sessions() as session, session.begin():
        outcome, _ = await answer_rsvp(session, keys, members[1].id, past, "yes")
    assert outcome == RsvpOutcome.CLOSED
    assert worker.id


async def test_answers_are_kept_only_until_the_event_and_the_totals_stay(core: Core) -> None:
    admin, _, members = await setup(core)
    keys = core.secrets
    notice = await broadcast(core, admin, Audience(), event_in=timedelta(days=1))
    async with core.sessions() as session, session.begin():
        await answer_rsvp(session, keys, members[0].id, notice, "yes")
    await show_progress(core, now=utcnow() + timedelta(days=2))
    async with core.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Rsvp)) == 0
        row = await session.get(Broadcast, notice)
    assert row is not None and row.yes == 1 and row.people == 1


async def test_erasing_a_member_takes_their_labels_and_answers(core: Core) -> None:
    admin, _, members = await setup(core)
    keys = core.secrets
    notice = await broadcast(core, admin, Audience())
    async with core.sessions() as session, session.begin():
        await answer_rsvp(session, keys, members[0].id, notice, "yes")
    async with core.sessions() as session, session.begin():
        assert await erase_member(session, keys, members[0].id, actor_id=admin.id)
    async with core.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Rsvp)) == 0
        labels = await session.scalar(
            select(func.count()).select_from(Label).where(Label.person_id == members[0].id)
        )
        copies = await session.scalar(
            select(func.count())
            .select_from(OutboxItem)
            .where(OutboxItem.recipient_id == members[0].id)
        )
    assert labels == 0 and copies == 0
