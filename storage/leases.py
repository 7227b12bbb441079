"""Sweep leases: which process runs a periodic sweep right now (bot.sweeps).

A lease is taken, renewed and given back with one statement each, atomic on SQLite and
PostgreSQL alike: an upsert that only takes the row when it is free (its time ran out) or
already held under the same name. Times are wall-clock seconds (``time.time()``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SweepLease


def _insert(session: AsyncSession) -> Any:
    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def take(session: AsyncSession, name: str, owner: str, now: float, until: float) -> bool:
    """Hold the sweep ``name`` until ``until`` if nobody else holds it now."""
    statement = _insert(session)(SweepLease).values(name=name, owner=owner, until=until)
    taken = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=[SweepLease.name],
            set_={"owner": statement.excluded.owner, "until": statement.excluded.until},
            where=(SweepLease.until < now) | (SweepLease.owner == owner),
        ).returning(SweepLease.name)
    )
    return taken is not None


async def renew(session: AsyncSession, name: str, owner: str, until: float) -> bool:
    """Hold it longer; False if it was lost (it ran out and another process took it)."""
    result = await session.execute(
        update(SweepLease)
        .where(SweepLease.name == name, SweepLease.owner == owner)
        .values(until=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def give_back(session: AsyncSession, name: str, owner: str) -> None:
    await session.execute(
        delete(SweepLease).where(SweepLease.name == name, SweepLease.owner == owner)
    )
