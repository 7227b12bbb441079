"""Claims under real concurrency: separate sessions (connections) racing on one SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.app import build_core
from bot.cases import HelpRequest, Outcome, claim_case, open_case
from bot.people import actor_of
from storage.db import migrate
from storage.models import Role
from tests.conftest import bare_people, make_settings


async def test_concurrent_claims_have_exactly_one_winner(data_dir: Path) -> None:
    core = build_core(make_settings(data_dir))
    await migrate(core.engine)
    async with core.sessions() as session, session.begin():
        workers = bare_people(6, Role.ADMIN)
        [member] = bare_people(1)
        session.add_all([*workers, member])
    actors = [actor_of(w, core.secrets) for w in workers]

    for _ in range(10):
        async with core.sessions() as session, session.begin():
            case_id = await open_case(session, core, member.id, HelpRequest("danger", "now"))
        assert case_id is not None

        async def claim(actor_index: int, case_id: str = case_id) -> Outcome:
            async with core.sessions() as session, session.begin():
                result = await claim_case(session, core.secrets, actors[actor_index], case_id)
            return result.outcome

        outcomes = await asyncio.gather(*(claim(i) for i in range(len(actors))))
        assert outcomes.count(Outcome.DONE) == 1
        assert outcomes.count(Outcome.TAKEN) == len(actors) - 1
    await core.engine.dispose()
