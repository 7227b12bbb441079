"""Erasure: a member who leaves takes everything the organisation holds about them.

In one transaction: their check-ins, requests, messages and every queued message to them or
about them are deleted; staff copies of what they said become a neutral stub ("a member
left") in the chats of active staff, and are deleted at once from revoked staff's chats
(and staff's own replies to them, which the bot cannot edit, are deleted everywhere);
everything in the member's own chat is due for deletion now. Their row is reduced to what
that deletion needs -- the sealed chat reference -- with a random lookup and pseudonym, so
it matches no one; the chat upkeep (bot/chat.py) deletes it once their chat and command
menu are clear. So the list of what to delete is never lost before the deletions succeed.

What stays: one anonymous count per year. Deleted rows are zeroed (SQLite secure_delete)
and the write-ahead log is truncated (storage.scrub).
"""

from __future__ import annotations

import secrets

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import AuditAction, record
from bot.chat import clear_all_now
from bot.delivery import Outgoing, enqueue
from bot.i18n import t
from bot.people import active_person
from crypto.keystore import ServerSecrets
from storage.models import (
    Case,
    ChatMessage,
    CheckIn,
    DeviceKey,
    Label,
    Note,
    OutboxItem,
    Person,
    Role,
    Rsvp,
    Schedule,
    Tally,
    day,
    utcnow,
    word_filler,
)


async def bump_tally(session: AsyncSession, period: str, name: str, by: float = 1) -> None:
    tally = await session.get(Tally, (period, name))
    if tally is None:
        session.add(Tally(period=period, name=name, value=by))
    else:
        tally.value += by


async def erase_member(
    session: AsyncSession, keys: ServerSecrets, member_id: str, *, actor_id: str | None
) -> bool:
    """Erase a member (active or revoked), at ``actor_id``'s request (an admin, or the
    member themselves). False if there is no such member."""
    member = await session.get(Person, member_id)
    if member is None or member.role != Role.MEMBER.value or member.erased:
        return False
    now = utcnow()
    await _clear_staff_copies(session, keys, member)
    for model, column in (
        (Schedule, Schedule.person_id),  # their window and zone too
        (Label, Label.person_id),  # group labels can name places
        (Rsvp, Rsvp.member_id),  # their answers (the totals stay: they say how many)
        (CheckIn, CheckIn.person_id),
        (Case, Case.member_id),
        (Note, Note.member_id),
        # Their phone's Mini App key: public, but it would tie a seized phone to this row.
        (DeviceKey, DeviceKey.person_id),
    ):
        await session.execute(delete(model).where(column == member_id))
    await session.execute(
        delete(OutboxItem).where(
            (OutboxItem.recipient_id == member_id) | (OutboxItem.about_member_id == member_id)
        )
    )
    await clear_all_now(session, member_id)
    # Only the sealed chat reference and language stay, for the deletion to come.
    member.erased = True
    member.revoked_at = member.revoked_at or day(now)
    member.tg_lookup = secrets.token_bytes(32)
    member.pseudonym = f"erased {member_id}"
    member.caseworker_id = None
    member.invited_by = None
    member.clear_after_minutes = None
    member.code_word, member.duress_word = word_filler(), word_filler()
    await bump_tally(session, str(now.year), "members_erased")
    # The entry keeps the member's id, which is random and now names no row: the chain
    # stays whole and says only that someone was erased.
    await record(session, AuditAction.ERASE, actor_id=actor_id, object_id=member_id, now=now)
    return True


async def _clear_staff_copies(session: AsyncSession, keys: ServerSecrets, member: Person) -> None:
    """Staff who hold alerts or messages about the member see only that a member left."""
    told: set[str] = set()
    copies = list(
        await session.scalars(select(ChatMessage).where(ChatMessage.about_member_id == member.id))
    )
    for copy in copies:
        staff = await active_person(session, copy.person_id)
        if staff is not None and copy.outgoing:
            enqueue(
                session,
                keys,
                staff.id,
                Outgoing(t(staff.language, "member_left"), edit_message_id=copy.message_id),
            )
            told.add(staff.id)
        else:
            # What staff typed to them (the bot cannot edit it), or a revoked staff chat.
            copy.delete_at = utcnow()
    await session.execute(
        update(ChatMessage)
        .where(ChatMessage.about_member_id == member.id)
        .values(about_member_id=None, case_id=None, kind=None)
    )
    caseworker = await active_person(session, member.caseworker_id)
    if caseworker is not None and caseworker.id not in told:
        enqueue(session, keys, caseworker.id, Outgoing(t(caseworker.language, "member_left")))
