"""Enrolment, invites and finding who is writing. The decisions; storage does the SQL."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crypto.boxes import RecordPlace
from crypto.keystore import ServerSecrets
from crypto.pseudonyms import new_pseudonym
from storage.models import LANGUAGES, Invite, Person, Role, new_id, utcnow

DEFAULT_INVITE_HOURS = 72
MAX_INVITE_HOURS = 24 * 30
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
    # Members: keyed hashes of their clear and safety words (checked on every message).
    code_word: bytes | None = None
    duress_word: bytes | None = None

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


async def find_actor(
    session: AsyncSession, keys: ServerSecrets, telegram_user_id: int
) -> Actor | None:
    """The active person behind a Telegram user id, or None for anyone else."""
    person = await session.scalar(
        select(Person).where(
            Person.tg_lookup == keys.pepper.user_lookup(telegram_user_id),
            Person.revoked_at.is_(None),
        )
    )
    return actor_of(person, keys) if person is not None else None


async def create_invite(
    session: AsyncSession,
    keys: ServerSecrets,
    role: Role,
    *,
    hours: int = DEFAULT_INVITE_HOURS,
    created_by: str | None = None,
    now: datetime | None = None,
) -> str:
    """A new single-use invite; returns the token. Only its keyed hash is stored."""
    if not 1 <= hours <= MAX_INVITE_HOURS:
        raise ValueError(f"an invite lasts between 1 and {MAX_INVITE_HOURS} hours")
    token = secrets.token_urlsafe(INVITE_TOKEN_BYTES)
    created = now or utcnow()
    session.add(
        Invite(
            id=new_id(),
            token_lookup=keys.pepper.invite_lookup(token),
            role=role.value,
            created_by=created_by,
            created_at=created,
            expires_at=created + timedelta(hours=hours),
        )
    )
    return token


async def _unused_pseudonym(session: AsyncSession) -> str:
    for _ in range(20):
        candidate = new_pseudonym()
        taken = await session.scalar(select(Person.id).where(Person.pseudonym == candidate))
        if taken is None:
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
    """Enrol the sender if ``token`` is a live invite, burning it. None when it is not.

    The invite is burnt with one conditional UPDATE, so two people racing for the same link
    cannot both get in. The caller has checked that the sender is not enrolled yet.
    """
    if not token or len(token) > 64:
        return None
    at = now or utcnow()
    burnt = (
        await session.execute(
            update(Invite)
            .where(
                Invite.token_lookup == keys.pepper.invite_lookup(token),
                Invite.used_at.is_(None),
                Invite.expires_at > at,
            )
            .values(used_at=at)
            .returning(Invite.role, Invite.created_by)
        )
    ).one_or_none()
    if burnt is None:
        return None
    role, created_by = Role(burnt.role), burnt.created_by
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
        pseudonym=await _unused_pseudonym(session),
        language=language if language in LANGUAGES else "ko",
        language_chosen=False,
        invited_by=created_by,
        # A member's alerts go to the staff member who invited them; a member invited from
        # the shell has no caseworker yet, so every caseworker and admin is told.
        caseworker_id=created_by if role is Role.MEMBER else None,
        created_at=at,
    )
    session.add(person)
    await session.flush()
    return actor_of(person, keys)


async def set_language(session: AsyncSession, person_id: str, language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError("unknown language")
    await session.execute(
        update(Person).where(Person.id == person_id).values(language=language, language_chosen=True)
    )


async def chat_id_of(session: AsyncSession, keys: ServerSecrets, person_id: str) -> int | None:
    """The Telegram chat id of an active person, opened from its sealed reference."""
    chat_ref = await session.scalar(
        select(Person.chat_ref).where(Person.id == person_id, Person.revoked_at.is_(None))
    )
    if chat_ref is None:
        return None
    return keys.server_box.open_int(chat_ref, chat_place(person_id))


async def set_display_name(
    session: AsyncSession, keys: ServerSecrets, person_id: str, name: str
) -> None:
    sealed = keys.server_box.seal(name.encode("utf-8"), name_place(person_id))
    await session.execute(update(Person).where(Person.id == person_id).values(display_name=sealed))


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


async def find_by_name(session: AsyncSession, keys: ServerSecrets, name: str) -> Person | None:
    """An active person by pseudonym or staff display name (case-insensitive)."""
    wanted = " ".join(name.split()).casefold()
    if not wanted:
        return None
    person = await session.scalar(
        select(Person).where(func.lower(Person.pseudonym) == wanted, Person.revoked_at.is_(None))
    )
    if person is not None:
        return person
    # Display names are sealed, so staff (a handful) are opened one by one.
    for staff in await active_staff(session):
        shown = display_name_of(staff, keys)
        if shown is not None and shown.casefold() == wanted:
            return staff
    return None


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
