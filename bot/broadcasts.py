"""Notices to many members (a retreat, a clinic day, a warning to stay in), with RSVP.

- **Audience**: all members, one caseworker's members, group labels (``/tag``), a language;
  combined by intersection. Caseworkers reach their own members only; admins anyone.
- **Delivery** through the outbox at bulk priority: urgent and personal traffic always goes
  first (bot.delivery). A broadcast is queued in batches of members ordered by id, each
  batch in one transaction with the ``cursor`` (the last member queued), so a crash resumes
  after the last committed batch and nobody is queued twice. Scheduled ones wait in the
  database for ``send_at`` and survive restarts. Cancelling drops every copy not yet sent.
- **Progress** is counted on the broadcast row as copies are delivered or refused and shown
  on the sender's own message, edited at most every ``PROGRESS_SECONDS`` (``dirty``), never
  once per delivery or per answer.
- **RSVP**: yes / no / maybe, then how many people (children included). One row per notice
  and member, sealed under the server box, kept until the event date; the totals in the
  clear. Members never see anyone else's answer or the totals.

What a notice says and whom it is for (labels can name places) are under the server box.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import AuditAction, record
from bot.chat import About
from bot.core import Core
from bot.delivery import PRIORITY_BULK, PRIORITY_NORMAL, Outgoing, enqueue
from bot.i18n import LANGUAGES, day_text, t
from bot.people import Actor, active_person, shown_name_of
from crypto.boxes import RecordPlace
from crypto.hashing import normalise_word
from crypto.keystore import ServerSecrets
from storage import outbox
from storage.models import (
    Broadcast,
    BroadcastStatus,
    Label,
    OutboxItem,
    Person,
    Role,
    Rsvp,
    new_id,
    utcnow,
)

CONTENT_VERSION = 1
BATCH = 200  # members queued per transaction
PROGRESS_SECONDS = 3.0  # the sender's message is edited at most this often
LABEL_LIMIT = 32
TEXT_LIMIT = 3000
MAX_HEAD_COUNT = 6  # "6+"
NOTICE = "notice"  # About.kind of a notice in a member's chat
ANSWERS = ("yes", "no", "maybe")
# A notice without an event date is shown in the members' "Notices" for this long.
SHOWN_FOR = timedelta(days=14)
OPEN = (BroadcastStatus.SCHEDULED.value, BroadcastStatus.SENDING.value)


def clean_label(text: str) -> str | None:
    """A label as staff type it: one line of 1-32 characters, shown as first typed."""
    label = " ".join(text.split())
    if not label or len(label) > LABEL_LIMIT or label.startswith("/"):
        return None
    return label


@dataclass(frozen=True)
class Audience:
    """Who a notice is for: the members matching every part that is set."""

    caseworker_id: str | None = None  # one caseworker's members (None: all members)
    labels: tuple[str, ...] = ()
    language: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "caseworker": self.caseworker_id,
            "labels": list(self.labels),
            "lang": self.language,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Audience:
        labels = data.get("labels") or []
        caseworker, lang = data.get("caseworker"), data.get("lang")
        return cls(
            caseworker_id=caseworker if isinstance(caseworker, str) else None,
            labels=tuple(str(x) for x in labels) if isinstance(labels, list) else (),
            language=lang if isinstance(lang, str) else None,
        )


@dataclass(frozen=True)
class Notice:
    """What members read: one text for all (``"*"``), or one per language."""

    texts: dict[str, str]
    audience: Audience = field(default_factory=Audience)

    def __repr__(self) -> str:
        return "Notice(<sealed>)"

    def text_for(self, language: str) -> str:
        if language in self.texts:
            return self.texts[language]
        if "*" in self.texts:
            return self.texts["*"]
        return next(iter(self.texts.values()))

    def to_bytes(self) -> bytes:
        payload = {"v": CONTENT_VERSION, "texts": self.texts, "audience": self.audience.to_dict()}
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Notice:
        payload = json.loads(data)
        if payload.get("v") != CONTENT_VERSION:
            raise ValueError("unknown notice version")
        return cls(dict(payload["texts"]), Audience.from_dict(payload["audience"]))


def content_place(broadcast_id: str) -> RecordPlace:
    return RecordPlace("broadcasts", "content", broadcast_id)


def rsvp_place(broadcast_id: str, member_id: str) -> RecordPlace:
    return RecordPlace("rsvps", "sealed", f"{broadcast_id}:{member_id}")


def label_place(label_id: str) -> RecordPlace:
    return RecordPlace("labels", "sealed", label_id)


def read_notice(keys: ServerSecrets, broadcast: Broadcast) -> Notice:
    return Notice.from_bytes(keys.server_box.open(broadcast.content, content_place(broadcast.id)))


# --------------------------------------------------------------------------- labels


async def tag(
    session: AsyncSession, keys: ServerSecrets, actor_id: str, member_id: str, label: str
) -> bool:
    """Attach a label to a member; False if they have it already."""
    lookup = keys.pepper.label_lookup(label)
    if await session.scalar(
        select(Label.id).where(Label.person_id == member_id, Label.lookup == lookup)
    ):
        return False
    label_id = new_id()
    session.add(
        Label(
            id=label_id,
            person_id=member_id,
            lookup=lookup,
            sealed=keys.server_box.seal(label.encode("utf-8"), label_place(label_id)),
        )
    )
    await record(session, AuditAction.TAG, actor_id=actor_id, object_id=member_id)
    return True


async def untag(
    session: AsyncSession, keys: ServerSecrets, actor_id: str, member_id: str, label: str
) -> bool:
    """Take a label off a member; False if they did not have it."""
    result = await session.execute(
        delete(Label).where(
            Label.person_id == member_id, Label.lookup == keys.pepper.label_lookup(label)
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    await record(session, AuditAction.UNTAG, actor_id=actor_id, object_id=member_id)
    return True


async def labels_of(session: AsyncSession, keys: ServerSecrets, member_id: str) -> list[str]:
    rows = await session.scalars(select(Label).where(Label.person_id == member_id))
    return sorted(
        (keys.server_box.open(r.sealed, label_place(r.id)).decode("utf-8") for r in rows),
        key=normalise_word,
    )


# --------------------------------------------------------------------------- audiences


def members_of(keys: ServerSecrets, audience: Audience) -> Select[str]:
    """The ids of the active members an audience names, in id order."""
    query = select(Person.id).where(
        Person.role == Role.MEMBER.value, Person.revoked_at.is_(None), Person.erased.is_(False)
    )
    if audience.caseworker_id is not None:
        query = query.where(Person.caseworker_id == audience.caseworker_id)
    if audience.language is not None:
        query = query.where(Person.language == audience.language)
    for label in audience.labels:
        lookup = keys.pepper.label_lookup(label)
        query = query.where(exists().where(Label.person_id == Person.id, Label.lookup == lookup))
    return query.order_by(Person.id)


async def audience_size(session: AsyncSession, keys: ServerSecrets, audience: Audience) -> int:
    inner = members_of(keys, audience).order_by(None).subquery()
    return int(await session.scalar(select(func.count()).select_from(inner)) or 0)


async def languages_in(session: AsyncSession, keys: ServerSecrets, audience: Audience) -> list[str]:
    """The languages the audience's members read, in catalogue order."""
    ids = members_of(keys, audience).order_by(None).subquery()
    found = set(
        await session.scalars(
            select(Person.language).where(Person.id.in_(select(ids.c.id))).distinct()
        )
    )
    return [language for language in LANGUAGES if language in found]


