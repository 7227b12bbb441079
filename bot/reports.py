"""Reports that need the team private key: the organisation's yearly survey figures.

Check-ins are opened in memory one at a time; nothing opened is written anywhere.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.checkins import open_checkin
from crypto.boxes import TeamOpener
from storage.models import CheckIn

# (year, distinct members, check-ins, mean health, share answering "yes" to the threat)
YearRow = tuple[int, int, int, float, float]


async def yearly_wellbeing(session: AsyncSession, opener: TeamOpener) -> list[YearRow]:
    """Per calendar year (UTC): mean health 1-5 and the share feeling a threat."""
    health: dict[int, list[int]] = defaultdict(list)
    threat: dict[int, int] = defaultdict(int)
    members: dict[int, set[str]] = defaultdict(set)
    for checkin in await session.scalars(select(CheckIn).order_by(CheckIn.created_at)):
        answers = open_checkin(opener, checkin)
        year = checkin.created_at.year
        health[year].append(answers.health)
        threat[year] += answers.threat
        members[year].add(checkin.person_id)
    return [
        (
            year,
            len(members[year]),
            len(scores),
            sum(scores) / len(scores),
            threat[year] / len(scores),
        )
        for year, scores in sorted(health.items())
    ]
