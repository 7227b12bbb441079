"""Help requests ("cases"): open -> claimed -> resolved, with alerts and escalation.

Authorisation is decided here from the database, never from callback data: a caseworker
may act on a case if they claimed it, if the member is theirs, if the member has no
caseworker (everyone was alerted), or if they were alerted about it; an admin may act on any
case.

One account cannot flood everyone's phones: a member has at most ``MAX_OPEN_URGENT``
unclaimed "right now" requests escalating at a time -- more are recorded and sent to their
caseworker like any other request -- and a re-alert replaces the one still waiting.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, false, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.alerts import alert_case, recipients_for
from bot.audit import AuditAction, record
from bot.core import Core
from bot.delivery import Outgoing, enqueue
from bot.i18n import t
from bot.people import Actor, active_person, active_staff, shown_name_of
from crypto.boxes import ALG_MULTI, RecordPlace
from crypto.keystore import ServerSecrets
from storage import outbox
from storage.models import (
    Case,
    CaseStatus,
    ChatMessage,
    Person,
    Schedule,
    day,
    minute,
    new_id,
    utcnow,
)

CATEGORIES = ("danger", "medical", "money", "housing", "talk", "other")  # a member's choice
# Raised by the welfare watch, never by a member (bot/welfare.py): silence, and a 403.
WELFARE_CATEGORIES = ("silent", "unreachable")
# What the bot holds of a request sealed on the member's phone when they kept a field locked
# (webapp/, bot/sealed.py): never a member's choice, never in the sealed record itself.
SEALED = "sealed"
# Encoded by position: new categories go at the end, so stored records keep their meaning.
ALL_CATEGORIES = CATEGORIES + WELFARE_CATEGORIES + (SEALED,)
UNRESOLVED = (CaseStatus.OPEN.value, CaseStatus.CLAIMED.value)
URGENCIES = ("now", "today", "week")
ALL_URGENCIES = (*URGENCIES, SEALED)
TEXT_LIMIT = 2000
MAX_OPEN_URGENT = 2
REQUEST_TAG = b"H2"  # payload format 2: fixed width


class InvalidRequest(ValueError):
    """A category, urgency or text outside what the buttons offer."""


@dataclass(frozen=True, slots=True)
class HelpRequest:
    category: str
    urgency: str
    text: str | None = None
    duress: bool = False  # raised by the member's duress word, not by the buttons

    def __post_init__(self) -> None:
        if self.category not in ALL_CATEGORIES or self.urgency not in ALL_URGENCIES:
            raise InvalidRequest("unknown category or urgency")
        if self.text is not None and not 0 < len(self.text) <= TEXT_LIMIT:
            raise InvalidRequest("text too long")

    def __repr__(self) -> str:
        return "HelpRequest(<sealed>)"

    @property
    def welfare(self) -> bool:
        """Raised by the welfare watch: its ``text`` is the ISO day of the last check-in."""
        return self.category in WELFARE_CATEGORIES

    @property
    def urgent(self) -> bool:
        return self.urgency == "now"

    def to_bytes(self, *, with_text: bool = True) -> bytes:
        """Fixed width: ``H2`` | category | urgency | duress | has text | text (UTF-8).

        A duress case and a normal one, any category and any urgency, encode to the same
        length; the envelope then pads the whole to a 256-byte bucket.
        """
        text = (self.text or "").encode("utf-8") if with_text else b""
        flags = (
            ALL_CATEGORIES.index(self.category),
            ALL_URGENCIES.index(self.urgency),
            int(self.duress),
            int(with_text and self.text is not None),
        )
        return REQUEST_TAG + bytes(flags) + text

    @classmethod
    def from_bytes(cls, data: bytes) -> HelpRequest:
        if data.startswith(b"{"):  # version 1: JSON, written before fixed-width encoding
            payload = json.loads(data)
            return cls(
                payload["category"],
                payload["urgency"],
                payload.get("text"),
                payload.get("duress", False),
            )
        if not data.startswith(REQUEST_TAG) or len(data) < len(REQUEST_TAG) + 4:
            raise InvalidRequest("unknown help request payload")
        category, urgency, duress, has_text = data[2:6]
        if category >= len(ALL_CATEGORIES) or urgency >= len(ALL_URGENCIES):
            raise InvalidRequest("unknown category or urgency")
        text = data[6:].decode("utf-8") if has_text else None
        return cls(ALL_CATEGORIES[category], ALL_URGENCIES[urgency], text, bool(duress))


def sealed_place(case_id: str) -> RecordPlace:
    return RecordPlace("cases", "sealed", case_id)


def brief_place(case_id: str) -> RecordPlace:
    return RecordPlace("cases", "brief", case_id)


def read_brief(keys: ServerSecrets, case: Case) -> HelpRequest | None:
    """What the bot may still read of a case (nothing once it is resolved)."""
    if case.brief is None:
        return None
    return HelpRequest.from_bytes(keys.server_box.open(case.brief, brief_place(case.id)))


@dataclass(frozen=True, slots=True)
class PhoneSealed:
    """A request sealed on the member's phone (the Mini App): its row id, chosen by the page
    so the ciphertext could be bound to it, and the envelope as it came. The bot cannot read
    it; what it acts on is the :class:`HelpRequest` of what the member chose to show."""

    case_id: str
    envelope: bytes


async def open_case(
    session: AsyncSession,
    core: Core,
    member_id: str,
    request: HelpRequest,
    *,
    phone_sealed: PhoneSealed | None = None,
) -> str | None:
    """Store a member's request and alert staff. None if the member is no longer active.

    With ``phone_sealed``, the stored record is the member's own envelope, and ``request``
    holds only what they chose to show (``SEALED`` for the rest, never any text): it is what
    the alerts, the escalation and /cases use, exactly as for a chat request."""
    # A safety word is always urgent; the cap is for requests made with the buttons.
    urgent = request.urgent and (
        request.duress or await _urgent_open(session, member_id) < MAX_OPEN_URGENT
    )
    # Read everything first, then write: one query on the usual path, and no autoflush
    # splitting the inserts (this is the service path the benchmark measures).
    found = await recipients_for(session, member_id, everyone=urgent)
    if found is None:
        return None
    member, recipients = found
    keys, now = core.secrets, utcnow()
    case_id = new_id() if phone_sealed is None else phone_sealed.case_id
    sealed = (
        keys.team_sealer.seal(request.to_bytes(), sealed_place(case_id))
        if phone_sealed is None
        else phone_sealed.envelope
    )
    session.add(
        Case(
            id=case_id,
            member_id=member_id,
            status=CaseStatus.OPEN.value,
            created_at=minute(now),
            escalate_at=(
                now + timedelta(minutes=core.settings.escalate_minutes) if urgent else None
            ),
            sealed=sealed,
            # Until someone claims it the bot may have to alert others, text included.
            brief=keys.server_box.seal(request.to_bytes(), brief_place(case_id)),
        )
    )
    alert_case(
        session,
        keys,
        recipients,
        member,
        case_id,
        request,
        urgent=urgent,
        open_url=_open_url(core, sealed),
    )
    return case_id


def _open_url(core: Core, sealed: bytes) -> str | None:
    """Where staff read a request sealed on a phone (their own page), None for the others."""
    if sealed[1:2] != bytes((ALG_MULTI,)) or not core.settings.webapp_url:
        return None
    return core.settings.webapp_url


async def _urgent_open(session: AsyncSession, member_id: str) -> int:
    """How many of this member's urgent requests are waiting for someone to claim them."""
    count = await session.scalar(
        select(func.count())
        .select_from(Case)
        .where(
            Case.member_id == member_id,
            Case.status == CaseStatus.OPEN.value,
            Case.escalate_at.is_not(None),
            # A welfare alert about them escalates too, but is not their request.
            ~exists().where(Schedule.watch_case_id == Case.id),
        )
    )
    return int(count or 0)


