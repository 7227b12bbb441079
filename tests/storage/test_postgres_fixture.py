"""The throwaway PostgreSQL cluster the suite's second pass runs on (tests/postgres.py)."""

from __future__ import annotations

from sqlalchemy import text

from bot.core import Core
from storage.db import current_revision, head_revision, make_engine
from tests.conftest import TEST_DATABASE


async def test_each_test_gets_its_own_migrated_postgresql_database(postgres_url: str) -> None:
    # Given the database made for this test from the migrated template
    engine = make_engine(postgres_url)
    try:
        async with engine.begin() as connection:
            # Then it is a real PostgreSQL server, at the newest revision, with no rows
            version = (await connection.execute(text("SHOW server_version_num"))).scalar()
            assert int(str(version)) >= 150000
            assert await current_revision(engine) == head_revision(postgres_url)
            people = (await connection.execute(text("SELECT count(*) FROM people"))).scalar()
            assert people == 0
            # And it listens on no TCP port: only the socket in its own directory
            listen = (await connection.execute(text("SHOW listen_addresses"))).scalar()
            assert listen == ""
    finally:
        await engine.dispose()


async def test_the_core_fixture_runs_on_the_chosen_database(core: Core) -> None:
    # SAFERELAY_TEST_DATABASE picks the database every data_dir/core/bot test runs on.
    assert core.engine.dialect.name == TEST_DATABASE
