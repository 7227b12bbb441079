"""Outbox queries. Sealing and sending live in bot.delivery; this is only the SQL."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Broadcast, OutboxItem, OutboxStatus, utcnow

PRIORITIES = (0, 1, 2, 3)  # bot.delivery.PRIORITY_URGENT ... PRIORITY_BULK


async def next_item(
    session: AsyncSession, now: datetime, *, exclude: Collection[str] = ()
) -> OutboxItem | None:
    """The most urgent pending item that is due, oldest first within a priority, leaving
    out the recipients in ``exclude`` (a send in flight, or their chat's second not over).
    One index walk in (priority, due_at) order: no sort, and a busy recipient's backlog is
    stepped over, not fetched."""
    query = (
        select(OutboxItem)
        .where(OutboxItem.status == OutboxStatus.PENDING.value, OutboxItem.due_at <= now)
        .order_by(OutboxItem.priority, OutboxItem.due_at, OutboxItem.created_at)
        .limit(1)
    )
    if exclude:
        query = query.where(OutboxItem.recipient_id.not_in(list(exclude)))
    return await session.scalar(query)


async def next_due(session: AsyncSession, now: datetime) -> datetime | None:
    """When the next pending item that is not due yet falls due."""
    return await session.scalar(
        select(func.min(OutboxItem.due_at)).where(
            OutboxItem.status == OutboxStatus.PENDING.value,
            # Spelled out so SQLite seeks each priority in the sender's index (ix_outbox_
            # next_item) instead of reading every pending entry.
            OutboxItem.priority.in_(PRIORITIES),
            OutboxItem.due_at > now,
        )
    )


async def pending_count(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(OutboxItem)
        .where(OutboxItem.status == OutboxStatus.PENDING.value)
    )
    return int(count or 0)


async def count_broadcast(
    session: AsyncSession, broadcast_id: str | None, *, delivered: bool
) -> None:
    """A copy of a broadcast was delivered, or could not be (blocked, gone): counted on the
    broadcast, whose progress message shows it at its next edit."""
    if broadcast_id is None:
        return
    column = Broadcast.sent if delivered else Broadcast.unreachable
    await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id)
        .values({column: column + 1, Broadcast.dirty: True})
    )


async def remove(session: AsyncSession, item_id: str) -> None:
    await session.execute(delete(OutboxItem).where(OutboxItem.id == item_id))


async def retry_later(
    session: AsyncSession, item_id: str, due_at: datetime, error: str, *, count: bool = True
) -> None:
    values: dict[str, object] = {"due_at": due_at, "last_error": error[:64]}
    if count:
        values["attempts"] = OutboxItem.attempts + 1
    await session.execute(update(OutboxItem).where(OutboxItem.id == item_id).values(**values))


async def mark_failed(session: AsyncSession, item_id: str, error: str) -> None:
    """Keep the fact of the failure for reporting; drop the readable content. ``due_at``
    becomes the moment it failed, which is what :func:`purge_failed` counts from."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(
            status=OutboxStatus.FAILED.value,
            due_at=utcnow(),
            last_error=error[:64],
            payload=None,
            attempts=OutboxItem.attempts + 1,
        )
    )


async def drop_for_recipient(session: AsyncSession, person_id: str) -> None:
    """A revoked person receives nothing more: their queued messages go."""
    await session.execute(delete(OutboxItem).where(OutboxItem.recipient_id == person_id))


async def drop_collapsed(session: AsyncSession, collapse_key: str) -> None:
    """A message that supersedes the ones still waiting under the same key (for anyone)."""
    await session.execute(
        delete(OutboxItem).where(
            OutboxItem.collapse_key == collapse_key,
            OutboxItem.status == OutboxStatus.PENDING.value,
        )
    )


async def purge_failed(session: AsyncSession, before: datetime) -> int:
    """Failed items were reported when they failed; their rows go a few days after that
    (counted from the failure, not from when the message was queued)."""
    result = await session.execute(
        delete(OutboxItem).where(
            OutboxItem.status == OutboxStatus.FAILED.value, OutboxItem.due_at < before
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
