"""The schema. Nothing here is plaintext that identifies a person or that a person wrote.

- ``people.tg_lookup`` is a keyed BLAKE2b of the Telegram user id (crypto.hashing).
- ``people.chat_ref`` is the chat id under the server box, bound to the row.
- ``checkins.sealed`` is sealed to the team public key, bound to the row.
- ``invites.token_lookup`` is a keyed hash of the token: a copied database holds no usable
  invite.
- ``people.code_word`` / ``duress_word`` are Argon2id digests (crypto.words), and hold random
  filler when a member has set no word, so every row looks the same.

Primary keys are random strings made before the insert, so the row identity is known when a
ciphertext is bound to it, and ids reveal neither order nor counts.

Timestamps kept in the clear are no finer than a feature needs (see README, "What the
database keeps"): :func:`day` for what reports and retention count, :func:`minute` for an
open request's age; full precision only for deadlines and transient rows.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    extract,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

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


def day(moment: datetime) -> datetime:
    """``moment`` rounded down to midnight UTC: what a report or a retention cut needs."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def minute(moment: datetime) -> datetime:
    """``moment`` rounded down to the minute: an open request's age, no finer."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


WORD_DIGEST_SIZE = 32


def word_filler() -> bytes:
    """What an unset safety or clear word holds: random, so a member without a word has a
    row indistinguishable from one with a word."""
    return secrets.token_bytes(WORD_DIGEST_SIZE)


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


class utc_year(FunctionElement[int]):
    """The calendar year of a :class:`UTCDateTime` column, in UTC, computed by the database
    (so counts per year need not load the rows)."""

    type = Integer()
    inherit_cache = True


@compiles(utc_year)
def _utc_year(element: utc_year, compiler: SQLCompiler, **kw: Any) -> str:
    (moment,) = element.clauses
    return compiler.process(extract("year", moment), **kw)


@compiles(utc_year, "postgresql")
def _utc_year_postgresql(element: utc_year, compiler: SQLCompiler, **kw: Any) -> str:
    # A timestamptz's fields are read in the session's time zone, which need not be UTC.
    (moment,) = element.clauses
    utc = f"{compiler.process(moment, **kw)} AT TIME ZONE 'UTC'"
    return f"CAST(EXTRACT(YEAR FROM {utc}) AS INTEGER)"


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
        # Active staff are looked up on every urgent request and every sweep; members far
        # outnumber them.
        Index(None, "role", "revoked_at"),
        # The chat upkeep looks for erased members every few seconds; almost none are.
        Index(None, "erased"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tg_lookup: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    chat_ref: Mapped[bytes] = mapped_column(LargeBinary)
    role: Mapped[str] = mapped_column(String(16))
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    language: Mapped[str] = mapped_column(String(2), default="ko")
    language_chosen: Mapped[bool] = mapped_column(default=False)
    invited_by: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # Day precision (see the module docstring).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=lambda: day(utcnow()))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Erased: everything they wrote is gone and they are a stranger; the row stays only until
    # the bot has cleared their chat and command menu (bot/chat.py), then it is deleted.
    erased: Mapped[bool] = mapped_column(default=False)
    # Which command menu is set for this chat ("<role>:<language>"), None when none is: the
    # chat upkeep sets it for active people and removes it from revoked ones.
    menu: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Staff only: the name members see on replies, under the server box (a caseworker's
    # chosen name can identify them too), and a keyed hash of it, so names are unique and
    # found without opening every one.
    display_name: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    name_lookup: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True, nullable=True)
    # Members only: the caseworker (or admin) who invited them and gets their alerts.
    caseworker_id: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # Members only: how long messages stay in their chat (None: the server default), and
    # their quick-exit and duress words as Argon2id digests -- or filler, never NULL.
    clear_after_minutes: Mapped[int | None] = mapped_column(nullable=True)
    code_word: Mapped[bytes] = mapped_column(LargeBinary(32), default=word_filler)
    duress_word: Mapped[bytes] = mapped_column(LargeBinary(32), default=word_filler)


# Names are matched case-insensitively (bot.people.find_by_name). SQLite cannot reflect an
# expression index, so a batch (copy-and-rename) migration of people drops it without a
# word: such a migration must create it again.
Index("ix_people_pseudonym_lower", func.lower(Person.pseudonym))


class Invite(Base):
    """A single-use, expiring enrolment link. Deleted when it is used or cancelled, and a
    few days after it expired (so its maker can still see that it did)."""

    __tablename__ = "invites"
    __table_args__ = (CheckConstraint("role IN ('admin', 'caseworker', 'member')", name="role"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    token_lookup: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # NULL for an invite made at the shell; revoking the maker deletes their invites.
    created_by: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # Indexed: the daily purge finds the invites that expired a week ago.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # The message in the maker's chat that shows the link: deleted with the invite.
    message_id: Mapped[int | None] = mapped_column(nullable=True)


class CheckIn(Base):
    """One wellbeing check-in: the answers sealed to the team key, the time in the clear."""

    __tablename__ = "checkins"
    __table_args__ = (
        Index(None, "person_id", "created_at"),
        # The retention purge counts old check-ins per year and member from this index alone.
        Index(None, "created_at", "person_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    # Day precision: reports count by month at the finest, retention by day.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=lambda: day(utcnow()))
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
    urgent and unclaimed, never what it is about. ``created_at`` is kept to the minute while
    the case is open (its age is shown and escalations say how long it waited) and rounded
    to the day when it is resolved.
    """

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'claimed', 'resolved')", name="status"),
        Index(None, "status", "escalate_at"),
        # Unresolved requests listed oldest first; resolved ones purged by age.
        Index("ix_cases_status_created_at", "status", "created_at"),
        Index(None, "member_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    member_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.OPEN.value)
    claimed_by: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=lambda: minute(utcnow()))
    escalate_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escalations: Mapped[int] = mapped_column(default=0)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    brief: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class Note(Base):
    """One relayed message, either direction, sealed to the team key."""

    __tablename__ = "notes"
    __table_args__ = (Index(None, "member_id", "created_at"), Index(None, "created_at"))

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    member_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    staff_id: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True, index=True
    )
    from_member: Mapped[bool] = mapped_column()
    case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # Day precision: retention is counted in days.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=lambda: day(utcnow()))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    FAILED = "failed"


