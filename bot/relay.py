"""The two-way pseudonymous relay between a member and staff.

Staff see "<pseudonym>: text"; the member sees "<caseworker's chosen name>: text". Neither
ever sees the other's Telegram name, username or id. Both directions are stored sealed to
the team key; the readable copy exists only in the outbox until Telegram accepts it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.alerts import recipients_for, reply_button
from bot.chat import About, copy_about, remember
from bot.delivery import FailureNotice, Outgoing, enqueue
from bot.i18n import t
from bot.people import Actor, active_person
from bot.settings import Settings
from crypto.boxes import RecordPlace
from crypto.keystore import ServerSecrets
from storage.models import Case, ChatMessage, Note, Person, new_id

TEXT_LIMIT = 2000


def note_place(note_id: str) -> RecordPlace:
    return RecordPlace("notes", "sealed", note_id)


def _store_note(
    session: AsyncSession,
    keys: ServerSecrets,
    *,
    member_id: str,
    staff_id: str | None,
    from_member: bool,
    case_id: str | None,
    text: str,
) -> None:
    note_id = new_id()
    session.add(
        Note(
            id=note_id,
            member_id=member_id,
            staff_id=staff_id,
            from_member=from_member,
            case_id=case_id,
            sealed=keys.team_sealer.seal(text.encode("utf-8"), note_place(note_id)),
        )
    )


RELAYED = "relayed"  # chat_messages.kind of a member's own message that was passed on


async def relay_from_member(
    session: AsyncSession,
    keys: ServerSecrets,
    member_id: str,
    text: str,
    *,
    message_id: int | None = None,
    corrected: bool = False,
) -> int:
    """Pass a member's words to their caseworker (or all staff). Returns how many.

    ``message_id`` is the member's own message: it is marked as passed on, so an edit of it
    can follow (:func:`correct_from_member`). ``corrected`` sends the words as a correction.
    """
    found = await recipients_for(session, member_id)
    if found is None:
        return 0
    member, recipients = found
    _store_note(
        session, keys, member_id=member.id, staff_id=None, from_member=True, case_id=None, text=text
    )
    if message_id is not None:
        await session.execute(
            update(ChatMessage)
            .where(ChatMessage.person_id == member_id, ChatMessage.message_id == message_id)
            .values(kind=RELAYED)
        )
    key = "relay_in_corrected" if corrected else "relay_in"
    for staff in recipients:
        body = t(staff.language, key, pseudonym=member.pseudonym, text=text)
        # Tell the member if it could not arrive, but only when they had one reader.
        notice = FailureNotice(member.id, "relay_failed") if len(recipients) == 1 else None
        enqueue(
            session,
            keys,
            staff.id,
            Outgoing(
                body,
                reply_button(staff.language),
                link=About(member.id, None, "relay"),
                on_failure=notice,
            ),
        )
    return len(recipients)


async def correct_from_member(
    session: AsyncSession, keys: ServerSecrets, member_id: str, message_id: int, text: str
) -> bool:
    """A member edited a message of theirs: if it was passed on, pass the new words on as a
    correction. Edits of anything else (a check-in note, a word being set) go nowhere."""
    row = await session.scalar(
        select(ChatMessage).where(
            ChatMessage.person_id == member_id,
            ChatMessage.message_id == message_id,
            ChatMessage.kind == RELAYED,
        )
    )
    if row is None:
        return False
    return await relay_from_member(session, keys, member_id, text, corrected=True) > 0


async def correct_reply(
    session: AsyncSession, keys: ServerSecrets, actor: Actor, message_id: int, text: str
) -> str | None:
    """A staff member edited a reply they sent a member: the member gets the corrected
    words. Returns the member's pseudonym, or None if it was not a reply that arrived."""
    row = await session.scalar(
        select(ChatMessage).where(
            ChatMessage.person_id == actor.person_id,
            ChatMessage.message_id == message_id,
            ChatMessage.kind == "reply",
        )
    )
    if row is None or row.about_member_id is None or not actor.is_staff:
        return None
    member = await active_person(session, row.about_member_id)
    if member is None:
        return None
    _send_reply(session, keys, actor, member, row.case_id, text, corrected=True)
    return member.pseudonym