async def authorised_case(session: AsyncSession, actor: Actor, case_id: str) -> Case | None:
    """The case if ``actor`` has a part in it, else None (unknown and forbidden look alike).

    Having a part (admin, claimer, the member's caseworker, or alerted about it) lets one
    see who holds it; what one may then do is checked by the action itself.
    """
    if not actor.is_staff or len(case_id) > 64:
        return None
    case = await session.get(Case, case_id)
    if case is None or actor.is_admin:
        return case
    if case.claimed_by == actor.person_id:
        return case
    member = await session.get(Person, case.member_id)
    if member is not None and member.caseworker_id in (None, actor.person_id):
        return case
    alerted = await session.scalar(
        select(
            exists().where(ChatMessage.case_id == case.id, ChatMessage.person_id == actor.person_id)
        )
    )
    return case if alerted else None


class Outcome(enum.Enum):
    DONE = "done"
    TAKEN = "taken"  # claimed by someone else
    CLOSED = "closed"  # already resolved
    REFUSED = "refused"  # unknown, or not theirs


@dataclass(frozen=True)
class CaseResult:
    outcome: Outcome
    other_name: str | None = None


async def _name(session: AsyncSession, keys: ServerSecrets, person_id: str | None) -> str | None:
    """The name staff see for a colleague; None if they are gone (the text then says "a
    colleague", never a bare "?")."""
    person = await session.get(Person, person_id) if person_id else None
    return shown_name_of(person, keys) if person is not None else None


