"""Retention: old sealed records go; only anonymous yearly counts stay."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from bot.app import build_core
from bot.checkins import CheckInAnswers, record_checkin
from bot.retention import purge_old_records
from storage.db import migrate
from storage.models import CheckIn, Tally, utcnow
from tests.conftest import bare_people, make_settings


async def test_old_records_are_purged_and_only_counts_of_five_or_more_remain(
    data_dir: Path,
) -> None:
    core = build_core(make_settings(data_dir))
    await migrate(core.engine)
    now = utcnow()
    old_big, old_small = now - timedelta(days=800), now - timedelta(days=400)
    async with core.sessions() as session, session.begin():
        people = bare_people(6)
        session.add_all(people)
        await session.flush()
        for person in people:  # six members two-plus years ago
            await record_checkin(
                session, core.secrets.team_sealer, person.id, CheckInAnswers(3, False), at=old_big
            )
        for person in people[:2]:  # two members a year and a bit ago
            await record_checkin(
                session, core.secrets.team_sealer, person.id, CheckInAnswers(2, True), at=old_small
            )
        await record_checkin(
            session,
            core.secrets.team_sealer,
            people[0].id,
            CheckInAnswers(4, False),
            at=now - timedelta(days=3),
        )
    purged = await purge_old_records(core.sessions, retention_days=365)
    assert purged == 8
    async with core.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CheckIn)) == 1
        tallies = {(t.period, t.name): t.value for t in await session.scalars(select(Tally))}
    assert tallies[(str(old_big.year), "checkins_purged")] == 6
    # A year with two members is not broken down: it joins an undated pool
    assert (str(old_small.year), "checkins_purged") not in tallies  # 400 days apart: other year
    assert tallies[("small-years", "checkins_purged")] == 2
    await core.engine.dispose()


async def test_a_purge_larger_than_a_batch_commits_batch_by_batch_and_counts_the_same(
    data_dir: Path,
) -> None:
    # Given 14 old check-ins -- six members twice in one year, two members once in another --
    # and one recent one
    core = build_core(make_settings(data_dir))
    await migrate(core.engine)
    now = utcnow()
    big_year, small_year = now - timedelta(days=800), now - timedelta(days=400)
    async with core.sessions() as session, session.begin():
        people = bare_people(6)
        session.add_all(people)
        await session.flush()
        for person in people * 2:
            await record_checkin(
                session, core.secrets.team_sealer, person.id, CheckInAnswers(3, False), at=big_year
            )
        for person in people[:2]:
            await record_checkin(
                session, core.secrets.team_sealer, person.id, CheckInAnswers(2, True), at=small_year
            )
        await record_checkin(
            session, core.secrets.team_sealer, people[0].id, CheckInAnswers(4, False), at=now
        )
    # When the purge deletes five rows at a time, while we watch what the database is told
    said: list[str] = []

    def statement(_c: Any, _cur: Any, sql: str, *_: Any) -> None:
        if sql.startswith("DELETE FROM checkins"):
            said.append("delete")

    def commit(_connection: Any) -> None:
        said.append("commit")

    event.listen(core.engine.sync_engine, "before_cursor_execute", statement)
    event.listen(core.engine.sync_engine, "commit", commit)
    try:
        purged = await purge_old_records(core.sessions, retention_days=365, batch=5)
    finally:
        event.remove(core.engine.sync_engine, "before_cursor_execute", statement)
        event.remove(core.engine.sync_engine, "commit", commit)
    # Then all 14 went, in three deletes, each committed before the next began (no
    # transaction holds the write lock for the whole purge)
    assert purged == 14
    deletes = [n for n, word in enumerate(said) if word == "delete"]
    assert len(deletes) == 3
    for this, following in itertools.pairwise([*deletes, len(said)]):
        assert "commit" in said[this:following]
    # ... the recent check-in stays, and the tallies are those of one big purge: a year's
    # six members count as six even where a batch held fewer of them
    async with core.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CheckIn)) == 1
        tallies = {(t.period, t.name): t.value for t in await session.scalars(select(Tally))}
    assert tallies == {
        (str(big_year.year), "checkins_purged"): 12,
        ("small-years", "checkins_purged"): 2,
    }
    await core.engine.dispose()
