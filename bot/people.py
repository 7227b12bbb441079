"""Enrolment, invites and finding who is writing. The decisions; storage does the SQL."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.audit import AuditAction, record
from crypto.boxes import RecordPlace
from crypto.hashing import normalise_word
from crypto.keystore import ServerSecrets
from crypto.pseudonyms import new_pseudonym
from storage.models import LANGUAGES, ChatMessage, Invite, Person, Role, day, new_id, utcnow

# A member invite is handed over in person and may take a few days; a staff invite opens
# the organisation's whole caseload, so it lives one day unless asked otherwise.
MEMBER_INVITE_HOURS = 72
STAFF_INVITE_HOURS = 24
MAX_INVITE_HOURS = 24 * 30
NAME_LIMIT = 32
# Telegram allows 1-64 characters [A-Za-z0-9_-] in a /start parameter; 32 carry 192 bits.
INVITE_TOKEN_BYTES = 24


@dataclass(frozen=True, slots=True)
class Actor:
    """The enrolled sender of an update, as the database says now."""

    person_id: str
    role: Role
    pseudonym: str
    language: str
    language_chosen: bool
    display_name: str | None = None  # staff: the name members see on replies
    # Members: digests of their clear and safety words, or filler (crypto.words).
    code_word: bytes = b""
    duress_word: bytes = b""

    @property
    def is_member(self) -> bool:
        return self.role is Role.MEMBER

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.ADMIN, Role.CASEWORKER)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def shown_name(self) -> str:
        """What others see: a staff member's chosen name, else the pseudonym."""
        return self.display_name or self.pseudonym


def chat_place(person_id: str) -> RecordPlace:
    return RecordPlace("people", "chat_ref", person_id)


def name_place(person_id: str) -> RecordPlace:
    return RecordPlace("people", "display_name", person_id)


def display_name_of(person: Person, keys: ServerSecrets) -> str | None:
    if person.display_name is None:
        return None
    return keys.server_box.open(person.display_name, name_place(person.id)).decode("utf-8")


def shown_name_of(person: Person, keys: ServerSecrets) -> str:
    return display_name_of(person, keys) or person.pseudonym


def actor_of(person: Person, keys: ServerSecrets) -> Actor:
    return Actor(
        person_id=person.id,
        role=Role(person.role),
        pseudonym=person.pseudonym,
        language=person.language,
        language_chosen=person.language_chosen,
        display_name=display_name_of(person, keys),
        code_word=person.code_word,
        duress_word=person.duress_word,
    )


def default_invite_hours(role: Role) -> int:
    return MEMBER_INVITE_HOURS if role is Role.MEMBER else STAFF_INVITE_HOURS


async def find_person(
    session: AsyncSession, keys: ServerSecrets, telegram_user_id: int
) -> Person | None:
    """The active person's row behind a Telegram user id, or None for anyone else."""
    person: Person | None = await session.scalar(
        select(Person).where(
            Person.tg_lookup == keys.pepper.user_lookup(telegram_user_id),
            Person.revoked_at.is_(None),
        )
    )
    return person


async def find_actor(
    session: AsyncSession, keys: ServerSecrets, telegram_user_id: int
) -> Actor | None:
    """The active person behind a Telegram user id, or None for anyone else."""
    person = await find_person(session, keys, telegram_user_id)
    return actor_of(person, keys) if person is not None else None


async def create_invite(
    session: AsyncSession,
    keys: ServerSecrets,
    role: Role,
    *,
    hours: int | None = None,
    created_by: str | None = None,
    now: datetime | None = None,
) -> NewInvite:
    """A new single-use invite. Only the token's keyed hash is stored."""
    hours = default_invite_hours(role) if hours is None else hours
    if not 1 <= hours <= MAX_INVITE_HOURS:
        raise ValueError(f"an invite lasts between 1 and {MAX_INVITE_HOURS} hours")
    token = secrets.token_urlsafe(INVITE_TOKEN_BYTES)
    invite = Invite(
        id=new_id(),
        token_lookup=keys.pepper.invite_lookup(token),
        role=role.value,
        created_by=created_by,
        expires_at=(now or utcnow()) + timedelta(hours=hours),
    )
    session.add(invite)
    await record(session, AuditAction.INVITE, actor_id=created_by, object_id=invite.id, now=now)
    return NewInvite(invite.id, token, invite.expires_at)


@dataclass(frozen=True, slots=True)
class NewInvite:
    invite_id: str
    token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return "NewInvite(<token hidden>)"


async def show_invite(session: AsyncSession, invite_id: str, message_id: int) -> None:
    """Record which message in its maker's chat shows the link (deleted with the invite)."""
    await session.execute(
        update(Invite).where(Invite.id == invite_id).values(message_id=message_id)
    )


@dataclass(frozen=True, slots=True)
class OpenInvite:
    invite_id: str
    role: Role
    expires_at: datetime
    expired: bool


