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
    # Staff only: the name members see on replies, under the server box (a caseworker's
    # chosen name can identify them too).
    display_name: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Members only: the caseworker (or admin) who invited them and gets their alerts.
    caseworker_id: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True
    )
    # Members only: how long messages stay in their chat (None: the server default), and
    # their quick-exit and duress words, stored only as keyed hashes.
    clear_after_minutes: Mapped[int | None] = mapped_column(nullable=True)
    code_word: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    duress_word: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)


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


class CaseStatus(enum.StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class Case(Base):
    """A help request. Three copies of what the member asked, each for one reader:

    - ``sealed`` (team key): category, urgency and text, kept for the record;
    - ``brief`` (server box): category and urgency, while the case is not resolved, so the
      bot can route, list and escalate it; cleared on resolve;
    - the alert texts in the outbox (server box), deleted once sent.

    ``escalate_at`` is in the clear because the sweep must find it: it tells that a case is
    urgent and unclaimed, never what it is about.
    """

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'claimed', 'resolved')", name="status"),
        Index(None, "status", "escalate_at"),
        Index(None, "member_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    member_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.OPEN.value)
    claimed_by: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escalate_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escalations: Mapped[int] = mapped_column(default=0)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    brief: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class Note(Base):
    """One relayed message, either direction, sealed to the team key."""

    __tablename__ = "notes"
    __table_args__ = (Index(None, "member_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    member_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    staff_id: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True
    )
    from_member: Mapped[bool] = mapped_column()
    case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Delivered(Base):
    """A message the outbox delivered to a staff member about a member (alert or relay).

    It is what makes a Telegram reply routable, and what proves a caseworker was told about
    a case: (staff, Telegram message id) -> member and case. Message ids are per-chat
    counters, not identities.
    """

    __tablename__ = "delivered"
    __table_args__ = (
        Index(None, "staff_id", "message_id", unique=True),
        Index(None, "case_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    staff_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column()
    member_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    FAILED = "failed"


class OutboxItem(Base):
    """A message the bot sends on its own initiative, written in the same transaction as
    the event that caused it. ``payload`` is under the server box (the sender must read it);
    the row is deleted once Telegram accepted the message, so no readable copy lingers."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'failed')", name="status"),
        Index(None, "status", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    recipient_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING.value)
    priority: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The member a message is about (an alert, a relay), so erasing them removes it too.
    about_member_id: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), nullable=True, index=True
    )


class ChatMessage(Base):
    """A message in a member's chat that the bot will delete (both sides), and when.

    Telegram message ids are per-chat counters, not identities; the chat is found through
    the person's sealed chat reference.
    """

    __tablename__ = "chat_messages"
    __table_args__ = (
        Index(None, "person_id", "message_id", unique=True),
        Index(None, "delete_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column()
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delete_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)


class Tally(Base):
    """Anonymous counts that outlive the records they summarise (erasures, purges, yearly
    survey aggregates). Never about fewer than five people when broken down by period."""

    __tablename__ = "tallies"

    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[float] = mapped_column(default=0.0)