async def in_audience(
    session: AsyncSession, keys: ServerSecrets, member_id: str, audience: Audience
) -> bool:
    query = members_of(keys, audience).where(Person.id == member_id).order_by(None)
    return await session.scalar(query) is not None


def may_send(actor: Actor, audience: Audience) -> bool:
    """Admins may reach any audience; a caseworker only their own members."""
    if actor.is_admin:
        return True
    return actor.is_staff and audience.caseworker_id == actor.person_id


# --------------------------------------------------------------------------- sending


async def create_broadcast(
    session: AsyncSession,
    keys: ServerSecrets,
    actor: Actor,
    notice: Notice,
    *,
    rsvp: bool,
    event_at: datetime | None,
    send_at: datetime,
    progress_message_id: int | None,
) -> Broadcast | None:
    """Store a confirmed broadcast; it is queued when ``send_at`` comes (the sweep). None
    if the actor may not reach that audience -- decided here, whatever the buttons said."""
    if not may_send(actor, notice.audience) or not notice.texts:
        return None
    if any(not 0 < len(text) <= TEXT_LIMIT for text in notice.texts.values()):
        return None
    broadcast_id = new_id()
    broadcast = Broadcast(
        id=broadcast_id,
        created_by=actor.person_id,
        status=BroadcastStatus.SCHEDULED.value,
        content=keys.server_box.seal(notice.to_bytes(), content_place(broadcast_id)),
        rsvp=rsvp,
        send_at=send_at,
        event_at=event_at if rsvp else None,
        progress_message_id=progress_message_id,
        dirty=True,
        expanded=False,
        queued=0,
        sent=0,
        unreachable=0,
        yes=0,
        no=0,
        maybe=0,
        people=0,
    )
    session.add(broadcast)
    await record(session, AuditAction.BROADCAST, actor_id=actor.person_id, object_id=broadcast_id)
    return broadcast


