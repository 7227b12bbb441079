"""What the Mini App sends: records sealed on a phone, stored as they came.

The server never sees the plaintext of a Mini App record. What it does see, and why:

- *that* a member checked in, wrote, or was written to, and when (to the day): the chat path
  shows the same, and the welfare watch and reports count check-ins without opening them;
- whether the member asked for their caseworker to be told now (``notify``): the only way a
  neutral alert can go out at once without the server reading the record;
- nothing of the answers or the text;
- of a help request, only what the member chose to leave unlocked (the page asks, and says
  what it does): its *urgency*, shown by default, because "right now" is what makes the bot
  alert every caseworker and admin and re-alert them until someone claims it (a locked
  urgency is treated like "today": their own caseworker is told, once); its *category*,
  locked by default, because no decision on the server depends on it and "danger" is the
  most telling word a copied database or a staff chat on Telegram could hold. What is shown
  is kept under the server key only while the case is open (like a chat request's brief),
  and appears in the staff alert, which passes Telegram.

A member's safety word is never checked on this path: the server cannot read what the page
sealed, and a page that checked the word itself would need the word's digest on the phone,
where whoever holds the phone could test guesses against it. The chat path keeps it (a
safety word sent alone, or as a check-in note, in the chat); the README says so.

A record's row id is chosen by the page (22 random URL-safe characters) and checked here: it
must be new, so the page can bind the ciphertext to its row (associated data) before the
server has seen anything, and a replayed submission hits the primary key and is refused.
Every envelope is checked before it is stored: the multi-recipient format, exactly one
block long (so its length is every other record's), sealed to the team key first (so
reports open it), and to no key but the team's and the approved device keys of the people
who may read it (a staff key only with a certificate chain that holds, bot/devices.py).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.alerts import recipients_for
from bot.cases import (
    CATEGORIES,
    SEALED,
    UNRESOLVED,
    URGENCIES,
    HelpRequest,
    PhoneSealed,
    open_case,
)
from bot.chat import About, clear_delay
from bot.core import Core
from bot.delivery import WEBAPP_BUTTON, Outgoing, enqueue
from bot.devices import Reader, approved_readers, chain_of
from bot.i18n import t
from bot.people import Actor
from bot.settings import Settings
from bot.welfare import checked_in
from crypto.boxes import (
    ALG_MULTI,
    VERSION,
    RecordPlace,
    key_id,
    multi_envelope_size,
    multi_recipient_ids,
)
from crypto.errors import RecordOpenError
from crypto.keystore import ServerSecrets
from storage.models import (
    Case,
    ChatMessage,
    CheckIn,
    DeviceKey,
    DeviceStatus,
    Note,
    Person,
    Role,
    SealedReply,
    day,
    utcnow,
)

RECORD_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
# An answer waits for the member's page at least this long, however short their chat's
# clear timer: the chat's notice goes, but the page (from /menu) still shows what waits.
REPLY_WAITS_AT_LEAST = timedelta(days=1)
INBOX_LIMIT = 50


class Kind(enum.StrEnum):
    CHECKIN = "checkin"
    MESSAGE = "message"
    REPLY = "reply"
    HELP = "help"


# Where each kind of record lives: the page binds its ciphertext to (table, column, row id).
PLACES = {
    Kind.CHECKIN: ("checkins", "sealed"),
    Kind.MESSAGE: ("notes", "sealed"),
    Kind.REPLY: ("notes", "sealed"),
    Kind.HELP: ("cases", "sealed"),
}


def place_of(kind: Kind, record_id: str) -> RecordPlace:
    table, column = PLACES[kind]
    return RecordPlace(table, column, record_id)


class Refusal(enum.Enum):
    NOT_ALLOWED = "not_allowed"  # wrong role, or a person not in the caller's care
    NO_DEVICE = "no_device"  # the caller's device key is not approved (staff) / unknown
    NO_READER = "no_reader"  # the member has no device key to seal a reply to
    BAD_ENVELOPE = "bad_envelope"  # not the format, size or recipients expected
    TAKEN = "taken"  # the record id exists: a replay, or a page that reused an id


class Refused(Exception):
    """A Mini App call the server will not carry out."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class Shown:
    """What a member chose to leave unlocked of a help request sealed on their phone."""

    category: str | None = None
    urgency: str | None = None

    def __post_init__(self) -> None:
        if self.category not in (None, *CATEGORIES) or self.urgency not in (None, *URGENCIES):
            raise Refused(Refusal.BAD_ENVELOPE)

    @property
    def urgent(self) -> bool:
        return self.urgency == "now"


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """A record as a page receives it: where it lives (to open it) and its ciphertext."""

    kind: Kind
    record_id: str
    member_id: str
    pseudonym: str
    day: str
    envelope: bytes


