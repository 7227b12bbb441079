"""Retention: old sealed records go; only anonymous yearly counts stay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

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
    async with core.sessions() as session, session.begin():
        purged = await purge_old_records(session, retention_days=365)
    assert purged == 8
    async with core.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CheckIn)) == 1
        tallies = {(t.period, t.name): t.value for t in await session.scalars(select(Tally))}
    assert tallies[(str(old_big.year), "checkins_purged")] == 6
    # A year with two members is not broken down: it joins an undated pool
    assert (str(old_small.year), "checkins_purged") not in tallies  # 400 days apart: other year
    assert tallies[("small-years", "checkins_purged")] == 2
    await core.engine.dispose()
