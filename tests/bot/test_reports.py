"""The yearly survey figures can be reproduced from sealed check-ins, with the team key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.checkins import CheckInAnswers, record_checkin
from bot.reports import yearly_wellbeing
from crypto.keystore import SecretsDir, unlock_team_key
from storage.db import make_engine, make_sessionmaker, migrate
from tests.conftest import PASSPHRASE, bare_people, secrets_of, team_key_of


async def test_yearly_mean_health_and_threat_share(data_dir: Path) -> None:
    # Given five members per year, answering as the organisation's survey did
    secrets_dir = SecretsDir(secrets_of(data_dir))
    keys = secrets_dir.load()
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'r.db'}")
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    answers = {
        2014: [(1, True), (2, False), (2, True), (2, False), (2, True)],  # 1.80, 60 %
        2018: [(3, True), (3, True), (3, True), (3, True), (2, False), (4, True)],
    }
    async with sessions() as session, session.begin():
        members = bare_people(6)
        session.add_all(members)
        people = [m.id for m in members]
        await session.flush()
        for year, rows in answers.items():
            for n, (health, threat) in enumerate(rows):
                at = datetime(year, 3, 1 + n, tzinfo=UTC)
                await record_checkin(
                    session, keys.team_sealer, people[n], CheckInAnswers(health, threat), at=at
                )
    # When the coordinator opens them with the passphrase
    async with sessions() as session:
        rows = await yearly_wellbeing(session, unlock_team_key(team_key_of(data_dir), PASSPHRASE))
    await engine.dispose()
    # Then the figures are the survey's
    assert [(y, m, c) for y, m, c, _, _ in rows] == [(2014, 5, 5), (2018, 6, 6)]
    assert rows[0][3] == pytest.approx(1.80) and rows[0][4] == pytest.approx(0.60)
    assert rows[1][3] == pytest.approx(3.0) and rows[1][4] == pytest.approx(5 / 6)


async def test_saved_figures_outlive_purged_records(data_dir: Path) -> None:
    from sqlalchemy import delete

    from bot.reports import save_yearly
    from storage.models import CheckIn

    secrets_dir = SecretsDir(secrets_of(data_dir))
    keys = secrets_dir.load()
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 's.db'}")
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    opener = unlock_team_key(team_key_of(data_dir), PASSPHRASE)
    async with sessions() as session, session.begin():
        for n, person in enumerate(bare_people(5)):
            session.add(person)
            await session.flush()
            await record_checkin(
                session,
                keys.team_sealer,
                person.id,
                CheckInAnswers(n + 1, n % 2 == 0),
                at=datetime(2019, 5, 1, tzinfo=UTC),
            )
    async with sessions() as session, session.begin():
        first = await yearly_wellbeing(session, opener)
        await save_yearly(session, first)
    async with sessions() as session, session.begin():
        await session.execute(delete(CheckIn))  # as retention would
    async with sessions() as session:
        after = await yearly_wellbeing(session, opener)
    await engine.dispose()
    assert after == first == [(2019, 5, 5, 3.0, 0.6)]