class OutboxItem(Base):
    """A message the bot sends on its own initiative, written in the same transaction as
    the event that caused it. ``payload`` is under the server box (the sender must read it);
    the row is deleted once Telegram accepted the message, so no readable copy lingers.
    Failed rows keep no payload and are purged after a few days.

    ``collapse_key`` names a message that replaces, rather than joins, an earlier one still
    waiting for the same person (an escalation re-alert): one hostile account's requests
    cannot pile up in staff queues."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'failed')", name="status"),
        # The sender's choice before every send (storage.outbox.next_item) walks this in
        # order and stops at the first item that is due and whose chat is free: no sort,
        # and a busy chat's backlog is skipped inside the index, never fetched. It also
        # serves the pending count, the next due time and the purge of failures. No
        # (status, due_at) index beside it: given one, SQLite picks it for the choice and
        # sorts every due item before each send.
        Index("ix_outbox_next_item", "status", "priority", "due_at", "created_at", "recipient_id"),
        Index(None, "recipient_id"),
        # Only items a sender is sending now carry a lease (renewed every few seconds).
        Index(
            None,
            "claimed_by",
            sqlite_where=text("claimed_by IS NOT NULL"),
            postgresql_where=text("claimed_by IS NOT NULL"),
        ),
        # Only re-alerts carry a key: the index holds those rows and no others.
        Index(
            None,
            "collapse_key",
            sqlite_where=text("collapse_key IS NOT NULL"),
            postgresql_where=text("collapse_key IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    recipient_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING.value)
    priority: Mapped[int] = mapped_column(default=2)  # bot.delivery.PRIORITY_NORMAL
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    collapse_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The member a message is about (an alert, a relay), so erasing them removes it too.
    about_member_id: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # A copy of a broadcast (bot/broadcasts.py): its delivery counts there, and cancelling
    # the broadcast drops it.
    broadcast_id: Mapped[str | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # The lease of the sender process sending it now (storage.outbox.claim_next): others
    # leave it alone until ``claimed_until``; a crashed sender's lease runs out and the item
    # is taken over, so nothing accepted is lost. ``claimed_by`` is a random id per process.
    claimed_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SendPace(Base):
    """Telegram's flood budget, shared by every process that sends (storage.outbox).

    One row per key: ``*`` holds the last overall turn handed out (about 30 a second for the
    whole bot, however many processes send), and a recipient's id the last turn given to
    their chat (about one a second). ``last_at`` is wall-clock seconds since the epoch (the
    processes share a machine or NTP). A recipient's row lives a minute or two after their
    last message: that a message went to someone, and when, is no more than the outbox
    itself held while it waited."""

    __tablename__ = "send_pace"

    key: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    last_at: Mapped[float] = mapped_column(Float())


class SweepLease(Base):
    """Which process runs a periodic sweep (escalations, prompts, deletions...) right now
    (bot.sweeps): one at a time, so every due row is acted on once however many processes
    run. A lease that is not renewed (a crashed process) runs out after a few seconds."""

    __tablename__ = "sweep_leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(ID_LENGTH))
    until: Mapped[float] = mapped_column(Float())


class ChatMessage(Base):
    """A message in someone's chat that the bot will delete (both sides), and when.

    Every chat clears itself: a member's after their own delay, a staff member's after
    SAFERELAY_STAFF_CLEAR_AFTER_HOURS. A staff copy of a member's words or of an alert also
    says which member and request it is about: that is what makes a Telegram reply to it
    routable, and what proves a caseworker was told. The link goes with the message.

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
    # The bot's own message (it can be edited to a neutral stub when it can no longer be
    # deleted); False for what the person typed.
    outgoing: Mapped[bool] = mapped_column(default=True)
    # Staff chats: the member and request this message is about, and what it is
    # ("alert", "relay", "checkin", "list", "reply", "invite").
    about_member_id: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True, index=True
    )
    case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), nullable=True, index=True
    )
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Tally(Base):
    """Anonymous counts that outlive the records they summarise (erasures, purges, yearly
    survey aggregates). Never about fewer than five people when broken down by period."""

    __tablename__ = "tallies"

    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[float] = mapped_column(default=0.0)