def notice_buttons(
    language: str, broadcast_id: str, *, answer: str | None = None, count: int | None = None
) -> list[list[tuple[str, str]]]:
    """Yes / No / Maybe (the chosen one ticked); after yes, how many people."""
    rows = [
        [
            (("✓ " if answer == a else "") + t(language, f"rsvp_{a}"), f"rsvp:{broadcast_id}:{a}")
            for a in ANSWERS
        ]
    ]
    if answer == "yes":
        rows.append(
            [
                (
                    ("✓ " if count == n else "") + (f"{n}+" if n == MAX_HEAD_COUNT else str(n)),
                    f"rsvp:{broadcast_id}:c{n}",
                )
                for n in range(1, MAX_HEAD_COUNT + 1)
            ]
        )
    return rows


def notice_message(language: str, broadcast: Broadcast, notice: Notice) -> Outgoing:
    """A notice exactly as a member sees it (the preview uses it too)."""
    text = notice.text_for(language)
    buttons: list[list[tuple[str, str]]] = []
    if broadcast.rsvp:
        lines = [text, "", t(language, "rsvp_question")]
        if broadcast.event_at is not None:
            lines.append(
                t(language, "rsvp_until", day=day_text(language, broadcast.event_at.date()))
            )
        text = "\n".join(lines)
        buttons = notice_buttons(language, broadcast.id)
    return Outgoing(text, buttons, priority=PRIORITY_BULK)


async def sweep_broadcasts(
    core: Core,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
    progress: Callable[[], None] = lambda: None,
) -> int:
    """Start the broadcasts whose time has come and queue their members, ``batch`` per
    transaction; returns how many copies were queued."""
    now = now or utcnow()
    queued = 0
    while True:
        async with core.sessions() as session, session.begin():
            broadcast = await session.scalar(
                select(Broadcast)
                .where(
                    (
                        (Broadcast.status == BroadcastStatus.SCHEDULED.value)
                        & (Broadcast.send_at <= now)
                    )
                    | (
                        (Broadcast.status == BroadcastStatus.SENDING.value)
                        & Broadcast.expanded.is_(False)
                    )
                )
                .order_by(Broadcast.send_at)
                .limit(1)
            )
            if broadcast is None:
                return queued
            queued += await _queue_batch(session, core.secrets, broadcast, batch)
        progress()  # the sender starts on this batch while the next is queued
        await asyncio.sleep(0)  # updates get their turn between batches