def _check_envelope(envelope: bytes, team_kid: bytes, allowed: set[bytes]) -> None:
    try:
        kids = multi_recipient_ids(envelope)
    except RecordOpenError as exc:
        raise Refused(Refusal.BAD_ENVELOPE) from exc
    if (
        envelope[0] != VERSION
        or envelope[1] != ALG_MULTI
        or envelope[2:10] != team_kid
        or kids[0] != team_kid
        or len(set(kids)) != len(kids)
        or not set(kids[1:]) <= allowed
        or len(envelope) != multi_envelope_size(len(kids), 0)
    ):
        raise Refused(Refusal.BAD_ENVELOPE)


async def _new_id(
    session: AsyncSession, model: type[CheckIn] | type[Note] | type[Case], record_id: str
) -> None:
    if not RECORD_ID.match(record_id):
        raise Refused(Refusal.BAD_ENVELOPE)
    if await session.get(model, record_id) is not None:
        raise Refused(Refusal.TAKEN)


async def readers_of_member(
    session: AsyncSession, anchor: bytes | None, member_id: str, *, everyone: bool = False
) -> list[Reader]:
    """The approved device keys a member's records are sealed to: their caseworker's, or
    every active staff member's when they have none or when ``everyone`` is asked for (a
    "right now" request shown as such: whoever would get the chat alert or its
    escalation). Only keys whose certificate chain holds from ``anchor`` (the team's
    verify key): the member's page checks the same chains before it seals."""
    found = await recipients_for(session, member_id, everyone=everyone)
    if found is None:
        return []
    _member, staff = found
    return await approved_readers(session, anchor, [s.id for s in staff])


async def approved_device(
    session: AsyncSession, anchor: bytes | None, actor: Actor, public_key: bytes
) -> DeviceKey:
    """The caller's own approved device key (a staff one with its certificate chain holding
    from ``anchor``), or :class:`Refused`."""
    device = await session.scalar(
        select(DeviceKey).where(
            DeviceKey.public_key == public_key,
            DeviceKey.person_id == actor.person_id,
            DeviceKey.status == DeviceStatus.APPROVED.value,
        )
    )
    if device is None or (
        not actor.is_member and await chain_of(session, anchor, device, actor.role.value) is None
    ):
        raise Refused(Refusal.NO_DEVICE)
    return device


