"""The database-held coordination of several processes (issue 13), on its own: a sweep's
lease, and the flood budget turns are taken from. Both are the same statements on SQLite
and PostgreSQL; tests/bot/test_workers.py runs them in real processes."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import timedelta

from bot.core import Core
from bot.sweeps import LEASE_SECONDS, exclusive
from storage import leases
from storage import outbox as queue
from storage.models import OutboxItem, new_id, utcnow
from tests.conftest import bare_people


async def test_a_sweep_runs_in_one_place_at_a_time(core: Core) -> None:
    # Given one run of the prompts sweep under way
    async with exclusive(core, "prompts") as first:
        # When another run (of this process or another) starts meanwhile
        async with exclusive(core, "prompts") as second:
            pass
        # ... while a different sweep is free to run
        async with exclusive(core, "escalations") as other:
            pass
    # Then only the first ran; once it ended, the next run may
    async with exclusive(core, "prompts") as later:
        pass
    assert (first, second, other, later) == (True, False, True, True)


async def test_a_lease_left_by_a_dead_process_runs_out(core: Core) -> None:
    # Given a process that took the escalations sweep and died without giving it back
    now = time.time()
    async with core.sessions() as session, session.begin():
        assert await leases.take(session, "escalations", new_id(), now, now + LEASE_SECONDS)
    async with exclusive(core, "escalations") as meanwhile:
        pass
    # When its lease has run out
    later = now + LEASE_SECONDS + 1
    async with core.sessions() as session, session.begin():
        taken = await leases.take(session, "escalations", new_id(), later, later + 30)
    # Then another process takes the sweep over
    assert (meanwhile, taken) == (False, True)


async def test_concurrent_claims_never_take_one_item_twice(core: Core) -> None:
    # Given 40 messages for 40 people
    people = bare_people(40)
    async with core.sessions() as session, session.begin():
        session.add_all(people)
        await session.flush()
        session.add_all(OutboxItem(id=new_id(), recipient_id=p.id, payload=b"x") for p in people)

    async def claim(owner: str) -> str | None:
        async with core.sessions() as session, session.begin():
            got = await queue.claim_next(
                session, owner, utcnow(), lease=timedelta(seconds=15), per_chat=1.05
            )
            if got is None:
                return None
            turn = await queue.reserve_turn(session, spacing=1 / 28.8)
            taken = await queue.take_chat_turn(session, got.recipient_id, turn.at, per_chat=1.05)
        return got.id if taken else None

    # When eight senders claim five times each, all at once
    claimed = await asyncio.gather(*(claim(f"sender {n % 8}") for n in range(40)))
    # Then no item was given to two of them
    got = [c for c in claimed if c is not None]
    assert len(got) == len(set(got)) == 40


async def test_turns_given_out_are_spaced_however_many_take_them(core: Core) -> None:
    # When 60 turns are reserved at once (as by several processes)
    async def turn() -> float:
        async with core.sessions() as session, session.begin():
            return (await queue.reserve_turn(session, spacing=1 / 28.8)).at

    turns = sorted(await asyncio.gather(*(turn() for _ in range(60))))
    # Then they are spaced at the rate: no second holds more than 29 of them
    assert all(b - a >= 1 / 28.8 - 1e-9 for a, b in itertools.pairwise(turns))
    assert min(b - a for a, b in zip(turns, turns[29:], strict=False)) > 1.0


async def test_a_turn_is_given_no_sooner_than_the_lead_asked_for(core: Core) -> None:
    # When a turn is asked for with a 40 ms lead, the budget otherwise idle
    async with core.sessions() as session, session.begin():
        turn = await queue.reserve_turn(session, spacing=1 / 28.8, lead=0.04)
    # Then it comes 40 ms after the database gave it: time to commit and be ready
    # (PostgreSQL reads its clock afresh at each mention in the statement, a hair apart)
    assert 0.035 < turn.wait <= 0.04 + 1e-6


async def test_a_chat_turn_moves_only_for_the_sender_that_missed_it(core: Core) -> None:
    (person,) = bare_people(1)
    async with core.sessions() as session, session.begin():
        session.add(person)
    at = time.time()

    async def chat_turn(when: float, previous: float | None = None) -> bool:
        async with core.sessions() as session, session.begin():
            return await queue.take_chat_turn(
                session, person.id, when, per_chat=1.05, previous=previous
            )

    # Given a sender that took this chat's turn
    assert await chat_turn(at)
    # When another asks for the chat half a second later, it is refused (one a second)
    assert not await chat_turn(at + 0.5)
    # ... but the sender whose turn passed unsent moves it to its next one
    assert await chat_turn(at + 0.5, previous=at)
    # ... once: the turn it missed is no longer the chat's
    assert not await chat_turn(at + 0.6, previous=at)
