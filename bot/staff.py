"""Staff administration: invites from Telegram and revoking people."""

from __future__ import annotations

import enum

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.people import Actor
from storage import outbox
from storage.models import Case, CaseStatus, Delivered, Person, Role, utcnow


def may_invite(actor: Actor, role: Role) -> bool:
    """Caseworkers invite members; only admins invite staff."""
    if role is Role.MEMBER:
        return actor.is_staff
    return actor.is_admin


class RevokeOutcome(enum.Enum):
    DONE = "done"
    SELF = "self"
    REFUSED = "refused"


async def revoke(session: AsyncSession, actor: Actor, target: Person) -> RevokeOutcome:
    """Remove someone at once: from now on they are a stranger and receive nothing.

    A caseworker's members lose their caseworker (their alerts go to everyone); the cases
    they had claimed, and their members' unclaimed ones, are re-alerted to everyone at the
    next sweep.
    """
    if not actor.is_admin:
        return RevokeOutcome.REFUSED
    if target.id == actor.person_id:
        return RevokeOutcome.SELF
    now = utcnow()
    target.revoked_at = now
    await outbox.drop_for_recipient(session, target.id)
    if target.role != Role.MEMBER.value:
        # Their members' unclaimed requests may have been alerted to them alone.
        theirs = select(Person.id).where(Person.caseworker_id == target.id)
        await session.execute(
            update(Case)
            .where(Case.status == CaseStatus.OPEN.value, Case.member_id.in_(theirs))
            .values(escalate_at=now)
        )
        await session.execute(
            update(Person).where(Person.caseworker_id == target.id).values(caseworker_id=None)
        )
        await session.execute(
            update(Case)
            .where(Case.claimed_by == target.id, Case.status == CaseStatus.CLAIMED.value)
            .values(status=CaseStatus.OPEN.value, claimed_by=None, escalate_at=now)
        )
        await session.execute(delete(Delivered).where(Delivered.staff_id == target.id))
    return RevokeOutcome.DONE
