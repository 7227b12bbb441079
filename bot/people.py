"""Enrolment, invites and finding who is writing. The decisions; storage does the SQL."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

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

    @property
    def is_member(self) -> bool:
        return self.role is Role.MEMBER

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.ADMIN, Role.CASEWORKER)


def chat_place(person_id: str) -> RecordPlace:
    return RecordPlace("people", "chat_ref", person_id)


def _actor(person: Person) -> Actor:
    return Actor(
        person_id=person.id,
        role=Role(person.role),
        pseudonym=person.pseudonym,
        language=person.language,
        language_chosen=person.language_chosen,
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
    return _actor(person) if person is not None else None


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
        created_at=at,
    )
    session.add(person)
    await session.flush()
    return _actor(person)


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