async def _queue_batch(
    session: AsyncSession, keys: ServerSecrets, broadcast: Broadcast, batch: int
) -> int:
    """Queue the next ``batch`` members after the cursor, and move the cursor on.

    The cursor moves first, by compare-and-set against the cursor this batch was read from
    (and only while the broadcast is still going out): if another sweep -- a process whose
    lease ran out while it was paused, or a Stop -- moved or ended it meanwhile, nothing
    is queued here and the caller reads the broadcast again. That UPDATE is this
    transaction's first write, so on SQLite it takes the write lock against what is
    committed now, and on PostgreSQL a concurrent batch makes it wait and then match no row.
    The lease in bot/sweeps.py keeps two sweeps apart; this keeps a member from getting two
    copies even when it does not."""
    notice = read_notice(keys, broadcast)
    query = members_of(keys, notice.audience)
    if broadcast.cursor is not None:
        query = query.where(Person.id > broadcast.cursor)
    ids = [str(member_id) for member_id in await session.scalars(query.limit(batch))]
    moved = await session.execute(
        update(Broadcast)
        .where(
            Broadcast.id == broadcast.id,
            Broadcast.status.in_((BroadcastStatus.SCHEDULED.value, BroadcastStatus.SENDING.value)),
            Broadcast.expanded.is_(False),
            (
                Broadcast.cursor.is_(None)
                if broadcast.cursor is None
                else Broadcast.cursor == broadcast.cursor
            ),
        )
        .values(
            status=BroadcastStatus.SENDING.value,
            queued=Broadcast.queued + len(ids),
            dirty=True,
            cursor=ids[-1] if ids else broadcast.cursor,
            expanded=len(ids) < batch,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) != 1:
        return 0  # someone else queued this batch, or the broadcast was stopped
    rows = await session.execute(select(Person.id, Person.language).where(Person.id.in_(ids)))
    languages: dict[str, str] = {member_id: lang for member_id, lang in rows.all()}
    messages = {lang: notice_message(lang, broadcast, notice) for lang in LANGUAGES}
    for member_id in ids:
        message = messages[languages.get(member_id, "ko")]
        enqueue(
            session,
            keys,
            member_id,
            Outgoing(
                message.text,
                message.buttons,
                link=About(member_id, None, NOTICE),
                priority=PRIORITY_BULK,
            ),
            broadcast_id=broadcast.id,
        )
    return len(ids)


class CancelOutcome:
    STOPPED = "stopped"
    OVER = "over"  # already done or stopped
    REFUSED = "refused"  # unknown, or not theirs


async def cancel_broadcast(session: AsyncSession, actor: Actor, broadcast_id: str) -> str:
    """Stop a broadcast (its sender or an admin): nothing more is queued or sent."""
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None or not _may_manage(actor, broadcast):
        return CancelOutcome.REFUSED
    if broadcast.status not in OPEN:
        return CancelOutcome.OVER
    # The queued copies first, then the broadcast: the order the sender takes its locks in
    # (an outbox row, then the broadcast's count). The other way round, PostgreSQL found a
    # deadlock between a Stop pressed mid-broadcast and a copy being counted.
    await session.execute(
        delete(OutboxItem).where(
            OutboxItem.broadcast_id == broadcast_id, OutboxItem.status == "pending"
        )
    )
    broadcast.status, broadcast.dirty = BroadcastStatus.CANCELLED.value, True
    await record(session, AuditAction.CANCEL, actor_id=actor.person_id, object_id=broadcast_id)
    return CancelOutcome.STOPPED


def _may_manage(actor: Actor, broadcast: Broadcast) -> bool:
    return actor.is_admin or (actor.is_staff and broadcast.created_by == actor.person_id)


# --------------------------------------------------------------------------- progress


def progress_text(language: str, broadcast: Broadcast, audience_label: str) -> str:
    lines = [t(language, "bc_progress_title", audience=audience_label)]
    status = broadcast.status
    if status == BroadcastStatus.SCHEDULED.value:
        lines.append(
            t(language, "bc_scheduled", when=broadcast.send_at.strftime("%Y-%m-%d %H:%M UTC"))
        )
    else:
        lines.append(
            t(
                language,
                "bc_progress",
                sent=broadcast.sent,
                total=broadcast.queued,
                unreachable=broadcast.unreachable,
            )
        )
    if broadcast.rsvp:
        lines.append(
            t(
                language,
                "bc_totals",
                yes=broadcast.yes,
                no=broadcast.no,
                maybe=broadcast.maybe,
                people=broadcast.people,
            )
        )
    if status == BroadcastStatus.DONE.value:
        lines.append(t(language, "bc_done"))
    elif status == BroadcastStatus.CANCELLED.value:
        lines.append(t(language, "bc_cancelled"))
    return "\n".join(lines)


def audience_label(language: str, audience: Audience, caseworker_name: str | None) -> str:
    parts = [
        t(language, "bc_aud_all")
        if audience.caseworker_id is None
        else caseworker_name or t(language, "bc_aud_mine")
    ]
    parts += [f"#{label}" for label in audience.labels]
    if audience.language is not None:
        parts.append(t(language, f"bc_lang_{audience.language}"))
    return " · ".join(parts)


async def show_progress(core: Core, *, now: datetime | None = None) -> int:
    """Edit the sender's message of every broadcast that changed (at most once per run,
    which runs every ``PROGRESS_SECONDS``), and mark finished ones done. Returns how many
    messages were queued for editing."""
    now = now or utcnow()
    keys = core.secrets
    edits = 0
    async with core.sessions() as session, session.begin():
        # Finished: every copy delivered or refused.
        await session.execute(
            update(Broadcast)
            .where(
                Broadcast.status == BroadcastStatus.SENDING.value,
                Broadcast.expanded.is_(True),
                Broadcast.sent + Broadcast.unreachable >= Broadcast.queued,
            )
            .values(status=BroadcastStatus.DONE.value, dirty=True)
        )
        changed = list(
            await session.scalars(select(Broadcast).where(Broadcast.dirty.is_(True)).limit(50))
        )
        for broadcast in changed:
            broadcast.dirty = False
            sender = await active_person(session, broadcast.created_by)
            if sender is None or broadcast.progress_message_id is None:
                continue
            notice = read_notice(keys, broadcast)
            owner_id = notice.audience.caseworker_id
            owner = (
                await active_person(session, owner_id)
                if owner_id not in (None, sender.id)
                else None
            )
            label = audience_label(
                sender.language, notice.audience, shown_name_of(owner, keys) if owner else None
            )
            key = f"bc:{broadcast.id}"
            await outbox.drop_collapsed(session, key)
            buttons = (
                [[(t(sender.language, "bc_cancel"), f"bc:cancel:{broadcast.id}")]]
                if broadcast.status in OPEN
                else []
            )
            enqueue(
                session,
                keys,
                sender.id,
                Outgoing(
                    progress_text(sender.language, broadcast, label),
                    buttons,
                    edit_message_id=broadcast.progress_message_id,
                    priority=PRIORITY_NORMAL,
                ),
                collapse_key=key,
            )
            edits += 1
        # Per-member answers are kept only until the event: the totals stay.
        await session.execute(
            delete(Rsvp).where(
                Rsvp.broadcast_id.in_(
                    select(Broadcast.id).where(
                        Broadcast.event_at.is_not(None), Broadcast.event_at < now
                    )
                )
            )
        )
    return edits


# --------------------------------------------------------------------------- RSVP


@dataclass(frozen=True)
class Answer:
    answer: str
    count: int = 1

    def to_bytes(self) -> bytes:
        return f"{ANSWERS.index(self.answer)}{self.count}".encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> Answer:
        text = data.decode("ascii")
        return cls(ANSWERS[int(text[0])], int(text[1:]))


class RsvpOutcome:
    SAVED = "saved"
    CLOSED = "closed"  # past the event date, or cancelled
    REFUSED = "refused"  # not theirs to answer


async def answer_rsvp(
    session: AsyncSession,
    keys: ServerSecrets,
    member_id: str,
    broadcast_id: str,
    choice: str,
    *,
    now: datetime | None = None,
) -> tuple[str, Answer | None]:
    """A member's tap: ``yes``/``no``/``maybe``, or ``c<n>`` for how many people after yes.
    Idempotent per (notice, member): totals move by the difference from their last answer."""
    now = now or utcnow()
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None or not broadcast.rsvp:
        return RsvpOutcome.REFUSED, None
    if not await in_audience(session, keys, member_id, read_notice(keys, broadcast).audience):
        return RsvpOutcome.REFUSED, None
    if broadcast.status == BroadcastStatus.CANCELLED.value or (
        broadcast.event_at is not None and broadcast.event_at < now
    ):
        return RsvpOutcome.CLOSED, None
    row = await session.get(Rsvp, (broadcast_id, member_id))
    before = (
        Answer.from_bytes(keys.server_box.open(row.sealed, rsvp_place(broadcast_id, member_id)))
        if row is not None
        else None
    )
    if choice.startswith("c"):
        if before is None or before.answer != "yes":
            return RsvpOutcome.REFUSED, before
        after = Answer("yes", max(1, min(MAX_HEAD_COUNT, int(choice[1:]))))
    else:
        after = Answer(choice, before.count if before and choice == "yes" else 1)
    _count(broadcast, before, -1)
    _count(broadcast, after, +1)
    broadcast.dirty = True
    sealed = keys.server_box.seal(after.to_bytes(), rsvp_place(broadcast_id, member_id))
    if row is None:
        session.add(Rsvp(broadcast_id=broadcast_id, member_id=member_id, sealed=sealed))
    else:
        row.sealed = sealed
    return RsvpOutcome.SAVED, after


def _count(broadcast: Broadcast, answer: Answer | None, sign: int) -> None:
    if answer is None:
        return
    setattr(broadcast, answer.answer, getattr(broadcast, answer.answer) + sign)
    if answer.answer == "yes":
        broadcast.people += sign * answer.count


async def my_answer(
    session: AsyncSession, keys: ServerSecrets, member_id: str, broadcast_id: str
) -> Answer | None:
    row = await session.get(Rsvp, (broadcast_id, member_id))
    if row is None:
        return None
    return Answer.from_bytes(keys.server_box.open(row.sealed, rsvp_place(broadcast_id, member_id)))


async def current_notices(
    session: AsyncSession, keys: ServerSecrets, member_id: str, *, now: datetime | None = None
) -> list[Broadcast]:
    """Notices this member was sent that still matter: the event has not passed, or (with no
    event) sent within ``SHOWN_FOR``. Newest first, at most five."""
    now = now or utcnow()
    recent = list(
        await session.scalars(
            select(Broadcast)
            .where(
                Broadcast.status.in_((BroadcastStatus.SENDING.value, BroadcastStatus.DONE.value)),
                Broadcast.send_at > now - timedelta(days=60),
            )
            .order_by(Broadcast.send_at.desc())
            .limit(50)
        )
    )
    shown = []
    for broadcast in recent:
        current = (
            broadcast.event_at >= now
            if broadcast.event_at is not None
            else broadcast.send_at > now - SHOWN_FOR
        )
        if current and await in_audience(
            session, keys, member_id, read_notice(keys, broadcast).audience
        ):
            shown.append(broadcast)
        if len(shown) == 5:
            break
    return shown


async def recent_broadcasts(
    session: AsyncSession, actor: Actor, limit: int = 10
) -> list[Broadcast]:
    """The last broadcasts an actor may see: all for admins, their own for caseworkers."""
    query = select(Broadcast).order_by(Broadcast.send_at.desc()).limit(limit)
    if not actor.is_admin:
        query = query.where(Broadcast.created_by == actor.person_id)
    return list(await session.scalars(query))


async def who_said_yes(
    session: AsyncSession, keys: ServerSecrets, actor: Actor, broadcast_id: str
) -> list[tuple[str, int]] | None:
    """(pseudonym, people) of every yes, for transport and rooms: admins only."""
    if not actor.is_admin or await session.get(Broadcast, broadcast_id) is None:
        return None
    found = []
    rows = await session.execute(
        select(Rsvp, Person.pseudonym)
        .join(Person, Person.id == Rsvp.member_id)
        .where(Rsvp.broadcast_id == broadcast_id)
    )
    for row, pseudonym in rows.all():
        answer = Answer.from_bytes(
            keys.server_box.open(row.sealed, rsvp_place(broadcast_id, row.member_id))
        )
        if answer.answer == "yes":
            found.append((pseudonym, answer.count))
    return sorted(found)