class WatchStep(enum.IntEnum):
    """Where a member stands on the welfare watch's ladder (bot/welfare.py)."""

    QUIET = 0  # nothing pending: answered, paused, or not prompted yet
    PROMPTED = 1  # a prompt is unanswered; the reminder is due at ``watch_at``
    REMINDED = 2  # reminded too; their caseworker is alerted at ``watch_at``
    ALERTED = 3  # staff were alerted (``watch_case_id``); it closes when they check in


class Schedule(Base):
    """A member's wellbeing prompts and welfare watch: one row per member.

    ``plan`` (server box, bound to the row) holds the cadence, the local window, the time
    zone and the grace period: a zone of "China time" in the clear would mark someone in
    hiding. What the sweeps must find is in the clear, as deadlines only: ``next_at`` (the
    next prompt, None when prompts are off) and ``watch_at`` (the next step of the ladder).
    A UTC prompt time narrows the zone a little (a window of 19:00-21:00 in Seoul and in
    Shanghai overlap by an hour); the jitter keeps it from saying more.
    """

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("watch_step BETWEEN 0 AND 3", name="watch_step"),
        Index(None, "next_at"),
        Index(None, "watch_at"),
    )

    person_id: Mapped[str] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    )
    plan: Mapped[bytes] = mapped_column(LargeBinary)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The last prompt actually sent: the next is counted from it and avoids its minute.
    last_prompt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Prompts paused by the member (1 week, 1 month) until then.
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    watch_step: Mapped[int] = mapped_column(default=WatchStep.QUIET.value)
    watch_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The watch paused by staff (travel, hospital) until then; prompts go on.
    watch_paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Day precision: the first prompt of a silence, for the alert when no check-in is kept.
    silent_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The open welfare alert ("has not checked in since ..."), closed by their next check-in.
    watch_case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), nullable=True, index=True
    )


