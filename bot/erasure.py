"""Erasure: a member who leaves takes everything the organisation holds about them.

What goes: their row, and by cascade their check-ins, requests, messages, delivered-message
links, pending chat deletions, and every queued message to them or about them. What stays:
one anonymous count per year. Staff copies of alerts about them are rewritten to "a member
left". The write-ahead log is then checkpointed and truncated so no old page lingers there
(deleted rows are already zeroed in the main file by secure_delete).
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.delivery import Outgoing, enqueue
from bot.i18n import t
from bot.people import active_person, chat_id_of
from crypto.keystore import ServerSecrets
from storage.models import ChatMessage, Delivered, Person, Role, Tally, utcnow


async def bump_tally(session: AsyncSession, period: str, name: str, by: float = 1) -> None:
    tally = await session.get(Tally, (period, name))
    if tally is None:
        session.add(Tally(period=period, name=name, value=by))
    else:
        tally.value += by


async def erase_member(
    session: AsyncSession, keys: ServerSecrets, member_id: str
) -> tuple[int | None, list[int]] | None:
    """Erase a member. Returns their chat id and the message ids still in their chat (so the
    caller can clear it), or None if there is no such member."""
    member = await session.get(Person, member_id)
    if member is None or member.role != Role.MEMBER.value:
        return None
    chat_id = await chat_id_of(session, keys, member_id)
    in_chat = list(
        await session.scalars(
            select(ChatMessage.message_id).where(ChatMessage.person_id == member_id)
        )
    )
    # Staff who hold alerts or messages about them see only that a member left.
    told: set[str] = set()
    for copy in await session.scalars(select(Delivered).where(Delivered.member_id == member_id)):
        staff = await active_person(session, copy.staff_id)
        if staff is None:
            continue
        enqueue(
            session,
            keys,
            staff.id,
            Outgoing(t(staff.language, "member_left"), edit_message_id=copy.message_id),
        )
        told.add(staff.id)
    caseworker = await active_person(session, member.caseworker_id)
    if caseworker is not None and caseworker.id not in told:
        enqueue(session, keys, caseworker.id, Outgoing(t(caseworker.language, "member_left")))
    await session.delete(member)
    await bump_tally(session, str(utcnow().year), "members_erased")
    return chat_id, in_chat


async def checkpoint(session: AsyncSession) -> None:
    """Fold the write-ahead log into the main file and truncate it (SQLite only)."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
