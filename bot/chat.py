"""Chats that clear themselves, and their upkeep.

Every message between a person and the bot, both sides, is deleted after a delay: a member's
own delay (default SAFERELAY_CLEAR_AFTER_MINUTES, chosen in /settings), or for staff
SAFERELAY_STAFF_CLEAR_AFTER_HOURS (a lost work phone shows at most that much of what members
said). A quick exit, a revocation or an erasure makes everything due at once.

Pending deletions live in the database (``chat_messages``), so a restart still performs them
on time, or at once when overdue. Telegram lets a bot delete messages in a private chat only
within 48 hours, so no delay may exceed 47 hours; a message that could not be deleted in
time is edited to a neutral stub instead when it is the bot's own (what a person typed can
only be deleted).

Revoked and erased people are cleared too: their chat is found from the sealed reference
their row keeps, whatever their status. The same upkeep keeps each chat's command menu in
line with the database (bot/menus.py), and deletes an erased member's row only once their
chat is clear -- the list of what to delete is never lost before the deletions succeed.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, event, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased
from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from bot import activity
from bot.core import Core
from bot.i18n import t
from bot.limits import backoff
from bot.menus import commands_for, menu_key
from bot.people import chat_ref_of
from bot.settings import Settings
from storage.models import Case, ChatMessage, OutboxItem, Person, Role, new_id, utcnow

log = logging.getLogger(__name__)

CLEAR_CHOICES = (2, 10, 60, 24 * 60)  # minutes, offered in /settings
TELEGRAM_DELETE_WINDOW = timedelta(hours=48)
MAX_DELAY = timedelta(hours=47)
# Past this age a deletion is no longer attempted: the bot's own message becomes a stub.
STUB_AFTER = TELEGRAM_DELETE_WINDOW - timedelta(minutes=30)
DELETE_CLAIM = timedelta(seconds=60)  # a run's hold on the rows it is deleting
DELETE_BATCH = 100  # deleteMessages takes at most 100 ids
STUB_KEY = "cleared_stub"
PROMPT = "prompt"  # a wellbeing prompt in a member's chat (bot/schedules.py)
# A prompt holds nothing the member wrote, and a member who looks at the phone later must
# still be able to answer it with one tap: it stays at least this long (or until the next
# prompt replaces it), whatever the member's own delay. Once answered, the member's delay
# counts again from the tap (handlers/member.py).
PROMPT_STAYS = timedelta(hours=1)
MENUS_PER_RUN = 200


@dataclass(frozen=True, slots=True)
class About:
    """What a message in a staff chat is about: makes a reply to it routable, proves that
    its reader was told about the request, and lets an erasure find it."""

    member_id: str
    case_id: str | None
    kind: str  # "alert" | "relay" | "checkin" | "list" | "reply" | "invite" | "prompt"


def clear_delay(person: Person | None, settings: Settings) -> timedelta:
    """How long a message stays in this person's chat."""
    if person is not None and person.role != Role.MEMBER.value:
        return min(timedelta(hours=settings.staff_clear_after_hours), MAX_DELAY)
    minutes = (
        person.clear_after_minutes
        if person is not None and person.clear_after_minutes
        else settings.clear_after_minutes
    )
    return min(timedelta(minutes=minutes), MAX_DELAY)


def _stay(person: Person, settings: Settings, about: About | None) -> timedelta:
    """How long a new message stays: the chat's own delay, and a bare prompt at least
    ``PROMPT_STAYS``."""
    delay = clear_delay(person, settings)
    return max(delay, PROMPT_STAYS) if about is not None and about.kind == PROMPT else delay