async def accept_member_record(
    session: AsyncSession,
    keys: ServerSecrets,
    webapp_url: str,
    actor: Actor,
    kind: Kind,
    record_id: str,
    envelope: bytes,
    *,
    notify: bool,
    shown: Shown | None = None,
    core: Core | None = None,
) -> None:
    """Store a check-in, a message or a help request a member sealed on their phone; tell
    their caseworker with a neutral line and an Open button if they asked for it (always
    for a message; a help request opens a case, alerted like a chat one)."""
    if not actor.is_member or kind not in (Kind.CHECKIN, Kind.MESSAGE, Kind.HELP):
        raise Refused(Refusal.NOT_ALLOWED)
    models: dict[Kind, type[CheckIn] | type[Note] | type[Case]] = {
        Kind.CHECKIN: CheckIn,
        Kind.MESSAGE: Note,
        Kind.HELP: Case,
    }
    model = models[kind]
    await _new_id(session, model, record_id)
    shown = shown or Shown()
    readers = await readers_of_member(
        session, keys.team_verify_key, actor.person_id, everyone=shown.urgent
    )
    team_kid = key_id(keys.team_sealer.public_key)
    _check_envelope(envelope, team_kid, {r.key_id for r in readers})
    today = day(utcnow())
    if kind is Kind.HELP:
        if core is None:
            raise RuntimeError("a help request needs the core (settings, keys) to open a case")
        request = HelpRequest(shown.category or SEALED, shown.urgency or SEALED)
        sealed = PhoneSealed(record_id, envelope)
        if await open_case(session, core, actor.person_id, request, phone_sealed=sealed) is None:
            raise Refused(Refusal.NOT_ALLOWED)
        return
    if kind is Kind.CHECKIN:
        session.add(
            CheckIn(id=record_id, person_id=actor.person_id, created_at=today, sealed=envelope)
        )
        await session.flush()
        await checked_in(session, keys, actor.person_id)
    else:
        session.add(
            Note(
                id=record_id,
                member_id=actor.person_id,
                from_member=True,
                created_at=today,
                sealed=envelope,
            )
        )
        await session.flush()
        notify = True
    if not notify:
        return
    found = await recipients_for(session, actor.person_id)
    if found is None:
        return
    _member, staff = found
    for person in staff:
        lang = person.language
        text = t(lang, f"private_{kind.value}", pseudonym=actor.pseudonym)
        button = (t(lang, "btn_open"), f"{WEBAPP_BUTTON}{webapp_url}staff.{lang}.html")
        enqueue(
            session,
            keys,
            person.id,
            Outgoing(text, [[button]], link=About(actor.person_id, None, "relay")),
        )


async def staff_inbox(session: AsyncSession, actor: Actor, device: DeviceKey) -> list[SealedRecord]:
    """The newest records sealed to this approved device, from members in the caller's care."""
    if not actor.is_staff:
        raise Refused(Refusal.NOT_ALLOWED)
    mine = key_id(device.public_key)
    care = select(Person.id).where(Person.role == Role.MEMBER.value, Person.revoked_at.is_(None))
    if not actor.is_admin:
        care = care.where(Person.caseworker_id == actor.person_id)
    found: list[SealedRecord] = []
    queries = (
        (
            Kind.CHECKIN,
            select(CheckIn.id, CheckIn.person_id, CheckIn.created_at, CheckIn.sealed, Person)
            .join(Person, Person.id == CheckIn.person_id)
            .where(CheckIn.person_id.in_(care))
            .order_by(CheckIn.created_at.desc())
            .limit(INBOX_LIMIT),
        ),
        (
            Kind.MESSAGE,
            select(Note.id, Note.member_id, Note.created_at, Note.sealed, Person)
            .join(Person, Person.id == Note.member_id)
            .where(Note.member_id.in_(care), Note.from_member.is_(True))
            .order_by(Note.created_at.desc())
            .limit(INBOX_LIMIT),
        ),
    )
    # A help request: from a member in the caller's care, or one they were alerted about (a
    # "right now" request reaches every caseworker), or claimed; only while it is open.
    alerted = exists().where(
        ChatMessage.case_id == Case.id, ChatMessage.person_id == actor.person_id
    )
    help_query = (
        select(Case.id, Case.member_id, Case.created_at, Case.sealed, Person)
        .join(Person, Person.id == Case.member_id)
        .where(
            Case.status.in_(UNRESOLVED),
            Person.revoked_at.is_(None),
            or_(Case.member_id.in_(care), Case.claimed_by == actor.person_id, alerted),
        )
        .order_by(Case.created_at.desc())
        .limit(INBOX_LIMIT)
    )
    for kind, query in (*queries, (Kind.HELP, help_query)):
        for row_id, member_id, created, sealed, person in await session.execute(query):
            if sealed[1:2] != bytes((ALG_MULTI,)) or mine not in multi_recipient_ids(sealed):
                continue
            found.append(
                SealedRecord(
                    kind, row_id, member_id, person.pseudonym, created.date().isoformat(), sealed
                )
            )
    return found