# Expired invites stay listed this long, so their maker can see that they lapsed.
EXPIRED_SHOWN = timedelta(days=7)


async def invites_of(
    session: AsyncSession, person_id: str, now: datetime | None = None
) -> list[OpenInvite]:
    """The invites this person made that are still open, or expired lately."""
    now = now or utcnow()
    rows = await session.scalars(
        select(Invite)
        .where(Invite.created_by == person_id, Invite.expires_at > now - EXPIRED_SHOWN)
        .order_by(Invite.expires_at)
    )
    return [OpenInvite(i.id, Role(i.role), i.expires_at, i.expires_at <= now) for i in rows]


async def cancel_invite(session: AsyncSession, actor: Actor, invite_id: str) -> bool:
    """Delete one of the actor's own invites and its link message. False if not theirs."""
    if len(invite_id) > 64:
        return False
    gone = (
        await session.execute(
            delete(Invite)
            .where(Invite.id == invite_id, Invite.created_by == actor.person_id)
            .returning(Invite.created_by, Invite.message_id)
        )
    ).one_or_none()
    if gone is None:
        return False
    await _drop_link_message(session, gone.created_by, gone.message_id)
    return True


async def _drop_link_message(
    session: AsyncSession, creator_id: str | None, message_id: int | None
) -> None:
    """The link's message in its maker's chat is due for deletion now."""
    if creator_id is None or message_id is None:
        return
    await session.execute(
        update(ChatMessage)
        .where(ChatMessage.person_id == creator_id, ChatMessage.message_id == message_id)
        .values(delete_at=utcnow())
    )


async def expire_invites_of(session: AsyncSession, person_id: str) -> None:
    """Someone revoked leaves no way in behind them: every invite they made goes."""
    await session.execute(delete(Invite).where(Invite.created_by == person_id))


async def _name_taken(session: AsyncSession, keys: ServerSecrets, name: str) -> bool:
    """A pseudonym or staff name already in use, case and spacing ignored."""
    wanted = normalise_word(name)
    return (
        await session.scalar(
            select(
                exists().where(
                    or_(
                        func.lower(Person.pseudonym) == wanted,
                        Person.name_lookup == keys.pepper.name_lookup(name),
                    )
                )
            )
        )
    ) or False


async def _unused_pseudonym(
    session: AsyncSession, keys: ServerSecrets, language: str = "en"
) -> str:
    for _ in range(20):
        candidate = new_pseudonym(language)
        if not await _name_taken(session, keys, candidate):
            return candidate
    raise RuntimeError("could not find a free pseudonym")  # ~1 in 10^100 with few thousand people