class ReplyOutcome(enum.Enum):
    SENT = "sent"
    GONE = "gone"  # the member left or was removed
    TAKEN = "taken"  # the case is someone else's
    UNKNOWN = "unknown"  # not a message this staff member received about a member


@dataclass(frozen=True)
class ReplyResult:
    outcome: ReplyOutcome
    pseudonym: str | None = None


async def reply_to_member(
    session: AsyncSession,
    keys: ServerSecrets,
    settings: Settings,
    actor: Actor,
    copy_id: str,
    text: str,
    *,
    message_id: int | None = None,
) -> ReplyResult:
    """Send a staff member's answer to the member behind one of the copies in their chat
    (an alert, a relayed message, a /cases entry). ``message_id`` is the staff member's own
    message: it is linked to the member too, so an erasure removes it from their chat."""
    copy = await session.get(ChatMessage, copy_id)
    if (
        copy is None
        or copy.person_id != actor.person_id
        or copy.about_member_id is None
        or not actor.is_staff
    ):
        return ReplyResult(ReplyOutcome.UNKNOWN)
    member = await active_person(session, copy.about_member_id)
    if member is None:
        gone = await session.get(Person, copy.about_member_id)
        return ReplyResult(ReplyOutcome.GONE, gone.pseudonym if gone and not gone.erased else None)
    if copy.case_id is not None and not actor.is_admin:
        case = await session.get(Case, copy.case_id)
        if case is not None and case.claimed_by not in (None, actor.person_id):
            return ReplyResult(ReplyOutcome.TAKEN, member.pseudonym)
    _send_reply(session, keys, actor, member, copy.case_id, text)
    if message_id is not None:
        await remember(
            session,
            settings,
            actor.person_id,
            [message_id],
            outgoing=False,
            about=About(member.id, copy.case_id, "reply"),
        )
    return ReplyResult(ReplyOutcome.SENT, member.pseudonym)


def _send_reply(
    session: AsyncSession,
    keys: ServerSecrets,
    actor: Actor,
    member: Person,
    case_id: str | None,
    text: str,
    *,
    corrected: bool = False,
) -> None:
    """Keep a staff member's words (sealed) and queue them for the member, under the name
    the member knows them by; the staff member hears if the member blocked the bot."""
    _store_note(
        session,
        keys,
        member_id=member.id,
        staff_id=actor.person_id,
        from_member=False,
        case_id=case_id,
        text=text,
    )
    key = "reply_from_corrected" if corrected else "reply_from"
    enqueue(
        session,
        keys,
        member.id,
        Outgoing(
            t(member.language, key, name=actor.shown_name, text=text),
            on_failure=FailureNotice(
                actor.person_id, "reply_blocked", {"pseudonym": member.pseudonym}
            ),
        ),
    )


@dataclass(frozen=True)
class ReplyTarget:
    copy_id: str
    pseudonym: str | None  # None: the member was erased
    reachable: bool


async def reply_target(session: AsyncSession, staff_id: str, message_id: int) -> ReplyTarget | None:
    """Who a Reply button or a Telegram reply in this staff member's chat is about, and
    whether they can still be reached (a revoked or erased member cannot)."""
    copy = await copy_about(session, staff_id, message_id)
    if copy is None or copy.about_member_id is None:
        return None
    member = await session.get(Person, copy.about_member_id)
    if member is None or member.erased:
        return ReplyTarget(copy.id, None, reachable=False)
    return ReplyTarget(copy.id, member.pseudonym, reachable=member.revoked_at is None)


async def remember_listing(
    session: AsyncSession, settings: Settings, staff_id: str, message_id: int, case_id: str
) -> None:
    """A /cases entry can be answered like an alert: record which member it is about."""
    case = await session.get(Case, case_id)
    if case is not None:
        await remember(
            session,
            settings,
            staff_id,
            [message_id],
            about=About(case.member_id, case_id, "list"),
        )