async def member_readers(session: AsyncSession, actor: Actor, member_id: str) -> list[Reader]:
    """The member's device key a reply is sealed to, if the caller may write to them."""
    if not actor.is_staff:
        raise Refused(Refusal.NOT_ALLOWED)
    member = await session.get(Person, member_id)
    if (
        member is None
        or member.revoked_at is not None
        or member.role != Role.MEMBER.value
        or not (actor.is_admin or member.caseworker_id == actor.person_id)
    ):
        raise Refused(Refusal.NOT_ALLOWED)
    # The member's own phone: approved at registration (bot/devices.py says why), so no
    # certificate to check here; the README says what that leaves open.
    readers = await approved_readers(session, None, [member_id])
    if not readers:
        raise Refused(Refusal.NO_READER)
    return readers


async def accept_reply(
    session: AsyncSession,
    keys: ServerSecrets,
    settings: Settings,
    actor: Actor,
    member_id: str,
    record_id: str,
    envelope: bytes,
) -> None:
    """Store a reply a caseworker sealed on their device to the member's device and the team;
    the member's chat gets a neutral line with an Open button, nothing more."""
    readers = await member_readers(session, actor, member_id)
    await _new_id(session, Note, record_id)
    _check_envelope(envelope, key_id(keys.team_sealer.public_key), {r.key_id for r in readers})
    session.add(
        Note(
            id=record_id,
            member_id=member_id,
            staff_id=actor.person_id,
            from_member=False,
            created_at=day(utcnow()),
            sealed=envelope,
        )
    )
    member = await session.get(Person, member_id)
    assert member is not None
    waits = max(clear_delay(member, settings), REPLY_WAITS_AT_LEAST)
    session.add(
        SealedReply(note_id=record_id, staff_id=actor.person_id, delete_at=utcnow() + waits)
    )
    lang = member.language
    button = (t(lang, "btn_open"), f"{WEBAPP_BUTTON}{settings.webapp_url}member.{lang}.html")
    enqueue(session, keys, member_id, Outgoing(t(lang, "private_reply"), [[button]]))


async def member_inbox(
    session: AsyncSession, actor: Actor, device: DeviceKey
) -> list[SealedRecord]:
    """Replies sealed to this member's device, still waiting to be read."""
    if not actor.is_member:
        raise Refused(Refusal.NOT_ALLOWED)
    mine = key_id(device.public_key)
    rows = await session.execute(
        select(Note.id, Note.created_at, Note.sealed)
        .where(Note.member_id == actor.person_id, Note.from_member.is_(False))
        .order_by(Note.created_at)
        .limit(INBOX_LIMIT)
    )
    return [
        SealedRecord(
            Kind.REPLY, row_id, actor.person_id, actor.pseudonym, created.date().isoformat(), sealed
        )
        for row_id, created, sealed in rows
        if sealed[1:2] == bytes((ALG_MULTI,)) and mine in multi_recipient_ids(sealed)
    ]


async def mark_read(session: AsyncSession, actor: Actor, record_id: str) -> bool:
    """The member read a reply in their page: its ciphertext leaves the server now."""
    if not actor.is_member:
        raise Refused(Refusal.NOT_ALLOWED)
    note = await session.get(Note, record_id)
    if (
        note is None
        or note.member_id != actor.person_id
        or note.from_member
        or note.sealed[1:2] != bytes((ALG_MULTI,))
    ):
        return False
    await session.execute(delete(SealedReply).where(SealedReply.note_id == record_id))
    await session.execute(delete(Note).where(Note.id == record_id))
    return True


async def purge_unread_replies(session: AsyncSession, keys: ServerSecrets, now: datetime) -> int:
    """Delete the answers whose member did not open them in time, and tell each writer (so
    nothing accepted disappears without anyone knowing). Returns how many."""
    due = (
        await session.execute(
            select(SealedReply, Note.member_id)
            .join(Note, Note.id == SealedReply.note_id)
            .where(SealedReply.delete_at <= now)
        )
    ).all()
    for reply, member_id in due:
        member = await session.get(Person, member_id)
        writer = await session.get(Person, reply.staff_id) if reply.staff_id else None
        if writer is not None and writer.revoked_at is None and member is not None:
            text = t(writer.language, "webapp_staff_unread", pseudonym=member.pseudonym)
            enqueue(session, keys, writer.id, Outgoing(text))
        await session.execute(delete(SealedReply).where(SealedReply.note_id == reply.note_id))
        await session.execute(delete(Note).where(Note.id == reply.note_id))
    return len(due)