async def remember(
    session: AsyncSession,
    settings: Settings,
    person_id: str,
    message_ids: Iterable[int],
    *,
    now: datetime | None = None,
    at_once: bool = False,
    outgoing: bool = True,
    about: About | None = None,
    until: datetime | None = None,
    fresh: bool = False,
) -> None:
    """Schedule deletion of these messages in someone's chat.

    ``at_once`` makes them due now; ``until`` brings the deletion forward to that moment if
    it is sooner (an invite link goes when the invite expires); ``about`` links a staff copy
    to the member and request it is about. A message already scheduled (an edit keeps its
    id) is updated, never added twice; ``fresh`` says they were just sent or received, so
    none can be known yet (one query fewer on the hot path; SQLite only).
    """
    ids = list(dict.fromkeys(message_ids))
    if not ids:
        return
    person = await session.get(Person, person_id)
    if person is None:
        return
    now = now or utcnow()
    delete_at = now if at_once else now + _stay(person, settings, about)
    if until is not None:
        delete_at = min(delete_at, max(until, now))
    known = (
        set()
        if fresh
        else set(
            await session.scalars(
                select(ChatMessage.message_id).where(
                    ChatMessage.person_id == person_id, ChatMessage.message_id.in_(ids)
                )
            )
        )
    )
    if known:
        values: dict[str, object] = {
            "delete_at": func.min(ChatMessage.delete_at, delete_at)
            if session.get_bind().dialect.name == "sqlite"
            else func.least(ChatMessage.delete_at, delete_at)
        }
        if about is not None:
            values |= {
                "about_member_id": about.member_id,
                "case_id": about.case_id,
                "kind": about.kind,
            }
        await session.execute(
            update(ChatMessage)
            .where(ChatMessage.person_id == person_id, ChatMessage.message_id.in_(known))
            .values(**values)
        )
    session.add_all(
        ChatMessage(
            id=new_id(),
            person_id=person_id,
            message_id=m,
            sent_at=now,
            delete_at=delete_at,
            outgoing=outgoing,
            about_member_id=about.member_id if about else None,
            case_id=about.case_id if about else None,
            kind=about.kind if about else None,
        )
        for m in ids
        if m not in known
    )


@event.listens_for(Session, "before_flush")
def _insert_chat_messages_as_upserts(session: Session, _context: object, _new: object) -> None:
    """New ChatMessage rows are written at flush as one INSERT ... ON CONFLICT, not as the
    ORM's plain insert: :func:`remember` looks for a message already scheduled when it is
    called, but the outbox sender may record the same message (just sent, its button pressed
    at once) before this update's flush, and a plain insert would then fail the unique index
    and lose the person's whole update. Written at flush, as the ORM would, so SQLite's one
    write lock is still taken only then; a message already there keeps the sooner deletion
    and takes what the new row says it is about."""
    new = [row for row in session.new if isinstance(row, ChatMessage)]
    if not new:
        return
    for row in new:
        session.expunge(row)
    # One row per message within the statement too (PostgreSQL refuses to touch a row twice).
    merged: dict[tuple[str, int], ChatMessage] = {}
    for row in new:
        first = merged.setdefault((row.person_id, row.message_id), row)
        if first is not row:
            first.delete_at = min(first.delete_at, row.delete_at)
            for name in ("about_member_id", "case_id", "kind"):
                if getattr(row, name) is not None:
                    setattr(first, name, getattr(row, name))
    session.execute(
        _upsert_statement(session.get_bind().dialect.name),
        [
            {
                "id": row.id,
                "person_id": row.person_id,
                "message_id": row.message_id,
                "sent_at": row.sent_at,
                "delete_at": row.delete_at,
                "outgoing": row.outgoing,
                "about_member_id": row.about_member_id,
                "case_id": row.case_id,
                "kind": row.kind,
            }
            for row in merged.values()
        ],
    )


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT for chat messages, built once per database kind (building it
    per call cost about a millisecond of CPU, on every update and every send): a message
    already scheduled keeps the sooner deletion, and takes what the new row says it is
    about where it says anything."""
    statement = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(ChatMessage)
    sooner = func.least if dialect == "postgresql" else func.min
    changes: dict[str, Any] = {
        "delete_at": sooner(ChatMessage.delete_at, statement.excluded.delete_at)
    } | {
        name: func.coalesce(getattr(statement.excluded, name), getattr(ChatMessage, name))
        for name in ("about_member_id", "case_id", "kind")
    }
    return statement.on_conflict_do_update(
        index_elements=[ChatMessage.person_id, ChatMessage.message_id], set_=changes
    )


async def _upsert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert these chat messages (see :func:`_upsert_statement`)."""
    await session.execute(_upsert_statement(session.get_bind().dialect.name), rows)


async def record_sent(
    session: AsyncSession,
    settings: Settings,
    person_id: str,
    message_id: int,
    *,
    about: About | None = None,
) -> None:
    """Schedule deletion of a message the outbox just sent (like :func:`remember`).

    The message is in the chat before this commits, so the person may already have pressed
    its button, and the handler noted it first: one INSERT ... ON CONFLICT then keeps the
    sooner deletion and adds what the message is about, where a plain insert would fail the
    unique index -- and the failed transaction would leave the item to be sent again.
    """
    person = await session.get(Person, person_id)
    if person is None:
        return
    now = utcnow()
    stay = _stay(person, settings, about)
    if about is not None and await _gone(session, person, about):
        # What it is about was erased (or purged) while it was on its way: it leaves the
        # chat at once, and a reference to a deleted row would fail the foreign key, roll
        # this back and leave the message in the chat for good.
        about, stay = None, timedelta(0)
    await _upsert(
        session,
        [
            {
                "id": new_id(),
                "person_id": person_id,
                "message_id": message_id,
                "sent_at": now,
                "delete_at": now + stay,
                "outgoing": True,
                "about_member_id": about.member_id if about else None,
                "case_id": about.case_id if about else None,
                "kind": about.kind if about else None,
            }
        ],
    )


