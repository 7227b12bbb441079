"""Retention: sealed records older than SAFERELAY_RETENTION_DAYS are deleted by a daily job.

Before check-ins go, their yearly counts are kept as anonymous tallies (check-ins, distinct
members) -- and only for a year with at least five members, so a tally never singles anyone
out. The answers themselves are sealed to the team key and cannot be summarised by the bot;
`saferelay report` (with the passphrase) saves the yearly survey figures for the same reason.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.erasure import bump_tally
from bot.people import EXPIRED_SHOWN
from storage import outbox
from storage.models import Case, CaseStatus, CheckIn, Invite, Note, utcnow

MIN_GROUP = 5
# A failed send was reported to whoever it was for when it failed; its row (no payload)
# stays this long for an operator looking into it, then goes.
FAILED_KEPT = timedelta(days=7)


async def purge_old_records(session: AsyncSession, retention_days: int) -> int:
    """Delete check-ins, notes and resolved requests older than the retention period."""
    cutoff = utcnow() - timedelta(days=retention_days)
    old = (
        await session.execute(
            select(CheckIn.created_at, CheckIn.person_id).where(CheckIn.created_at < cutoff)
        )
    ).all()
    members: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for created_at, person_id in old:
        year = str(created_at.year)
        members[year].add(person_id)
        counts[year] += 1
    for year, count in counts.items():
        if len(members[year]) >= MIN_GROUP:
            await bump_tally(session, year, "checkins_purged", count)
        else:
            await bump_tally(session, "small-years", "checkins_purged", count)
    now = utcnow()
    purged = await outbox.purge_failed(session, now - FAILED_KEPT)
    for statement in (
        delete(Invite).where(Invite.expires_at < now - EXPIRED_SHOWN),
        delete(CheckIn).where(CheckIn.created_at < cutoff),
        delete(Note).where(Note.created_at < cutoff),
        delete(Case).where(Case.created_at < cutoff, Case.status == CaseStatus.RESOLVED.value),
    ):
        result = await session.execute(statement)
        purged += result.rowcount  # type: ignore[attr-defined]
    return purged
