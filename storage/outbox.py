"""Outbox queries. Sealing and sending live in bot.delivery; this is only the SQL.

Several sender processes may share one outbox (issue 13). The same statements serve SQLite
(several processes on one WAL file, whose writers take turns) and PostgreSQL (row locks):

- :func:`claim_next` takes the most urgent due item in one UPDATE that leases it to the
  caller (``FOR UPDATE SKIP LOCKED`` in the choice on PostgreSQL: a row another sender is
  claiming is stepped over, not waited for). Nobody else takes it until the lease runs out;
  a crashed sender's items are taken over then. The row is deleted once Telegram accepted
  the message: a crash between the two sends it once more (at least once, never lost).
- Telegram's flood budget is the ``send_pace`` table (:func:`reserve_turn`): the last
  overall turn handed out, moved on by one spacing per send in one atomic statement, and
  each recipient's last turn, taken with an upsert that only succeeds once their chat's
  second is over (:func:`take_chat_turn`; both just after the claim, in a transaction of
  their own: the sender's loop only waits for the claim, the turns are taken by the send's
  task). Turns are read off the database's clock, the one clock every process shares.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Float, case, cast, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import Broadcast, OutboxItem, OutboxStatus, SendPace, utcnow

PRIORITIES = (0, 1, 2, 3)  # bot.delivery.PRIORITY_URGENT ... PRIORITY_BULK
OVERALL = "*"  # send_pace's key for the whole bot's budget


class Turn(NamedTuple):
    """A turn from the shared budget: when it comes, and when it was given, both by the
    database's clock (seconds since the epoch)."""

    at: float
    given: float

    @property
    def wait(self) -> float:
        return self.at - self.given


def _insert(session: AsyncSession) -> Any:
    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _clock(session: AsyncSession) -> Any:
    """The database's own clock, in seconds since the epoch, read when the statement runs:
    every process takes its turns by one clock, and a turn is never measured from a moment
    before a wait for the budget's row (which would let a late sender catch up in a burst)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Float)
    return (func.julianday("now") - 2440587.5) * 86400.0  # 'now' is fixed per statement


# The claim's choice reads its own alias of the table, so it is not tied to the row updated.
# Made once: a fresh alias per claim cost ~0.9 ms of CPU to build (every column proxied
# again), on every turn of the sender's loop.
_CANDIDATE = aliased(OutboxItem, name="candidate")


def _greater(a: Any, b: Any) -> Any:
    """The larger of two SQL numbers, on both databases (SQLite has no GREATEST)."""
    return case((a > b, a), else_=b)


async def claim_next(
    session: AsyncSession,
    owner: str,
    now: datetime,
    *,
    lease: timedelta,
    per_chat: float,
    exclude: Collection[str] = (),
) -> OutboxItem | None:
    """Lease the most urgent due item whose chat had no turn in the last ``per_chat``
    seconds, to ``owner`` until ``now + lease``; None when nothing is sendable. One
    statement. ``exclude`` are recipients the caller already knows to be busy (a send of
    its own in flight). The item's turns come next (:func:`reserve_turn`,
    :func:`take_chat_turn`)."""
    candidate = _CANDIDATE
    chat_recent = exists().where(
        SendPace.key == candidate.recipient_id, SendPace.last_at > _clock(session) - per_chat
    )
    choice = (
        select(candidate.id)
        .where(
            candidate.status == OutboxStatus.PENDING.value,
            candidate.due_at <= now,
            (candidate.claimed_until.is_(None)) | (candidate.claimed_until < now),
            ~chat_recent,
        )
        .order_by(candidate.priority, candidate.due_at, candidate.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if exclude:
        choice = choice.where(candidate.recipient_id.not_in(list(exclude)))
    claimed: OutboxItem | None = await session.scalar(
        update(OutboxItem)
        .where(OutboxItem.id == choice.scalar_subquery())
        .values(claimed_by=owner, claimed_until=now + lease)
        .returning(OutboxItem)
        .execution_options(synchronize_session=False)
    )
    return claimed


async def take_chat_turn(
    session: AsyncSession,
    recipient_id: str,
    at: float,
    *,
    per_chat: float,
    previous: float | None = None,
) -> bool:
    """The recipient's chat's turn at ``at`` (the database's clock): taken only if the
    chat's last turn is a full ``per_chat`` before it, or is ``previous`` -- the caller's
    own turn for this item, which it missed and now moves. False if another sender took the
    chat a moment ago (two that chose items for one chat at once meet here; on PostgreSQL
    the second waits on the first's row, then sees it)."""
    statement = _insert(session)(SendPace).values(key=recipient_id, last_at=at)
    free = SendPace.last_at <= at - per_chat
    if previous is not None:
        free = free | (SendPace.last_at == previous)
    taken = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=[SendPace.key],
            set_={"last_at": statement.excluded.last_at},
            where=free,
        ).returning(SendPace.key)
    )
    return taken is not None