class Label(Base):
    """A group label staff attach to a member ("north", "Seoul"), for broadcasts. Labels can
    name places, so the text is under the server box (bound to the row) and what is matched
    is a keyed hash of it (crypto.hashing.Pepper.label_lookup)."""

    __tablename__ = "labels"
    __table_args__ = (
        Index(None, "person_id", "lookup", unique=True),
        Index(None, "lookup"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    lookup: Mapped[bytes] = mapped_column(LargeBinary(32))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class BroadcastStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # waits for send_at
    SENDING = "sending"  # being queued and delivered
    DONE = "done"
    CANCELLED = "cancelled"


class Broadcast(Base):
    """A notice to many members (bot/broadcasts.py). What it says and whom it is for are
    under the server box (``content``: texts per language, the audience with its labels);
    the counts are in the clear: they say how many, never who.

    Members are queued in batches ordered by id, ``cursor`` being the last one queued, each
    batch in one transaction with it: a crash resumes after the last committed batch, so no
    member is queued twice.
    """

    __tablename__ = "broadcasts"
    __table_args__ = (
        CheckConstraint("status IN ('scheduled', 'sending', 'done', 'cancelled')", name="status"),
        Index(None, "status", "send_at"),
        Index(None, "dirty"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    created_by: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=BroadcastStatus.SCHEDULED.value)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    rsvp: Mapped[bool] = mapped_column(default=False)
    send_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Answers can be changed until then; per-member answers are deleted after it.
    event_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=lambda: day(utcnow()))
    # The sender's message that shows progress and totals, edited at most every few seconds
    # (``dirty``: something changed since it was last shown).
    progress_message_id: Mapped[int | None] = mapped_column(nullable=True)
    dirty: Mapped[bool] = mapped_column(default=False)
    cursor: Mapped[str | None] = mapped_column(String(ID_LENGTH), nullable=True)
    expanded: Mapped[bool] = mapped_column(default=False)
    queued: Mapped[int] = mapped_column(default=0)
    sent: Mapped[int] = mapped_column(default=0)
    unreachable: Mapped[int] = mapped_column(default=0)
    yes: Mapped[int] = mapped_column(default=0)
    no: Mapped[int] = mapped_column(default=0)
    maybe: Mapped[int] = mapped_column(default=0)
    people: Mapped[int] = mapped_column(default=0)  # expected, children included


class Rsvp(Base):
    """One member's answer to a notice: under the server box, kept until the event date
    (the totals on the broadcast stay). One row per notice and member: answering again
    replaces it."""

    __tablename__ = "rsvps"

    broadcast_id: Mapped[str] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class AuditEntry(Base):
    """One staff action in the audit trail (bot/audit.py): which day, who (a person id, or
    None for the shell), what, and on which row -- never content, a name or a pseudonym.

    Plain strings, no foreign keys: erasing or revoking someone must not delete or null a
    row, or the chain breaks. ``hash`` is BLAKE2b over the row's fields and ``prev_hash``,
    the hash of the entry before it; ``seq`` is the primary key, so two writers that read
    the same head cannot both append after it (a fork fails loudly).
    """

    __tablename__ = "audit"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # Day precision, like every other date kept in the clear.
    day: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), nullable=True)
    action: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), nullable=True)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class DeviceStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REVOKED = "revoked"


class DeviceKey(Base):
    """A Mini App device's public key (its private half never leaves the phone).

    A staff device's key receives nothing until it is certified (crypto/devices.py): an
    admin's phone by the team key, offline (``saferelay devices trust``); any other staff
    phone by a team-certified admin phone, in its page, after comparing the fingerprint on
    both phones. ``status`` says what the server believes; the certificate (its issuer's
    key and signature) is what pages and server check before anything is sealed to the
    key, so a server that marks its own key approved gains no reader. A member's device
    key is approved when it is registered (a member cannot be asked to compare
    fingerprints) and replaces the ones before it; revoking a person revokes their keys.
    Public keys are not secret, and name no Telegram account.
    """

    __tablename__ = "device_keys"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'revoked')", name="status"),
        Index(None, "person_id", "status"),
        Index("ix_device_keys_signing_key", "signing_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=DeviceStatus.PENDING.value)
    # Day precision, like every other date kept in the clear.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=lambda: day(utcnow()))
    approved_by: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # A staff device's Ed25519 public key (what it certifies others with, if an admin's).
    signing_key: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    # Its certificate: who signed it (the team's verify key, or a certifier phone's signing
    # key) and the detached signature over crypto.devices.DeviceCert.statement().
    cert_issuer: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    cert_signature: Mapped[bytes | None] = mapped_column(LargeBinary(64), nullable=True)


class SealedReply(Base):
    """A staff answer sealed on a device to a member's phone (a ``notes`` row), waiting to be
    read in the member's Mini App. The note is deleted when the page has shown it, or at
    ``delete_at`` (the member's clear timer, at least a day), and its writer is told."""

    __tablename__ = "sealed_replies"

    note_id: Mapped[str] = mapped_column(
        ForeignKey("notes.id", ondelete="CASCADE"), primary_key=True
    )
    staff_id: Mapped[str | None] = mapped_column(
        ForeignKey("people.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # Full precision: a deadline the sweep must find (it says only when, never what).
    delete_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
