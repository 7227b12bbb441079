"""Wellbeing check-ins: the organisation's two survey questions and an optional note.

Answers are sealed to the team key as one record; only the time is in the clear, which is
what lets a report count check-ins per period without opening them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.alerts import recipients_for, reply_button
from bot.chat import About
from bot.delivery import Outgoing, enqueue
from bot.i18n import t
from bot.welfare import checked_in
from crypto.boxes import RecordPlace, TeamOpener, TeamSealer
from crypto.keystore import ServerSecrets
from storage.models import CheckIn, day, new_id, utcnow

HEALTH_SCALE = range(1, 6)  # 1 = extremely unhealthy ... 5 = extremely healthy
NOTE_LIMIT = 1000
CHECKIN_TAG = b"C2"  # payload format 2: fixed width


class InvalidAnswer(ValueError):
    """An answer outside the survey's scale."""


@dataclass(frozen=True, slots=True)
class CheckInAnswers:
    health: int
    threat: bool
    note: str | None = None

    def __post_init__(self) -> None:
        if self.health not in HEALTH_SCALE:
            raise InvalidAnswer("health is 1 to 5")
        if self.note is not None and not 0 < len(self.note) <= NOTE_LIMIT:
            raise InvalidAnswer(f"a note is 1 to {NOTE_LIMIT} characters")

    def __repr__(self) -> str:
        # Never let answers reach a log line through a repr.
        return "CheckInAnswers(<sealed>)"

    @property
    def worrying(self) -> bool:
        """Answers a caseworker should hear about: poor health, a threat, or any note."""
        return self.health <= 2 or self.threat or self.note is not None

    def to_bytes(self) -> bytes:
        """Fixed width where the member chose from buttons: ``C2`` | health | threat | note.

        Every check-in encodes its choices in the same number of bytes, and the envelope pads
        the whole to a 256-byte bucket, so no answer changes a ciphertext's length.
        """
        note = (self.note or "").encode("utf-8")
        return (
            CHECKIN_TAG + bytes((self.health, int(self.threat), int(self.note is not None))) + note
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CheckInAnswers:
        if data.startswith(b"{"):  # version 1: JSON, written before fixed-width encoding
            payload = json.loads(data)
            if payload.get("v") != 1:
                raise InvalidAnswer("unknown check-in payload version")
            return cls(health=payload["health"], threat=payload["threat"], note=payload["note"])
        if not data.startswith(CHECKIN_TAG) or len(data) < len(CHECKIN_TAG) + 3:
            raise InvalidAnswer("unknown check-in payload version")
        health, threat, has_note = data[2:5]
        note = data[5:].decode("utf-8") if has_note else None
        return cls(health=health, threat=bool(threat), note=note)


def sealed_place(checkin_id: str) -> RecordPlace:
    return RecordPlace("checkins", "sealed", checkin_id)


async def record_checkin(
    session: AsyncSession,
    sealer: TeamSealer,
    person_id: str,
    answers: CheckInAnswers,
    *,
    at: datetime | None = None,
) -> str:
    """Store a check-in sealed to the team; returns its id."""
    checkin_id = new_id()
    session.add(
        CheckIn(
            id=checkin_id,
            person_id=person_id,
            # The day only: reports count by month at the finest (README, timestamps).
            created_at=day(at or utcnow()),
            sealed=sealer.seal(answers.to_bytes(), sealed_place(checkin_id)),
        )
    )
    await session.flush()
    return checkin_id


def open_checkin(opener: TeamOpener, checkin: CheckIn) -> CheckInAnswers:
    """Read a check-in (needs the team private key)."""
    return open_answers(opener, checkin.id, checkin.sealed)


def open_answers(opener: TeamOpener, checkin_id: str, sealed: bytes) -> CheckInAnswers:
    """Read a check-in from its id and sealed column alone (reports stream just those)."""
    return CheckInAnswers.from_bytes(opener.open(sealed, sealed_place(checkin_id)))


async def checkins_of(session: AsyncSession, person_id: str) -> list[CheckIn]:
    result = await session.scalars(
        select(CheckIn).where(CheckIn.person_id == person_id).order_by(CheckIn.created_at)
    )
    return list(result)


async def submit_checkin(
    session: AsyncSession, keys: ServerSecrets, person_id: str, answers: CheckInAnswers
) -> str:
    """Store a check-in and, if it is worrying, alert the member's caseworker (or all staff).
    It also answers the welfare watch: nothing is pending, an open alert closes."""
    checkin_id = await record_checkin(session, keys.team_sealer, person_id, answers)
    await checked_in(session, keys, person_id)
    found = await recipients_for(session, person_id) if answers.worrying else None
    if found is None:
        return checkin_id
    member, recipients = found
    for staff in recipients:
        lang = staff.language
        lines = [
            t(
                lang,
                "alert_checkin",
                pseudonym=member.pseudonym,
                health=answers.health,
                threat=t(lang, "yes" if answers.threat else "no"),
            )
        ]
        if answers.note:
            lines.append(t(lang, "alert_checkin_note", note=answers.note))
        enqueue(
            session,
            keys,
            staff.id,
            Outgoing("\n".join(lines), reply_button(lang), link=About(member.id, None, "checkin")),
        )
    return checkin_id