async def redeem_invite(
    session: AsyncSession,
    keys: ServerSecrets,
    token: str,
    *,
    telegram_user_id: int,
    chat_id: int,
    language: str,
    now: datetime | None = None,
) -> Actor | None:
    """Enrol the sender if ``token`` is a live invite, deleting it. None when it is not.

    The invite is taken with one conditional DELETE, so two people racing for the same link
    cannot both get in; an invite whose maker is no longer active lets nobody in. The
    message that showed the link is deleted from its maker's chat. The caller has checked
    that the sender is not enrolled yet.
    """
    if not token or len(token) > 64:
        return None
    at = now or utcnow()
    maker = aliased(Person, name="maker")
    maker_active = exists().where(maker.id == Invite.created_by, maker.revoked_at.is_(None))
    burnt = (
        await session.execute(
            delete(Invite)
            .where(
                Invite.token_lookup == keys.pepper.invite_lookup(token),
                Invite.expires_at > at,
                or_(Invite.created_by.is_(None), maker_active),
            )
            .returning(Invite.role, Invite.created_by, Invite.message_id)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if burnt is None:
        return None
    role, created_by = Role(burnt.role), burnt.created_by
    await _drop_link_message(session, created_by, burnt.message_id)
    lookup = keys.pepper.user_lookup(telegram_user_id)
    # A revoked person may be invited again: their old row is replaced, not revived, so
    # nothing from before follows them.
    old = await session.scalar(select(Person).where(Person.tg_lookup == lookup))
    if old is not None:
        await session.delete(old)
        await session.flush()
    person_id = new_id()
    person = Person(
        id=person_id,
        tg_lookup=lookup,
        chat_ref=keys.server_box.seal_int(chat_id, chat_place(person_id)),
        role=role.value,
        pseudonym=await _unused_pseudonym(session, keys),
        language=language if language in LANGUAGES else "en",
        language_chosen=False,
        invited_by=created_by,
        # A member's alerts go to the staff member who invited them; a member invited from
        # the shell has no caseworker yet, so every caseworker and admin is told.
        caseworker_id=created_by if role is Role.MEMBER else None,
        created_at=day(at),
    )
    session.add(person)
    await record(session, AuditAction.ENROL, actor_id=created_by, object_id=person_id, now=at)
    return actor_of(person, keys)


async def set_language(
    session: AsyncSession, keys: ServerSecrets, person_id: str, language: str
) -> str | None:
    """Save a language choice. The first choice of a newcomer also gives them a pseudonym
    in that language (a Korean member is "맑은 구름 27", not "Calm Otter 27"); returns it,
    or None when the pseudonym stays as it was (later changes keep it: staff know them by
    it)."""
    if language not in LANGUAGES:
        raise ValueError("unknown language")
    person = await session.get(Person, person_id)
    if person is None:
        return None
    fresh = None
    if not person.language_chosen:
        fresh = await _unused_pseudonym(session, keys, language)
        person.pseudonym = fresh
    person.language, person.language_chosen = language, True
    return fresh


async def chat_id_of(session: AsyncSession, keys: ServerSecrets, person_id: str) -> int | None:
    """The Telegram chat id of an active person, opened from its sealed reference."""
    chat_ref = await session.scalar(
        select(Person.chat_ref).where(Person.id == person_id, Person.revoked_at.is_(None))
    )
    if chat_ref is None:
        return None
    return keys.server_box.open_int(chat_ref, chat_place(person_id))


async def chat_ref_of(
    session: AsyncSession, keys: ServerSecrets, person_id: str
) -> tuple[int, str] | None:
    """The chat id and language of anyone with a row, revoked or erased too: only for
    clearing what their chat still holds, never for telling them anything."""
    row = (
        await session.execute(
            select(Person.chat_ref, Person.language).where(Person.id == person_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return keys.server_box.open_int(row.chat_ref, chat_place(person_id)), row.language


class NameProblem(enum.Enum):
    INVALID = "invalid"
    TAKEN = "taken"


def clean_name(text: str) -> str | None:
    """A display name as it will be shown, or None if it is not one line of 1-32 characters."""
    name = " ".join(text.split())
    if not 1 <= len(name) <= NAME_LIMIT or "\n" in text.strip() or name.startswith("/"):
        return None
    return name


async def set_display_name(
    session: AsyncSession, keys: ServerSecrets, person_id: str, text: str
) -> NameProblem | None:
    """Set a staff member's shown name. Names are unique (case and spacing ignored) and may
    not be anyone's pseudonym, so a name always points at one person."""
    name = clean_name(text)
    if name is None:
        return NameProblem.INVALID
    lookup = keys.pepper.name_lookup(name)
    own = await session.scalar(select(Person.name_lookup).where(Person.id == person_id))
    if own != lookup and await _name_taken(session, keys, name):
        return NameProblem.TAKEN
    sealed = keys.server_box.seal(name.encode("utf-8"), name_place(person_id))
    await session.execute(
        update(Person).where(Person.id == person_id).values(display_name=sealed, name_lookup=lookup)
    )
    return None


async def active_person(session: AsyncSession, person_id: str | None) -> Person | None:
    if person_id is None:
        return None
    person = await session.get(Person, person_id)
    return person if person is not None and person.revoked_at is None else None


async def active_staff(session: AsyncSession) -> list[Person]:
    result = await session.scalars(
        select(Person)
        .where(Person.role.in_(("admin", "caseworker")), Person.revoked_at.is_(None))
        .order_by(Person.created_at)
    )
    return list(result)


async def find_by_name(
    session: AsyncSession, keys: ServerSecrets, name: str, *, include_revoked: bool = False
) -> list[Person]:
    """Everyone (active, or also revoked) whose pseudonym or staff name is ``name``, case
    and spacing ignored. Names and pseudonyms are kept apart, so this is one person at most
    -- but a caller shows whom it found before acting, never guesses."""
    wanted = normalise_word(name)
    if not wanted:
        return []
    query = select(Person).where(
        or_(
            func.lower(Person.pseudonym) == wanted,
            Person.name_lookup == keys.pepper.name_lookup(name),
        ),
        Person.erased.is_(False),
    )
    if not include_revoked:
        query = query.where(Person.revoked_at.is_(None))
    return list(await session.scalars(query.order_by(Person.role)))


# Made once: a fresh alias per call would defeat SQLAlchemy's compiled-statement cache.
_CASEWORKER = aliased(Person, name="caseworker")


async def member_and_caseworker(
    session: AsyncSession, member_id: str
) -> tuple[Person, Person | None] | None:
    """An active member and their active caseworker, in one query (the hot path of every
    request and relayed message)."""
    caseworker = _CASEWORKER
    row = (
        await session.execute(
            select(Person, caseworker)
            .outerjoin(
                caseworker,
                and_(caseworker.id == Person.caseworker_id, caseworker.revoked_at.is_(None)),
            )
            .where(Person.id == member_id, Person.revoked_at.is_(None))
        )
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None
