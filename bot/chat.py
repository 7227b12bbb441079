"""The chat that clears itself: every message between a member and the bot, both sides, is
deleted after the member's delay (default SAFERELAY_CLEAR_AFTER_MINUTES), or at once on a
quick exit.

Pending deletions live in the database (``chat_messages``), so a restart still performs
them on time, or at once when overdue. Telegram lets a bot delete messages in a private chat
only within 48 hours, so no timer may exceed that: delays are capped at 47 hours, and a
deletion that is still failing past 48 hours is dropped (it can no longer succeed).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from bot.core import Core
from bot.limits import backoff
from bot.people import chat_id_of
from storage.models import ChatMessage, Person, Role, new_id, utcnow

log = logging.getLogger(__name__)

CLEAR_CHOICES = (2, 10, 60, 24 * 60)  # minutes, offered in /settings
TELEGRAM_DELETE_WINDOW = timedelta(hours=48)
MAX_DELAY = timedelta(hours=47)
DELETE_BATCH = 100  # deleteMessages takes at most 100 ids


def clear_delay(person: Person | None, default_minutes: float) -> timedelta:
    minutes = (
        person.clear_after_minutes if person and person.clear_after_minutes else default_minutes
    )
    return min(timedelta(minutes=minutes), MAX_DELAY)


async def remember(
    session: AsyncSession,
    person_id: str,
    message_ids: Iterable[int],
    default_minutes: float,
    *,
    now: datetime | None = None,
    at_once: bool = False,
) -> None:
    """Schedule deletion of these messages in a member's chat (staff chats are left alone)."""
    ids = list(message_ids)
    if not ids:
        return
    person = await session.get(Person, person_id)
    if person is None or person.role != Role.MEMBER.value:
        return
    now = now or utcnow()
    delete_at = now if at_once else now + clear_delay(person, default_minutes)
    # An edited message keeps its id: remembering it again must not add a second row.
    known = set(
        await session.scalars(
            select(ChatMessage.message_id).where(
                ChatMessage.person_id == person_id, ChatMessage.message_id.in_(ids)
            )
        )
    )
    if known and at_once:  # already scheduled for later: bring it forward
        await session.execute(
            update(ChatMessage)
            .where(ChatMessage.person_id == person_id, ChatMessage.message_id.in_(known))
            .values(delete_at=delete_at)
        )
    session.add_all(
        ChatMessage(
            id=new_id(), person_id=person_id, message_id=m, sent_at=now, delete_at=delete_at
        )
        for m in dict.fromkeys(ids)
        if m not in known
    )


async def clear_all_now(session: AsyncSession, person_id: str) -> None:
    """Quick exit: everything still in the chat is due now."""
    await session.execute(
        update(ChatMessage).where(ChatMessage.person_id == person_id).values(delete_at=utcnow())
    )


async def delete_due(core: Core, bot: Bot, *, person_id: str | None = None) -> int:
    """Delete every due message (or only this person's), chat by chat. Returns how many.

    Never raises for a Telegram failure: what failed is retried at the next sweep.
    """
    now = utcnow()
    async with core.sessions() as session:
        query = select(ChatMessage).where(ChatMessage.delete_at <= now)
        if person_id is not None:
            query = query.where(ChatMessage.person_id == person_id)
        due = list(await session.scalars(query.order_by(ChatMessage.delete_at).limit(5000)))
        by_person: dict[str, list[ChatMessage]] = defaultdict(list)
        for row in due:
            by_person[row.person_id].append(row)
        chats = {p: await chat_id_of(session, core.secrets, p) for p in by_person}
    deleted = 0
    for person, rows in by_person.items():
        chat_id = chats[person]
        done: list[str] = []
        retry: list[str] = []
        for start in range(0, len(rows), DELETE_BATCH):
            batch = rows[start : start + DELETE_BATCH]
            if chat_id is None:  # revoked since: nothing can be done through the bot
                done += [r.id for r in batch]
                continue
            try:
                await bot.delete_messages(chat_id, [r.message_id for r in batch])
                done += [r.id for r in batch]
                deleted += len(batch)
            except (BadRequest, Forbidden) as exc:
                # Already gone, too old, or the member blocked the bot: nothing to retry.
                log.info("chat deletion not possible: %s", type(exc).__name__)
                done += [r.id for r in batch]
            except RetryAfter:
                retry += [r.id for r in rows[start:]]
                break
            except TelegramError as exc:
                log.warning("chat deletion failed, will retry: %s", type(exc).__name__)
                retry += [r.id for r in batch]
        async with core.sessions() as session, session.begin():
            if done:
                await session.execute(delete(ChatMessage).where(ChatMessage.id.in_(done)))
            if retry:
                await session.execute(
                    update(ChatMessage)
                    .where(ChatMessage.id.in_(retry))
                    .values(
                        delete_at=now + timedelta(seconds=backoff(max(r.attempts for r in rows))),
                        attempts=ChatMessage.attempts + 1,
                    )
                )
                # Past Telegram's window a deletion can never succeed: stop trying.
                await session.execute(
                    delete(ChatMessage).where(
                        ChatMessage.id.in_(retry),
                        ChatMessage.sent_at < now - TELEGRAM_DELETE_WINDOW,
                    )
                )
    return deleted