async def rewrite_copies(
    session: AsyncSession, keys: ServerSecrets, case: Case, key: str, *, by: Actor | None = None
) -> None:
    """Rewrite the alert copies staff hold (the catalogue entry ``key``, and no more text):
    who took or closed it when ``by`` is given (whose own copy is left alone), or what
    closed it by itself (a welfare alert when the member checks in)."""
    member = await session.get(Person, case.member_id)
    query = select(ChatMessage).where(
        ChatMessage.case_id == case.id,
        ChatMessage.outgoing.is_(True),
        ChatMessage.kind.in_(("alert", "list")),
    )
    if by is not None:
        query = query.where(ChatMessage.person_id != by.person_id)
    name = by.shown_name if by is not None else ""
    for copy in await session.scalars(query):
        staff = await active_person(session, copy.person_id)
        if staff is None or member is None:
            continue
        text = t(staff.language, key, pseudonym=member.pseudonym, name=name)
        enqueue(
            session,
            keys,
            staff.id,
            Outgoing(text, edit_message_id=copy.message_id),
            about=member.id,
        )


async def claim_case(
    session: AsyncSession, keys: ServerSecrets, actor: Actor, case_id: str
) -> CaseResult:
    """First claim wins: one conditional UPDATE decides, whatever the concurrency."""
    case = await authorised_case(session, actor, case_id)
    if case is None:
        return CaseResult(Outcome.REFUSED)
    brief = read_brief(keys, case)
    claimed = await session.execute(
        update(Case)
        .where(Case.id == case_id, Case.status == CaseStatus.OPEN.value)
        .values(
            status=CaseStatus.CLAIMED.value,
            claimed_by=actor.person_id,
            escalate_at=None,
            # From now on the bot needs only what /cases shows, not the member's words.
            brief=(
                keys.server_box.seal(brief.to_bytes(with_text=False), brief_place(case_id))
                if brief
                else None
            ),
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(case)
        if case.status == CaseStatus.RESOLVED.value:
            return CaseResult(Outcome.CLOSED)
        if case.claimed_by == actor.person_id:
            return CaseResult(Outcome.DONE)
        return CaseResult(Outcome.TAKEN, await _name(session, keys, case.claimed_by))
    await record(session, AuditAction.CLAIM, actor_id=actor.person_id, object_id=case_id)
    await rewrite_copies(session, keys, case, "alert_claimed", by=actor)
    return CaseResult(Outcome.DONE)


async def resolve_case(
    session: AsyncSession, keys: ServerSecrets, actor: Actor, case_id: str
) -> CaseResult:
    case = await authorised_case(session, actor, case_id)
    if case is None:
        return CaseResult(Outcome.REFUSED)
    if case.status == CaseStatus.RESOLVED.value:
        return CaseResult(Outcome.CLOSED)
    resolved = await session.execute(
        update(Case)
        .where(
            Case.id == case_id,
            Case.status != CaseStatus.RESOLVED.value,
            or_(
                Case.claimed_by.is_(None),
                Case.claimed_by == actor.person_id,
                true() if actor.is_admin else false(),
            ),
        )
        .values(
            status=CaseStatus.RESOLVED.value,
            # From now on only retention needs its date, to the day.
            created_at=day(case.created_at),
            escalate_at=None,
            brief=None,
        )
        .execution_options(synchronize_session=False)
    )
    if resolved.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(case)
        return CaseResult(Outcome.TAKEN, await _name(session, keys, case.claimed_by))
    await record(session, AuditAction.RESOLVE, actor_id=actor.person_id, object_id=case_id)
    await rewrite_copies(session, keys, case, "alert_resolved", by=actor)
    return CaseResult(Outcome.DONE)


async def escalate_due(session: AsyncSession, core: Core, now: datetime | None = None) -> int:
    """Re-alert every caseworker and admin about urgent cases nobody claimed in time."""
    now = now or utcnow()
    interval = timedelta(minutes=core.settings.escalate_minutes)
    due = list(
        await session.scalars(
            select(Case)
            .where(Case.status == CaseStatus.OPEN.value, Case.escalate_at <= now)
            .order_by(Case.escalate_at)
            .limit(100)
        )
    )
    staff = await active_staff(session)
    for case in due:
        member = await active_person(session, case.member_id)
        brief = read_brief(core.secrets, case)
        if member is None or brief is None:
            case.escalate_at = None
            continue
        # A re-alert still waiting for a reader is replaced, never stacked.
        await outbox.drop_collapsed(session, f"esc:{case.id}")
        case.escalations += 1
        case.escalate_at = now + interval
        minutes = int((now - case.created_at).total_seconds() // 60)
        alert_case(
            session,
            core.secrets,
            staff,
            member,
            case.id,
            brief,
            escalation=case.escalations,
            minutes_open=minutes,
            open_url=_open_url(core, case.sealed),
        )
    return len(due)


@dataclass(frozen=True)
class CaseLine:
    case_id: str
    pseudonym: str
    category: str | None
    urgency: str | None
    status: str
    claimed_by_me: bool
    created_at: datetime


async def cases_for(session: AsyncSession, keys: ServerSecrets, actor: Actor) -> list[CaseLine]:
    """Unresolved cases the actor may act on, oldest first."""
    if not actor.is_staff:
        return []
    query = (
        select(Case, Person)
        .join(Person, Person.id == Case.member_id)
        # Named, not "!= resolved": an index serves only what it is told to look for, and
        # resolved requests are most of the table.
        .where(Case.status.in_(UNRESOLVED), Person.revoked_at.is_(None))
    )
    if not actor.is_admin:
        mine = Case.claimed_by == actor.person_id
        alerted = exists().where(
            ChatMessage.case_id == Case.id, ChatMessage.person_id == actor.person_id
        )
        theirs = or_(Person.caseworker_id == actor.person_id, Person.caseworker_id.is_(None))
        query = query.where(or_(mine, and_(Case.claimed_by.is_(None), or_(alerted, theirs))))
    lines = []
    for case, member in (await session.execute(query.order_by(Case.created_at).limit(50))).all():
        brief = read_brief(keys, case)
        lines.append(
            CaseLine(
                case_id=case.id,
                pseudonym=member.pseudonym,
                category=brief.category if brief else None,
                urgency=brief.urgency if brief else None,
                status=case.status,
                claimed_by_me=case.claimed_by == actor.person_id,
                created_at=case.created_at,
            )
        )
    return lines
