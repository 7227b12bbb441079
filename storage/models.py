"""The schema. Nothing here is plaintext that identifies a person or that a person wrote.

- ``people.tg_lookup`` is a keyed BLAKE2b of the Telegram user id (crypto.hashing).
- ``people.chat_ref`` is the chat id under the server box, bound to the row.
- ``checkins.sealed`` is sealed to the team public key, bound to the row.
- ``invites.token_lookup`` is a keyed hash of the token: a copied database holds no usable
  invite.

Primary keys are random strings made before the insert, so the row identity is known when a
ciphertext is bound to it, and ids reveal neither order nor counts.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 22


def new_id() -> str:
    """A random row id (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Role(enum.StrEnum):
    ADMIN = "admin"
    CASEWORKER = "caseworker"
    MEMBER = "member"


LANGUAGES = ("ko", "en", "zh")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Person(Base):
    """Anyone enrolled: a member, a caseworker or an admin."""

    __tablename__ = "people"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'caseworker', 'member')", name="role"),
        CheckConstraint("language IN ('ko', 'en', 'zh')", name="language"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tg_lookup: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    chat_ref: Mapped[bytes] = mapped_column(LargeBinary)
    role: Mapped[str] = mapped_column(String(16))
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    language: Mapped[str] = mapped_column(String(2), default="ko")
    language_chosen: Mapped[bool] = mapped_column(default=False)
    invited_by: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Invite(Base):
    """A single-use, expiring enrolment link."""

    __tablename__ = "invites"
    __table_args__ = (CheckConstraint("role IN ('admin', 'caseworker', 'member')", name="role"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    token_lookup: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CheckIn(Base):
    """One wellbeing check-in: the answers sealed to the team key, the time in the clear."""

    __tablename__ = "checkins"
    __table_args__ = (Index(None, "person_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
