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

from crypto.boxes import RecordPlace, TeamOpener, TeamSealer
from storage.models import CheckIn, new_id, utcnow

HEALTH_SCALE = range(1, 6)  # 1 = extremely unhealthy ... 5 = extremely healthy
NOTE_LIMIT = 1000
PAYLOAD_VERSION = 1


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

    def to_bytes(self) -> bytes:
        payload = {
            "v": PAYLOAD_VERSION,
            "health": self.health,
            "threat": self.threat,
            "note": self.note,
        }
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> CheckInAnswers:
        payload = json.loads(data)
        if payload.get("v") != PAYLOAD_VERSION:
            raise InvalidAnswer("unknown check-in payload version")
        return cls(health=payload["health"], threat=payload["threat"], note=payload["note"])


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
            created_at=at or utcnow(),
            sealed=sealer.seal(answers.to_bytes(), sealed_place(checkin_id)),
        )
    )
    await session.flush()
    return checkin_id


def open_checkin(opener: TeamOpener, checkin: CheckIn) -> CheckInAnswers:
    """Read a check-in (needs the team private key)."""
    return CheckInAnswers.from_bytes(opener.open(checkin.sealed, sealed_place(checkin.id)))


async def checkins_of(session: AsyncSession, person_id: str) -> list[CheckIn]:
    result = await session.scalars(
        select(CheckIn).where(CheckIn.person_id == person_id).order_by(CheckIn.created_at)
    )
    return list(result)
