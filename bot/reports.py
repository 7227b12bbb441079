"""Reports that need the team private key: the organisation's yearly survey figures.

Check-ins are opened in memory one at a time; nothing opened is written anywhere. Each run
also saves the yearly aggregates (counts and sums, never an answer) for years with at
least five members, so the figures outlive the records once retention has purged them.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.checkins import open_answers
from bot.retention import MIN_GROUP
from crypto.boxes import TeamOpener
from storage.models import CheckIn, Tally

# (year, distinct members, check-ins, mean health, share answering "yes" to the threat)
YearRow = tuple[int, int, int, float, float]
SAVED = ("survey_members", "survey_checkins", "survey_health_sum", "survey_threat_yes")
# Check-ins read per round trip: memory stays flat however many years are kept.
STREAM_BATCH = 1000


async def yearly_wellbeing(session: AsyncSession, opener: TeamOpener) -> list[YearRow]:
    """Per calendar year (UTC): mean health 1-5 and the share feeling a threat."""
    checked_in: dict[int, int] = defaultdict(int)
    health: dict[int, int] = defaultdict(int)
    threat: dict[int, int] = defaultdict(int)
    members: dict[int, set[str]] = defaultdict(set)
    # Only the columns a report needs, in batches, in no particular order (sums and sets
    # do not depend on it): no row objects, and no sort of the whole table.
    checkins = await session.stream(
        select(CheckIn.id, CheckIn.person_id, CheckIn.created_at, CheckIn.sealed).execution_options(
            yield_per=STREAM_BATCH
        )
    )
    async for batch in checkins.partitions():
        for checkin_id, person_id, created_at, sealed in batch:
            answers = open_answers(opener, checkin_id, sealed)
            year = created_at.year
            checked_in[year] += 1
            health[year] += answers.health
            threat[year] += answers.threat
            members[year].add(person_id)
    live = {
        year: (len(members[year]), n, float(health[year]), float(threat[year]))
        for year, n in checked_in.items()
    }
    saved = await _saved(session)
    rows: list[YearRow] = []
    for year in sorted(set(live) | set(saved)):
        # Whichever saw more check-ins: records purged since a save are only in the save.
        n_members, count, health_sum, threat_yes = max(
            (v for v in (live.get(year), saved.get(year)) if v), key=lambda v: v[1]
        )
        rows.append((year, n_members, count, health_sum / count, threat_yes / count))
    return rows


async def _saved(session: AsyncSession) -> dict[int, tuple[int, int, float, float]]:
    values: dict[int, dict[str, float]] = defaultdict(dict)
    for tally in await session.scalars(select(Tally).where(Tally.name.in_(SAVED))):
        if tally.period.isdigit():
            values[int(tally.period)][tally.name] = tally.value
    return {
        year: (int(v[SAVED[0]]), int(v[SAVED[1]]), v[SAVED[2]], v[SAVED[3]])
        for year, v in values.items()
        if all(name in v for name in SAVED) and v[SAVED[1]] > 0
    }


async def save_yearly(session: AsyncSession, rows: list[YearRow]) -> None:
    """Keep the aggregates of years with at least five members (never smaller groups)."""
    for year, n_members, count, mean_health, threat_share in rows:
        if n_members < MIN_GROUP:
            continue
        values = (n_members, count, mean_health * count, threat_share * count)
        for name, value in zip(SAVED, values, strict=True):
            tally = await session.get(Tally, (str(year), name))
            if tally is None:
                session.add(Tally(period=str(year), name=name, value=float(value)))
            else:
                tally.value = float(value)