async def reserve_turn(
    session: AsyncSession, *, spacing: float, lead: float = 0.0, debt: int = 0
) -> Turn:
    """Take the next overall turn (and ``debt`` more before it, already used by handlers).
    One atomic statement, so turns handed to different processes are ``spacing`` apart.
    Never sooner than ``lead`` seconds from now: the time the caller needs to commit and
    be ready, so that it can send on the turn rather than after it (a send that leaves
    late lands next to another process's on-time one)."""
    now = _clock(session)
    earliest = now + lead + spacing * debt
    statement = _insert(session)(SendPace).values(key=OVERALL, last_at=earliest)
    following = SendPace.last_at + spacing * (1 + debt)
    row = (
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[SendPace.key], set_={"last_at": _greater(following, earliest)}
            ).returning(SendPace.last_at, now)
        )
    ).one()
    return Turn(float(row[0]), float(row[1]))


async def pause_turns(session: AsyncSession, seconds: float) -> None:
    """Telegram said "retry after": no process takes a turn for ``seconds``."""
    until = _clock(session) + seconds
    statement = _insert(session)(SendPace).values(key=OVERALL, last_at=until)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[SendPace.key],
            set_={"last_at": _greater(SendPace.last_at, statement.excluded.last_at)},
        )
    )


async def forget_turns(session: AsyncSession, age: float) -> None:
    """Recipients' turns more than ``age`` seconds old say nothing any more: they go."""
    await session.execute(
        delete(SendPace).where(SendPace.key != OVERALL, SendPace.last_at < _clock(session) - age)
    )


async def renew(
    session: AsyncSession, owner: str, item_ids: Collection[str], until: datetime
) -> None:
    """A sender still at work on these items keeps their leases until ``until`` (only
    those: an item whose send failed halfway is left to run out and be tried again)."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(list(item_ids)), OutboxItem.claimed_by == owner)
        .values(claimed_until=until)
    )


async def next_unclaimed(
    session: AsyncSession, now: datetime, *, exclude: Collection[str] = ()
) -> datetime | None:
    """For a sender that found nothing to claim: the soonest moment a due item (not to a
    recipient in ``exclude``) is free of its lease -- ``now`` if it has none and only its
    chat's second held it back -- or None if there is no such item."""
    query = select(func.min(func.coalesce(OutboxItem.claimed_until, now))).where(
        OutboxItem.status == OutboxStatus.PENDING.value,
        OutboxItem.priority.in_(PRIORITIES),
        OutboxItem.due_at <= now,
    )
    if exclude:
        query = query.where(OutboxItem.recipient_id.not_in(list(exclude)))
    found = await session.scalar(query)
    if found is None:
        return None
    if isinstance(found, str):  # SQLite hands an aggregate over a date back as text
        found = datetime.fromisoformat(found)
    return found if found.tzinfo else found.replace(tzinfo=now.tzinfo)


async def release(session: AsyncSession, item_id: str) -> None:
    """Give a claimed item back unsent (its turn came too late to trust the lease)."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(claimed_by=None, claimed_until=None)
    )


async def release_all(session: AsyncSession, owner: str) -> None:
    """A sender stopping gives back whatever it still holds."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.claimed_by == owner)
        .values(claimed_by=None, claimed_until=None)
    )


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
    values: dict[str, object] = {
        "due_at": due_at,
        "last_error": error[:64],
        "claimed_by": None,
        "claimed_until": None,
    }
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
            claimed_by=None,
            claimed_until=None,
        )
    )


async def drop_for_recipient(session: AsyncSession, person_id: str) -> None:
    """A revoked person receives nothing more: their queued messages go (and the note of
    their chat's last turn)."""
    await session.execute(delete(OutboxItem).where(OutboxItem.recipient_id == person_id))
    await session.execute(delete(SendPace).where(SendPace.key == person_id))


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