async def _gone(session: AsyncSession, recipient: Person, about: About) -> bool:
    """Whether the member or request a copy is about was erased (or purged) since it was
    queued. People rows stay (erasure blanks them), so only the request can be missing; it
    is held (``FOR KEY SHARE`` on PostgreSQL; on SQLite this transaction already holds the
    write lock) until the insert that refers to it commits."""
    member = (
        recipient if about.member_id == recipient.id else await session.get(Person, about.member_id)
    )
    if member is None or member.erased:
        return True
    if about.case_id is None:
        return False
    case = await session.get(Case, about.case_id, with_for_update={"key_share": True})
    return case is None


async def clear_all_now(session: AsyncSession, person_id: str) -> None:
    """Everything still in this person's chat is due now (quick exit, revocation, erasure)."""
    await session.execute(
        update(ChatMessage).where(ChatMessage.person_id == person_id).values(delete_at=utcnow())
    )


async def clear_kind_now(session: AsyncSession, person_id: str, kind: str) -> bool:
    """The bot's messages of this kind in someone's chat are due now (an unanswered prompt
    before the next is sent). True if there were any."""
    result = await session.execute(
        update(ChatMessage)
        .where(ChatMessage.person_id == person_id, ChatMessage.kind == kind)
        .values(delete_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def copy_about(session: AsyncSession, staff_id: str, message_id: int) -> ChatMessage | None:
    """The staff copy behind a message in this staff member's chat, if it is about a member."""
    return await session.scalar(
        select(ChatMessage).where(
            ChatMessage.person_id == staff_id,
            ChatMessage.message_id == message_id,
            ChatMessage.about_member_id.is_not(None),
        )
    )


# The claim's choice reads its own alias of the table; made once (a fresh one per call is
# rebuilt column by column, about a millisecond of CPU each time).
_CANDIDATE = aliased(ChatMessage, name="candidate")


async def delete_due(core: Core, bot: Bot, *, person_id: str | None = None) -> int:
    """Delete every due message (or only this person's), chat by chat. Returns how many.

    Never raises for a Telegram failure: what failed is retried at the next sweep.
    """
    now = utcnow()
    async with core.sessions() as session:
        # Claimed in one statement (pushed DELETE_CLAIM into the future), so two runs -- a
        # quick exit and the sweep, or two processes -- never both act on a row, and one
        # that dies midway leaves its rows due again a minute later.
        candidate = _CANDIDATE
        choice = select(candidate.id).where(candidate.delete_at <= now)
        if person_id is not None:
            choice = choice.where(candidate.person_id == person_id)
        choice = choice.order_by(candidate.delete_at).limit(5000).with_for_update(skip_locked=True)
        async with session.begin():
            due = list(
                await session.scalars(
                    update(ChatMessage)
                    .where(ChatMessage.id.in_(choice))
                    .values(delete_at=now + DELETE_CLAIM)
                    .returning(ChatMessage)
                    .execution_options(synchronize_session=False)
                )
            )
        by_person: dict[str, list[ChatMessage]] = defaultdict(list)
        for row in due:
            by_person[row.person_id].append(row)
        chats = {p: await chat_ref_of(session, core.secrets, p) for p in by_person}
    deleted = 0
    for person, rows in by_person.items():
        chat = chats[person]
        done: list[str] = []
        retry: list[ChatMessage] = []
        if chat is None:  # the row is gone: nothing can be done through the bot
            done = [r.id for r in rows]
        else:
            chat_id, language = chat
            stale = [r for r in rows if r.sent_at < now - STUB_AFTER]
            fresh = [r for r in rows if r.sent_at >= now - STUB_AFTER]
            done += await _stub(bot, chat_id, language, stale)
            ok, failed = await _delete(bot, chat_id, fresh)
            done += [r.id for r in ok]
            deleted += len(ok)
            retry += failed
        async with core.sessions() as session, session.begin():
            if done:
                await session.execute(delete(ChatMessage).where(ChatMessage.id.in_(done)))
            if retry:
                await session.execute(
                    update(ChatMessage)
                    .where(ChatMessage.id.in_([r.id for r in retry]))
                    .values(
                        delete_at=now + timedelta(seconds=backoff(max(r.attempts for r in retry))),
                        attempts=ChatMessage.attempts + 1,
                    )
                )
    return deleted


async def _delete(
    bot: Bot, chat_id: int, rows: list[ChatMessage]
) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """(deleted or gone, to retry)."""
    done: list[ChatMessage] = []
    for start in range(0, len(rows), DELETE_BATCH):
        batch = rows[start : start + DELETE_BATCH]
        try:
            await bot.delete_messages(chat_id, [r.message_id for r in batch])
            activity.count("chat messages cleared", len(batch))
            done += batch
        except (BadRequest, Forbidden):
            # Already gone, or the person blocked the bot: nothing to retry. Counted, not
            # logged: a dated line per chat would mark the moments people used the bot.
            activity.count("chat clears failed", len(batch))
            done += batch
        except RetryAfter:
            return done, rows[start:]
        except TelegramError as exc:
            log.warning("chat deletion failed, will retry: %s", type(exc).__name__)
            return done, rows[start:]
    return done, []


async def _stub(bot: Bot, chat_id: int, language: str, rows: list[ChatMessage]) -> list[str]:
    """Past Telegram's window: edit the bot's own messages to a neutral stub (what a person
    typed cannot be edited by the bot, and can no longer be deleted). Returns the rows done
    with: one attempt each, since nothing later can do better."""
    for row in rows:
        if not row.outgoing:
            continue
        try:
            await bot.edit_message_text(t(language, STUB_KEY), chat_id, row.message_id)
            activity.count("chat messages cleared")
        except TelegramError:
            activity.count("chat clears failed")
    return [r.id for r in rows]


async def tidy_people(core: Core, bot: Bot, *, menus: bool = True) -> bool:
    """Keep command menus in line with the database (when ``menus``), and delete erased
    members whose chat is clear. Failures wait for the next run. Returns whether menus
    should be looked at again soon (one failed, or there were more than one run takes).

    Finding stale menus compares each row's menu with its role and language, which no
    index serves, so the caller asks for it only when something changed (an enrolment, a
    language, a revocation, an erasure: they wake the cleaner) and as an hourly safety
    net, not on every few-second sweep."""
    again = False
    stale_menus: list[Person] = []
    chats: dict[str, tuple[int, str] | None] = {}
    if menus:
        async with core.sessions() as session:
            wanted_menu = Person.role + literal(":") + Person.language
            stale_menus = list(
                await session.scalars(
                    select(Person)
                    .where(
                        or_(
                            and_(
                                Person.revoked_at.is_(None),
                                or_(Person.menu.is_(None), Person.menu != wanted_menu),
                            ),
                            and_(Person.revoked_at.is_not(None), Person.menu.is_not(None)),
                        )
                    )
                    .limit(MENUS_PER_RUN)
                )
            )
            chats = {p.id: await chat_ref_of(session, core.secrets, p.id) for p in stale_menus}
        again = len(stale_menus) == MENUS_PER_RUN
    for person in stale_menus:
        chat = chats.get(person.id)
        if chat is None:
            continue
        scope = BotCommandScopeChat(chat[0])
        try:
            if person.revoked_at is None:
                commands = commands_for(Role(person.role), person.language)
                await bot.set_my_commands([BotCommand(c, d) for c, d in commands], scope=scope)
                menu: str | None = menu_key(person.role, person.language)
            else:
                await bot.delete_my_commands(scope=scope)
                menu = None
        except (BadRequest, Forbidden):
            # The chat is gone or blocked the bot: there is nothing to keep in line.
            menu = None if person.revoked_at is not None else menu_key(person.role, person.language)
        except TelegramError as exc:
            log.warning("chat menu not changed, will retry: %s", type(exc).__name__)
            again = True
            continue
        async with core.sessions() as session, session.begin():
            await session.execute(update(Person).where(Person.id == person.id).values(menu=menu))
    async with core.sessions() as session, session.begin():
        await session.execute(
            delete(Person).where(
                Person.erased.is_(True),
                Person.menu.is_(None),
                ~exists().where(ChatMessage.person_id == Person.id),
                ~exists().where(OutboxItem.recipient_id == Person.id),
            )
        )
    return again
