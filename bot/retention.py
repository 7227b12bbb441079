"""Retention: sealed records older than SAFERELAY_RETENTION_DAYS are deleted by a daily job.

Before check-ins go, their yearly counts are kept as anonymous tallies (check-ins, distinct
members) -- and only for a year with at least five members, so a tally never singles anyone
out. The answers themselves are sealed to the team key and cannot be summarised by the bot;
`saferelay report` (with the passphrase) saves the yearly survey figures for the same reason.

The purge runs beside the bot's own work: it counts in SQL and deletes in batches, each its
own short transaction, and rests between them, so updates that arrive meanwhile wait for at
most one batch (SQLite has one writer at a time), never for the whole purge.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.erasure import bump_tally
from bot.people import EXPIRED_SHOWN
from storage import outbox
from storage.models import Case, CaseStatus, CheckIn, Invite, Note, utc_year, utcnow

MIN_GROUP = 5
SMALL_YEARS = "small-years"  # the undated pool for years with fewer than MIN_GROUP members
# A failed send was reported to whoever it was for when it failed; its row (no payload)
# stays this long for an operator looking into it, then goes.
FAILED_KEPT = timedelta(days=7)
# Rows per delete statement. Each batch holds SQLite's write lock while it runs: some 60 ms
# for 1,000 check-ins on a small server (each row's entries in three indexes go too, and
# secure_delete zeroes them), over 100 ms for 4,000 (bench/purge_bench.py).
BATCH = 1000
# Between batches the purge rests at least as long as the batch took, so the bot's own
# writes, and its share of the CPU, get half of the time or more while a long purge runs.
MIN_REST = 0.005


async def purge_old_records(
    sessions: async_sessionmaker[AsyncSession],
    retention_days: int,
    *,
    batch: int = BATCH,
    now: datetime | None = None,
) -> int:
    """Delete check-ins, notes and resolved requests older than the retention period, and
    invites and failed sends whose week is over. Returns how many rows went."""
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    purged = await _purge_checkins(sessions, cutoff, batch)
    resolved = and_(Case.status == CaseStatus.RESOLVED.value, Case.created_at < cutoff)
    expired = Invite.expires_at < now - EXPIRED_SHOWN
    purged += await _delete_in_batches(sessions, Note, Note.created_at < cutoff, batch)
    purged += await _delete_in_batches(sessions, Case, resolved, batch)
    purged += await _delete_in_batches(sessions, Invite, expired, batch)
    # Failed rows are few and hold no payload: one statement.
    async with sessions() as session, session.begin():
        purged += await outbox.purge_failed(session, now - FAILED_KEPT)
    return purged


async def _purge_checkins(
    sessions: async_sessionmaker[AsyncSession], cutoff: datetime, batch: int
) -> int:
    """Delete old check-ins, counting each batch into its year's tally in the batch's own
    transaction (a purge cut short never counts a row twice, or one it did not delete)."""
    year = utc_year(CheckIn.created_at)
    async with sessions() as session:
        members = await session.execute(
            select(year, func.count(distinct(CheckIn.person_id)))
            .where(CheckIn.created_at < cutoff)
            .group_by(year)
        )
        shown = {int(y) for y, count in members if count >= MIN_GROUP}
    chosen = select(CheckIn.id).where(CheckIn.created_at < cutoff).limit(batch)
    purged = 0
    while True:
        started = time.monotonic()
        async with sessions() as session, session.begin():
            years = Counter(
                await session.scalars(
                    delete(CheckIn)
                    .where(CheckIn.id.in_(chosen))
                    .returning(year)
                    .execution_options(synchronize_session=False)
                )
            )
            for y, count in years.items():
                period = str(y) if y in shown else SMALL_YEARS
                await bump_tally(session, period, "checkins_purged", count)
        deleted = years.total()
        purged += deleted
        if deleted < batch:
            return purged
        await _rest(started)


async def _delete_in_batches(
    sessions: async_sessionmaker[AsyncSession],
    model: type[Note] | type[Case] | type[Invite],
    condition: ColumnElement[bool],
    batch: int,
) -> int:
    chosen = select(model.id).where(condition).limit(batch)
    purged = 0
    while True:
        started = time.monotonic()
        async with sessions() as session, session.begin():
            result = await session.execute(
                delete(model)
                .where(model.id.in_(chosen))
                .execution_options(synchronize_session=False)
            )
        deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
        purged += deleted
        if deleted < batch:
            return purged
        await _rest(started)


async def _rest(started: float) -> None:
    await asyncio.sleep(max(MIN_REST, time.monotonic() - started))
